"""Property: for random rule trees, the compiled queries (fast path and exact path) and the
plain-Python reading of the contract that incremental updates use (`segments.evaluate`)
select the same customers of a fixed, varied dataset."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.metrics import refresh_merchant_metrics
from customers.models import CustomerMetrics, Gender, LineItem, Redemption, Transaction
from customers.scores.definitions import RFM_GROUP_NAMES, STAGE_NAMES
from customers.scores.service import scores_compute
from customers.scores.smart import SMART_SEGMENT_NAMES
from segments import engine
from segments.evaluate import Evaluator, load_people
from segments.rules import RuleValidationError, parse_rules
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    ProductFactory,
    TagFactory,
    TierFactory,
)
from tests.hypothesis_profiles import examples
from tests.segments.conftest import AS_OF, ext_ids, toronto

DATASET_SIZE = 40
MAX_EXAMPLES = 500

DAYS = [0, 1, 2, 7, 14, 30, 90, 365]
MONEY = [0, "0.25", 10, "25.50", 40, 100, "250.75", 500, 1000]
COUNTS = [0, 1, 2, 3, 5, 10]
DATES = ["2025-06-01", "2026-01-01", "2026-05-16", "2026-05-17", "2026-06-10", "2026-06-15"]
BRANCHES = ["MAIN", "EAST", "WEST"]
TAGS = ["vip", "Staff", "wholesale"]
TIERS = ["Bronze", "Gold"]
TYPES = ["employee", "Regular", "medical"]
PROBABILITIES = [0, 0.05, 0.2, 0.35, 0.5, 0.8, 1]
EXPECTED_ORDERS = [0, 0.01, 0.5, 1, 2.5]
CLV = ["0", "0.25", "12.50", "40", "250.75"]
PREDICTED = ["p_alive", "churn_risk", "expected_orders_90d", "predicted_clv", "smart_segment"]
PRODUCTS = [  # (sku, product_type, brand, category)
    ("P1", "preroll", "Phat Panda", "flower"),
    ("P2", "Preroll", "other", "flower"),
    ("E1", "edible", "Munchie", "edibles"),
    ("E2", "edible", "phat panda", "edibles"),
    ("V1", "vape", "Munchie", ""),
]


def build_dataset(merchant):
    """~40 customers with varied data, missing values included, all at or before AS_OF."""
    rnd = random.Random(20260615)
    branches = {code: BranchFactory(merchant=merchant, code=code) for code in BRANCHES}
    tags = [TagFactory(merchant=merchant, name=name) for name in TAGS]
    tiers = [TierFactory(merchant=merchant, name=name) for name in TIERS]
    products = [
        ProductFactory(merchant=merchant, sku=s, product_type=t, brand=b, category=c)
        for s, t, b, c in PRODUCTS
    ]
    births = [None, None, dt.date(2000, 2, 29), dt.date(1996, 6, 15), dt.date(2005, 6, 16)]
    txns, items, redemptions = [], [], []  # untyped: factory_boy does not type instances
    for n in range(DATASET_SIZE):
        birth = rnd.choice(births) or (
            dt.date(rnd.randint(1950, 2008), rnd.randint(1, 12), rnd.randint(1, 28))
            if rnd.random() < 0.5
            else None
        )
        customer = CustomerFactory(
            merchant=merchant,
            external_id=f"P{n:02d}",
            gender=rnd.choice(Gender.values),
            customer_type=rnd.choice(["", "", *TYPES]),
            tier=rnd.choice([None, *tiers]),
            home_branch=rnd.choice([None, *branches.values()]),
            birth_date=birth,
            joined_at=AS_OF - dt.timedelta(days=rnd.choice([1, 14, 30, 200, 800]), hours=n),
            email_opt_in=rnd.random() < 0.5,
            sms_opt_in=rnd.random() < 0.5,
            push_opt_in=rnd.random() < 0.5,
            points_balance=rnd.choice([0, 0, 100, 500]),
            lifetime_points=rnd.choice([0, 100, 1000]),
            last_contacted_at=rnd.choice(
                [None, AS_OF - dt.timedelta(days=3), toronto(2026, 5, 16, 23, 30)]
            ),
            tags=rnd.sample(tags, rnd.randint(0, 2)),
        )
        for i in range(rnd.choice([0, 0, 1, 2, 3, 5])):
            when = rnd.choice(
                [
                    AS_OF - dt.timedelta(days=rnd.choice([0, 1, 7, 13, 29, 30, 31, 89, 200, 500])),
                    toronto(2026, 6, 9, 23, 30),  # a local-date edge: the 10th in UTC
                    toronto(2026, 5, 17, 0, 15),
                    AS_OF,
                ]
            )
            txn = Transaction(
                merchant=merchant,
                customer=customer,
                external_id=f"T{n:02d}-{i}",
                occurred_at=when,
                kind="refund" if rnd.random() < 0.15 else "purchase",
                total=Decimal(rnd.choice(["0", "10.25", "25.50", "40", "99.75", "250"])),
                branch=rnd.choice([None, *branches.values()]),
            )
            txns.append(txn)
            for _ in range(rnd.choice([0, 1, 2])):
                items.append(
                    (
                        len(txns) - 1,
                        LineItem(
                            product=rnd.choice(products),
                            quantity=rnd.choice([1, 2, 6, 10]),
                            amount=Decimal("5"),
                        ),
                    )
                )
        for i in range(rnd.choice([0, 0, 1, 2])):
            redemptions.append(
                Redemption(
                    merchant=merchant,
                    customer=customer,
                    external_id=f"R{n:02d}-{i}",
                    reward="coffee",
                    redeemed_at=AS_OF - dt.timedelta(days=rnd.choice([0, 5, 40, 400])),
                )
            )
    Transaction.objects.bulk_create(txns)
    for index, item in items:
        item.transaction = txns[index]
    LineItem.objects.bulk_create([item for _, item in items])
    Redemption.objects.bulk_create(redemptions)
    refresh_merchant_metrics(merchant.pk)
    # The stored scores the score criteria read (lifecycle stage, RFM), as of AS_OF.
    scores_compute(merchant=merchant, as_of=AS_OF, announce=False)
    # The predictions and smart segments as a computation might store them: drawn from the
    # values the conditions compare with (ties at every threshold), a quarter missing.
    rows = list(CustomerMetrics.objects.filter(merchant=merchant).order_by("pk"))
    for row in rows:
        missing = rnd.random() < 0.25
        row.p_alive = None if missing else rnd.choice(PROBABILITIES)
        row.churn_risk = None if missing else rnd.choice(PROBABILITIES)
        row.expected_orders_90d = None if missing else rnd.choice(EXPECTED_ORDERS)
        row.predicted_clv = None if missing else Decimal(rnd.choice(CLV))
        row.smart_segment = rnd.choice(SMART_SEGMENT_NAMES)
    CustomerMetrics.objects.bulk_update(rows, PREDICTED)


def _pair(values: list[Any]) -> st.SearchStrategy[list[Any]]:
    """[lo, hi] drawn from `values`, which are listed in ascending order."""
    indexes = st.lists(st.integers(0, len(values) - 1), min_size=2, max_size=2)
    return indexes.map(lambda ij: [values[min(ij)], values[max(ij)]])


def numbers(values: list[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.tuples(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), st.sampled_from(values)),
        st.tuples(st.just("between"), _pair(values)),
    )


def times(*, with_never: bool = True) -> st.SearchStrategy[tuple[str, Any]]:
    options = [
        st.tuples(st.sampled_from(["within_days", "before_days"]), st.sampled_from(DAYS)),
        st.tuples(st.sampled_from(["before", "after"]), st.sampled_from(DATES)),
        st.tuples(st.just("between"), _pair(DATES)),
    ]
    if with_never:
        options.append(st.tuples(st.sampled_from(["never", "exists"]), st.none()))
    return st.one_of(*options)


def names(pool: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True)


def window() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), st.sampled_from(DAYS).map(lambda d: {"window_days": d}))


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(
        st.sampled_from(
            [
                "gender",
                "customer_type",
                "tier",
                "tags",
                "age",
                "birthday",
                "member_since",
                "home_branch",
                "email_opt_in",
                "points_balance",
                "lifetime_points",
                "last_contacted",
                "orders_count",
                "total_spend",
                "avg_order_value",
                "last_purchase",
                "first_purchase",
                "visited_branch",
                "rewards_redeemed",
                "purchased",
                "lifecycle_stage",
                "rfm_group",
                "rfm_recency",
                "rfm_frequency",
                "rfm_monetary",
                "smart_segment",
                "p_alive",
                "churn_risk",
                "expected_orders_90d",
                "predicted_clv",
            ]
        )
    )
    op: str
    value: Any
    extras: dict[str, Any] = {}
    if field in ("gender", "customer_type", "tier", "home_branch"):
        pool = {
            "gender": list(Gender.values),
            "customer_type": [*TYPES, "EMPLOYEE"],
            "tier": [*TIERS, "gold"],
            "home_branch": BRANCHES,
        }[field]
        op, value = draw(st.sampled_from(["in", "not_in"])), draw(names(pool))
    elif field in ("lifecycle_stage", "rfm_group", "smart_segment"):
        pool = list(
            {
                "lifecycle_stage": STAGE_NAMES,
                "rfm_group": RFM_GROUP_NAMES,
                "smart_segment": SMART_SEGMENT_NAMES,
            }[field]
        )
        op, value = draw(st.sampled_from(["in", "not_in"])), draw(names(pool))
    elif field in ("p_alive", "churn_risk"):
        op, value = draw(numbers(PROBABILITIES))
    elif field == "expected_orders_90d":
        op, value = draw(numbers(EXPECTED_ORDERS))
    elif field == "predicted_clv":
        op, value = draw(numbers(CLV))
    elif field.startswith("rfm_"):
        op, value = draw(numbers([1, 2, 3, 4, 5]))
    elif field == "tags":
        op, value = (
            draw(st.sampled_from(["has_any", "has_all", "has_none"])),
            draw(names([*TAGS, "STAFF", "none"])),
        )
    elif field == "age":
        op, value = draw(numbers([0, 18, 20, 21, 30, 60]))
    elif field == "birthday":
        op = draw(st.sampled_from(["today", "this_week", "this_month", "next_days"]))
        value = draw(st.sampled_from([1, 2, 7, 30, 366])) if op == "next_days" else None
    elif field == "member_since":
        op, value = draw(times(with_never=False))
    elif field == "last_contacted" or field in ("last_purchase", "first_purchase"):
        op, value = draw(times())
    elif field == "email_opt_in":
        op, value = "is", draw(st.booleans())
    elif field in ("points_balance", "lifetime_points"):
        op, value = draw(numbers([0, 100, 500, 1000]))
    elif field in ("orders_count", "rewards_redeemed"):
        (op, value), extras = draw(numbers(COUNTS)), draw(window())
    elif field in ("total_spend", "avg_order_value"):
        (op, value), extras = draw(numbers(MONEY)), draw(window())
    elif field == "visited_branch":
        op, value, extras = "in", draw(names(BRANCHES)), draw(window())
    else:  # purchased
        op, value = draw(numbers([0, 1, 2, 6, 10, 15]))
        lists = draw(
            st.dictionaries(
                st.sampled_from(["product_types", "brands", "categories", "skus"]),
                names(["preroll", "PREROLL", "edible", "Phat Panda", "munchie", "flower", "P1"]),
                min_size=1,
                max_size=2,
            )
        )
        extras = {"products": lists, **draw(window())}
        if draw(st.booleans()):
            extras["last_within_days"] = draw(st.sampled_from(DAYS))
    return {"field": field, "op": op, "value": value, **extras}


def groups(depth: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    child = conditions() if depth >= 3 else st.one_of(conditions(), conditions(), groups(depth + 1))
    return st.fixed_dictionaries(
        {
            "match": st.sampled_from(["all", "any"]),
            "negate": st.booleans(),
            "conditions": st.lists(child, min_size=1, max_size=4),
        }
    )


@pytest.mark.slow
@pytest.mark.django_db
def test_fast_exact_and_reference_agree_on_random_trees(merchant):
    # given a fixed, varied dataset, built once for every example
    build_dataset(merchant)
    people = load_people(merchant)
    reference = Evaluator(AS_OF, merchant.tzinfo)
    assert len(people) == DATASET_SIZE
    sizes: list[int] = []

    @settings(
        max_examples=examples(MAX_EXAMPLES),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(tree=groups())
    def agree(tree: dict[str, Any]) -> None:
        parsed = parse_rules(tree)
        # when
        exact = ext_ids(engine.matching_customers(merchant=merchant, rules=parsed, as_of=AS_OF))
        fast = ext_ids(
            engine.matching_customers(merchant=merchant, rules=parsed, as_of=AS_OF, exact=False)
        )
        expected = sorted(p.external_id for p in people if reference.node(parsed.root, p))
        # then
        assert exact == expected, engine.describe(parsed)
        assert fast == expected, engine.describe(parsed)
        # the count (which may take a shortcut) and the funnel's last step agree too
        count = engine.count_matching(merchant=merchant, rules=parsed, as_of=AS_OF, exact=False)
        assert count == len(expected), engine.describe(parsed)
        steps = engine.funnel(merchant=merchant, rules=parsed, as_of=AS_OF)
        assert steps[-1].cumulative == len(expected), engine.describe(parsed)
        sizes.append(len(expected))

    agree()
    # The trees must discriminate: many examples select some customers but not all.
    assert sum(0 < size < DATASET_SIZE for size in sizes) >= len(sizes) // 3


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 400)
    | st.sampled_from(["all", "any", "age", "gte", "between", "tags", "in", "purchased", "", "x"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "match",
                    "negate",
                    "conditions",
                    "field",
                    "op",
                    "value",
                    "window_days",
                    "products",
                    "last_within_days",
                    "version",
                    "brands",
                    "other",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=examples(300), deadline=None, database=None)
@given(data=JSON)
@pytest.mark.slow
def test_parsing_arbitrary_json_only_ever_raises_validation_errors(data):
    # given any JSON value, when parsed, then it is a tree or a RuleValidationError with paths
    try:
        parse_rules(data)
    except RuleValidationError as exc:
        assert exc.errors
        assert all(": " in error for error in exc.errors)
