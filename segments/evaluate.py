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

import datetime as dt
from collections.abc import Collection, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from customers.compiled import queryset_rows, serial_reads
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
    # Stored scores (`customers.scores`): what the last computation or purchase left.
    lifecycle_stage: str | None = None
    rfm_recency: int | None = None
    rfm_frequency: int | None = None
    rfm_monetary: int | None = None
    rfm_group: str | None = None
    # Predictions and the smart segment: None without a prediction (no order, no fit).
    p_alive: float | None = None
    churn_risk: float | None = None
    expected_orders_90d: float | None = None
    predicted_clv: Decimal | None = None
    smart_segment: str | None = None
    transactions: list[Txn] = field(default_factory=list)
    redemptions: list[dt.datetime] = field(default_factory=list)
    # `Evaluator.orders` keeps its answers here, by (as_of, window): every segment asks for
    # the same customer's all-time orders.
    orders_by_window: dict[tuple[dt.datetime, int | None], list[Txn]] = field(
        default_factory=dict, repr=False, compare=False
    )


#: The customer's columns `load_people` reads (then its tags' names).
_PERSON_COLUMNS = (
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
    "metrics__lifecycle_stage",
    "metrics__rfm_recency",
    "metrics__rfm_frequency",
    "metrics__rfm_monetary",
    "metrics__rfm_group",
    "metrics__p_alive",
    "metrics__churn_risk",
    "metrics__expected_orders_90d",
    "metrics__predicted_clv",
    "metrics__smart_segment",
)


def load_people(merchant: Merchant, customer_ids: Collection[int] | None = None) -> list[Person]:
    """The merchant's customers (those of `customer_ids` only, when given) with their tags,
    transactions, line items and redemptions: three queries, whatever the number (a few
    customers' without parallel workers: `customers.compiled.serial_reads`)."""
    with serial_reads() if customer_ids is not None else nullcontext():
        return _load_people(merchant, customer_ids)


def _load_people(merchant: Merchant, customer_ids: Collection[int] | None) -> list[Person]:
    customers = Customer.objects.filter(merchant=merchant)
    if customer_ids is not None:
        customers = customers.filter(pk__any=list(customer_ids))
    people: dict[int, Person] = {}
    # One row per customer and tag (a customer without tags has one row, tag NULL).
    profiles = customers.order_by("pk").values_list(*_PERSON_COLUMNS, "tags__name")
    for values in queryset_rows(profiles, binary=True):
        row = dict(zip(_PERSON_COLUMNS, values, strict=False))
        tag = values[-1]
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
                lifecycle_stage=row["metrics__lifecycle_stage"],
                rfm_recency=row["metrics__rfm_recency"],
                rfm_frequency=row["metrics__rfm_frequency"],
                rfm_monetary=row["metrics__rfm_monetary"],
                rfm_group=row["metrics__rfm_group"],
                p_alive=row["metrics__p_alive"],
                churn_risk=row["metrics__churn_risk"],
                expected_orders_90d=row["metrics__expected_orders_90d"],
                predicted_clv=row["metrics__predicted_clv"],
                smart_segment=row["metrics__smart_segment"],
            )
        if tag is not None:
            person.tags.add(tag.lower())
    ids = list(people)
    if not ids:
        return []
    # One row per transaction and line item (a transaction without lines has one row).
    txns: dict[int, Txn] = {}
    rows = (
        Transaction.objects.filter(merchant=merchant, customer_id__any=ids)
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
    for pk, customer_id, kind, occurred_at, total, branch, quantity, *product in queryset_rows(
        rows, binary=True
    ):
        txn = txns.get(pk)
        if txn is None:
            txn = txns[pk] = Txn(kind=kind, occurred_at=occurred_at, total=total, branch=branch)
            people[customer_id].transactions.append(txn)
        if quantity is not None:
            txn.items.append(Item(quantity, *product))
    redemptions = Redemption.objects.filter(merchant=merchant, customer_id__any=ids)
    for customer_id, redeemed_at in redemptions.values_list("customer_id", "redeemed_at"):
        people[customer_id].redemptions.append(redeemed_at)
    return list(people.values())


@dataclass(frozen=True)
class SegmentRef:
    """What the `segment` field needs of another segment: its kind and rules, and for a
    manual segment the members among the customers evaluated."""

    kind: str
    rules: Any
    members: frozenset[int] = frozenset()


class Evaluator:
    """Evaluates parsed rule trees for `Person`s at `as_of` in the merchant's time zone.

    Each condition is its criterion's `evaluate()` (`segments.criteria`: one class per field
    holds it, next to its SQL); this class holds what they share: the instant and "today",
    the contract's time operators, windows and comparisons, and the other segments.

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
        from segments.criteria import REGISTRY  # the criteria import this module

        self._registry = REGISTRY
        self._stack: list[str] = []

    def matches(self, tree: RuleTree, person: Person) -> bool:
        return self.node(tree.root, person)

    def node(self, node: Node, person: Person) -> bool:
        if isinstance(node, Group):
            results = [self.node(child, person) for child in node.children]
            result = all(results) if node.match == "all" else any(results)
            return not result if node.negate else result
        return self.condition(node, person)

    def condition(self, condition: Condition, person: Person) -> bool:
        return self._registry[condition.field].evaluate(condition, person, self)

    # -- the contract's shared readings, for the criteria ---------------------------------

    @staticmethod
    def number(actual: Any, op: str, value: Any) -> bool:
        """`actual <op> value` for the number operators."""
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

    def time(self, instant: dt.datetime | None, op: str, value: Any) -> bool:
        """A time operator on an instant (None: the value does not exist)."""
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

    def in_window(self, instant: dt.datetime, window: int | None) -> bool:
        """Up to `as_of`, and within `window` days of it when set."""
        if instant > self.as_of:
            return False
        return window is None or instant >= self.as_of - dt.timedelta(days=window)

    def orders(self, person: Person, window: int | None) -> list[Txn]:
        """The customer's orders (purchases) up to `as_of`, within `window` days when set.
        The caller must not change the list (it is shared by every later call)."""
        key = (self.as_of, window)
        orders = person.orders_by_window.get(key)
        if orders is None:
            orders = person.orders_by_window[key] = [
                t
                for t in person.transactions
                if t.kind == "purchase" and self.in_window(t.occurred_at, window)
            ]
        return orders

    def in_segments(self, slugs: tuple[str, ...], person: Person) -> bool:
        """Is the customer in any of these segments (dynamic ones evaluated live)?"""
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
