"""The rule contract evaluated in Python, for a few customers at a time.

Incremental updates use it: when one customer changes (a purchase, an edit), their
membership in every active segment of the merchant must follow within moments. Compiling
fifty rule trees into one SQL query costs 5 to 15 ms of database time at a million
customers, most of it parsing and planning; loading that customer's own rows (profile,
tags, transactions with their lines, redemptions: three indexed queries, `load_people`) and
evaluating every tree here costs about a millisecond.

It reads the contract literally, over the customer's raw history, and is written
differently from the compiler on purpose (ages by the calendar formula, averages as exact
fractions, local dates by converting each instant). The property test
(`tests/segments/test_property.py`) checks that the compiled queries, fast and exact, select
exactly the customers this evaluator selects, on random rule trees over varied data.

Like the exact path, it ignores transactions and redemptions after `as_of`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from customers.models import Customer, Merchant, Redemption, Transaction
from segments.rules import Condition, Group, Node, RuleTree, RuleValidationError, parse_rules


@dataclass(frozen=True)
class Item:
    quantity: int
    product_type: str
    brand: str
    category: str
    sku: str


@dataclass
class Txn:
    kind: str
    occurred_at: dt.datetime
    total: Decimal
    branch: str | None
    items: list[Item] = field(default_factory=list)


@dataclass
class Person:
    """One customer's profile and history, as the contract's fields read them."""

    customer_id: int
    external_id: str
    gender: str
    customer_type: str
    tier: str | None
    tags: set[str]  # lower-cased names
    birth_date: dt.date | None
    joined_at: dt.datetime
    home_branch: str | None
    opt_in: dict[str, bool]
    points_balance: int
    lifetime_points: int
    last_contacted_at: dt.datetime | None
    transactions: list[Txn] = field(default_factory=list)
    redemptions: list[dt.datetime] = field(default_factory=list)


def load_people(merchant: Merchant, customer_ids: Collection[int] | None = None) -> list[Person]:
    """The merchant's customers (those of `customer_ids` only, when given) with their tags,
    transactions, line items and redemptions: three queries, whatever the number."""
    customers = Customer.objects.filter(merchant=merchant)
    if customer_ids is not None:
        customers = customers.filter(pk__in=list(customer_ids))
    people: dict[int, Person] = {}
    # One row per customer and tag (a customer without tags has one row, tag NULL).
    for row in customers.order_by("pk").values(
        "pk",
        "external_id",
        "gender",
        "customer_type",
        "tier__name",
        "birth_date",
        "joined_at",
        "home_branch__code",
        "email_opt_in",
        "sms_opt_in",
        "push_opt_in",
        "points_balance",
        "lifetime_points",
        "last_contacted_at",
        "tags__name",
    ):
        person = people.get(row["pk"])
        if person is None:
            person = people[row["pk"]] = Person(
                customer_id=row["pk"],
                external_id=row["external_id"],
                gender=row["gender"],
                customer_type=row["customer_type"],
                tier=row["tier__name"],
                tags=set(),
                birth_date=row["birth_date"],
                joined_at=row["joined_at"],
                home_branch=row["home_branch__code"],
                opt_in={
                    "email_opt_in": row["email_opt_in"],
                    "sms_opt_in": row["sms_opt_in"],
                    "push_opt_in": row["push_opt_in"],
                },
                points_balance=row["points_balance"],
                lifetime_points=row["lifetime_points"],
                last_contacted_at=row["last_contacted_at"],
            )
        if row["tags__name"] is not None:
            person.tags.add(row["tags__name"].lower())
    ids = list(people)
    if not ids:
        return []
    # One row per transaction and line item (a transaction without lines has one row).
    txns: dict[int, Txn] = {}
    rows = (
        Transaction.objects.filter(merchant=merchant, customer_id__in=ids)
        .order_by("pk", "items__pk")
        .values_list(
            "pk",
            "customer_id",
            "kind",
            "occurred_at",
            "total",
            "branch__code",
            "items__quantity",
            "items__product__product_type",
            "items__product__brand",
            "items__product__category",
            "items__product__sku",
        )
    )
    for pk, customer_id, kind, occurred_at, total, branch, quantity, *product in rows:
        txn = txns.get(pk)
        if txn is None:
            txn = txns[pk] = Txn(kind=kind, occurred_at=occurred_at, total=total, branch=branch)
            people[customer_id].transactions.append(txn)
        if quantity is not None:
            txn.items.append(Item(quantity, *product))
    redemptions = Redemption.objects.filter(merchant=merchant, customer_id__in=ids)
    for customer_id, redeemed_at in redemptions.values_list("customer_id", "redeemed_at"):
        people[customer_id].redemptions.append(redeemed_at)
    return list(people.values())


def _number(actual: Any, op: str, value: Any) -> bool:
    if op == "between":
        return bool(value[0] <= actual <= value[1])
    return bool(
        {
            "eq": actual == value,
            "ne": actual != value,
            "gt": actual > value,
            "gte": actual >= value,
            "lt": actual < value,
            "lte": actual <= value,
        }[op]
    )


@dataclass(frozen=True)
class SegmentRef:
    """What the `segment` field needs of another segment: its kind and rules, and for a
    manual segment the members among the customers evaluated."""

    kind: str
    rules: Any
    members: frozenset[int] = frozenset()


class Evaluator:
    """Evaluates parsed rule trees for `Person`s at `as_of` in the merchant's time zone.

    `segments` maps the merchant's segment slugs to `SegmentRef`s for the `segment` field:
    a dynamic segment is evaluated from its rules (live, like the compiler does), a manual
    one by its members. An unknown slug matches nobody (`in`) / everybody (`not_in`).
    """

    def __init__(
        self,
        as_of: dt.datetime,
        tz: ZoneInfo,
        segments: Mapping[str, SegmentRef] | None = None,
    ) -> None:
        self.as_of = as_of
        self.tz = tz
        self.today = as_of.astimezone(tz).date()
        self.segments = segments or {}
        self._trees: dict[str, RuleTree] = {}
        self._stack: list[str] = []

    def matches(self, tree: RuleTree, person: Person) -> bool:
        return self.node(tree.root, person)

    def node(self, node: Node, person: Person) -> bool:
        if isinstance(node, Group):
            results = [self.node(child, person) for child in node.children]
            result = all(results) if node.match == "all" else any(results)
            return not result if node.negate else result
        return self.condition(node, person)

    def _time(self, instant: dt.datetime | None, op: str, value: Any) -> bool:
        if op == "never":
            return instant is None
        if instant is None:
            return False
        if op == "exists":
            return True
        if op == "within_days":
            return self.as_of - dt.timedelta(days=value) <= instant <= self.as_of
        if op == "before_days":
            return instant < self.as_of - dt.timedelta(days=value)
        local = instant.astimezone(self.tz).date()
        if op == "before":
            return bool(local < value)
        if op == "after":
            return bool(local >= value)
        return bool(value[0] <= local <= value[1])

    def _in_window(self, instant: dt.datetime, window: int | None) -> bool:
        if instant > self.as_of:
            return False
        return window is None or instant >= self.as_of - dt.timedelta(days=window)

    @staticmethod
    def _birthday_on(birth: dt.date, day: dt.date) -> bool:
        if birth.month == 2 and birth.day == 29 and not calendar.isleap(day.year):
            return (day.month, day.day) == (2, 28)
        return (day.month, day.day) == (birth.month, birth.day)

    def _in_segments(self, slugs: tuple[str, ...], person: Person) -> bool:
        for slug in slugs:
            ref = self.segments.get(slug)
            if ref is None:
                continue
            if ref.kind != "dynamic":
                if person.customer_id in ref.members:
                    return True
                continue
            if slug in self._stack:
                chain = " -> ".join([*self._stack, slug])
                raise RuleValidationError([f"segment: cycle of segments ({chain})"])
            if slug not in self._trees:
                self._trees[slug] = parse_rules(ref.rules)
            self._stack.append(slug)
            try:
                if self.matches(self._trees[slug], person):
                    return True
            finally:
                self._stack.pop()
        return False

    def condition(self, c: Condition, p: Person) -> bool:
        f, op, v = c.field, c.op, c.value
        window = c.option("window_days")
        orders = [
            t
            for t in p.transactions
            if t.kind == "purchase" and self._in_window(t.occurred_at, None)
        ]
        windowed = [t for t in orders if self._in_window(t.occurred_at, window)]
        if f in ("gender", "customer_type", "tier", "home_branch"):
            actual = {
                "gender": p.gender,
                "customer_type": p.customer_type.lower() or None,
                "tier": p.tier.lower() if p.tier else None,
                "home_branch": p.home_branch,
            }[f]
            names = {n.lower() for n in v} if f in ("customer_type", "tier") else set(v)
            inside = actual is not None and actual in names
            return inside if op == "in" else not inside
        if f == "tags":
            names = {n.lower() for n in v}
            if op == "has_any":
                return bool(p.tags & names)
            if op == "has_all":
                return names <= p.tags
            return not (p.tags & names)
        if f == "age":
            if p.birth_date is None:
                return False
            b, t = p.birth_date, self.today
            age = t.year - b.year - ((t.month, t.day) < (b.month, b.day))
            return _number(age, op, v)
        if f == "birthday":
            if p.birth_date is None:
                return False
            if op == "this_month":
                return p.birth_date.month == self.today.month
            if op == "today":
                days = [self.today]
            elif op == "this_week":
                monday = self.today - dt.timedelta(days=self.today.weekday())
                days = [monday + dt.timedelta(days=i) for i in range(7)]
            else:
                days = [self.today + dt.timedelta(days=i) for i in range(v)]
            return any(self._birthday_on(p.birth_date, d) for d in days)
        if f == "member_since":
            return self._time(p.joined_at, op, v)
        if f == "last_contacted":
            return self._time(p.last_contacted_at, op, v)
        if f in p.opt_in:
            return p.opt_in[f] is v
        if f in ("points_balance", "lifetime_points"):
            return _number(getattr(p, f), op, v)
        if f == "orders_count":
            return _number(len(windowed), op, v)
        if f == "total_spend":
            both = [t for t in p.transactions if self._in_window(t.occurred_at, window)]
            spend = sum((t.total if t.kind == "purchase" else -t.total for t in both), Decimal(0))
            return _number(spend, op, v)
        if f == "avg_order_value":
            if not windowed:
                return False
            avg = Fraction(sum((t.total for t in windowed), Decimal(0))) / len(windowed)
            value = (Fraction(v[0]), Fraction(v[1])) if op == "between" else Fraction(v)
            return _number(avg, op, value)
        if f == "last_purchase":
            return self._time(max((t.occurred_at for t in orders), default=None), op, v)
        if f == "first_purchase":
            return self._time(min((t.occurred_at for t in orders), default=None), op, v)
        if f == "visited_branch":
            return any(t.branch in v for t in windowed)
        if f == "rewards_redeemed":
            return _number(sum(self._in_window(r, window) for r in p.redemptions), op, v)
        if f == "purchased":
            return self._purchased(c, orders, windowed)
        if f == "segment":
            inside = self._in_segments(v, p)
            return inside if op == "in" else not inside
        raise ValueError(f"no evaluation for the field {f!r}")

    def _purchased(self, c: Condition, orders: list[Txn], windowed: list[Txn]) -> bool:
        lists = {key: {n.lower() for n in names} for key, names in c.option("products")}

        def matches(item: Item) -> bool:
            attrs = {
                "product_types": item.product_type,
                "brands": item.brand,
                "categories": item.category,
                "skus": item.sku,
            }
            return all(attrs[key].lower() in names for key, names in lists.items())

        units = sum(i.quantity for t in windowed for i in t.items if matches(i))
        if not _number(units, c.op, c.value):
            return False
        recent = c.option("last_within_days")
        if recent is None:
            return True
        last = max(
            (t.occurred_at for t in orders if any(matches(i) for i in t.items)), default=None
        )
        return last is not None and last >= self.as_of - dt.timedelta(days=recent)
