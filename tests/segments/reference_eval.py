"""A plain-Python evaluation of the rule contract, for the property test.

It reads the contract literally over Python objects (no SQL, no metrics table): the
engine's compiled queries must agree with it on every customer. Deliberately written
differently from the compiler: ages by the calendar formula, averages as exact fractions,
local dates by converting each instant.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from customers.models import Customer
from segments.rules import Condition, Group, Node


@dataclass
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
    external_id: str
    gender: str
    customer_type: str
    tier: str | None
    tags: set[str]
    birth_date: dt.date | None
    joined_at: dt.datetime
    home_branch: str | None
    opt_in: dict[str, bool]
    points_balance: int
    lifetime_points: int
    last_contacted_at: dt.datetime | None
    transactions: list[Txn]
    redemptions: list[dt.datetime]


def load_people(merchant) -> list[Person]:
    people = []
    customers = Customer.objects.filter(merchant=merchant).prefetch_related(
        "tags", "transactions__items__product", "transactions__branch", "redemptions"
    )
    for c in customers.select_related("tier", "home_branch"):
        people.append(
            Person(
                external_id=c.external_id,
                gender=c.gender,
                customer_type=c.customer_type,
                tier=c.tier.name if c.tier else None,
                tags={t.name.lower() for t in c.tags.all()},
                birth_date=c.birth_date,
                joined_at=c.joined_at,
                home_branch=c.home_branch.code if c.home_branch else None,
                opt_in={
                    "email_opt_in": c.email_opt_in,
                    "sms_opt_in": c.sms_opt_in,
                    "push_opt_in": c.push_opt_in,
                },
                points_balance=c.points_balance,
                lifetime_points=c.lifetime_points,
                last_contacted_at=c.last_contacted_at,
                transactions=[
                    Txn(
                        kind=t.kind,
                        occurred_at=t.occurred_at,
                        total=t.total,
                        branch=t.branch.code if t.branch else None,
                        items=[
                            Item(
                                i.quantity,
                                i.product.product_type,
                                i.product.brand,
                                i.product.category,
                                i.product.sku,
                            )
                            for i in t.items.all()
                        ],
                    )
                    for t in c.transactions.all()
                ],
                redemptions=[r.redeemed_at for r in c.redemptions.all()],
            )
        )
    return people


def _number(actual: Any, op: str, value: Any) -> bool:
    if op == "between":
        return value[0] <= actual <= value[1]
    return {
        "eq": actual == value,
        "ne": actual != value,
        "gt": actual > value,
        "gte": actual >= value,
        "lt": actual < value,
        "lte": actual <= value,
    }[op]


class Evaluator:
    def __init__(self, as_of: dt.datetime, tz: ZoneInfo) -> None:
        self.as_of = as_of
        self.tz = tz
        self.today = as_of.astimezone(tz).date()

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
            return local < value
        if op == "after":
            return local >= value
        return value[0] <= local <= value[1]

    def _in_window(self, instant: dt.datetime, window: int | None) -> bool:
        if instant > self.as_of:
            return False
        return window is None or instant >= self.as_of - dt.timedelta(days=window)

    def _birthday_on(self, birth: dt.date, day: dt.date) -> bool:
        if birth.month == 2 and birth.day == 29 and not calendar.isleap(day.year):
            return (day.month, day.day) == (2, 28)
        return (day.month, day.day) == (birth.month, birth.day)

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
            lists = dict(c.option("products"))

            def matches(item: Item) -> bool:
                attrs = {
                    "product_types": item.product_type,
                    "brands": item.brand,
                    "categories": item.category,
                    "skus": item.sku,
                }
                return all(
                    attrs[key].lower() in {n.lower() for n in names} for key, names in lists.items()
                )

            units = sum(i.quantity for t in windowed for i in t.items if matches(i))
            if not _number(units, op, v):
                return False
            recent = c.option("last_within_days")
            if recent is None:
                return True
            last = max(
                (t.occurred_at for t in orders if any(matches(i) for i in t.items)), default=None
            )
            return last is not None and last >= self.as_of - dt.timedelta(days=recent)
        raise AssertionError(f"no reference for {f}")
