"""The score fields of the rule contract (lifecycle_stage, rfm_group, rfm_recency,
rfm_frequency, rfm_monetary): they read the stored scores, match exactly and negate to the
exact complement, agree with the Python evaluator, and show the customer's value in why in,
why out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from customers.scores.service import scores_compute
from segments import engine
from segments.evaluate import Evaluator, load_people
from segments.rules import RuleValidationError, parse_rules
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.conftest import AS_OF, cond, rules

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


@pytest.fixture
def scored(merchant):
    """Four customers scored as of AS_OF: N = 3 with orders, and one without."""
    people = {}
    for ext, days, orders, total in (
        ("fresh", 2, 3, "300.00"),  # R 5, F 5, M 5: champions, regular
        ("middle", 40, 2, "50.00"),  # R 3, F 3, M 3: needs attention, repeat
        ("old", 200, 1, "10.00"),  # R 1, F 1, M 1: dormant, dormant
        ("none", None, 0, "0"),
    ):
        customer = CustomerFactory(merchant=merchant, external_id=ext)
        for index in range(orders):
            TransactionFactory(
                customer=customer,
                occurred_at=AS_OF - (days + 30 * index) * DAY,
                total=Decimal(total),
            )
        people[ext] = customer
    for index in range(2):  # "fresh" reaches 4 orders within the window: regular
        TransactionFactory(customer=people["fresh"], occurred_at=AS_OF - (3 + index) * DAY)
    scores_compute(merchant=merchant, as_of=AS_OF, announce=False)
    return people


def test_lifecycle_stage(scored, check):
    check(cond("lifecycle_stage", "in", ["regular", "repeat"]), ["fresh", "middle"])
    check(cond("lifecycle_stage", "in", ["dormant"]), ["old"])
    # no stage never matches `in`, always matches `not_in`
    check(cond("lifecycle_stage", "not_in", ["regular"]), ["middle", "none", "old"])


def test_rfm_group_prospects_for_the_unscored(scored, check):
    check(cond("rfm_group", "in", ["champions"]), ["fresh"])
    check(cond("rfm_group", "in", ["prospects", "dormant"]), ["none", "old"])
    check(cond("rfm_group", "not_in", ["needs_attention"]), ["fresh", "none", "old"])


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("rfm_recency", "gte", 3, ["fresh", "middle"]),
        ("rfm_recency", "eq", 1, ["old"]),
        ("rfm_frequency", "between", [2, 5], ["fresh", "middle"]),
        ("rfm_monetary", "lt", 5, ["middle", "old"]),
        # without scores, never: not even `ne`
        ("rfm_monetary", "ne", 5, ["middle", "old"]),
    ],
)
def test_rfm_scores_never_match_the_unscored(scored, check, field, op, value, expected):
    check(cond(field, op, value), expected)


def test_scores_above_five_are_refused(merchant):
    with pytest.raises(RuleValidationError) as refused:
        engine.validate_rules(rules(cond("rfm_recency", "gte", 6)), merchant=merchant)
    assert refused.value.errors == ["conditions[0].value: must be at most 5, got 6"]


def test_the_python_evaluator_agrees(merchant, scored):
    people = load_people(merchant)
    evaluator = Evaluator(AS_OF, merchant.tzinfo)
    for condition in (
        cond("lifecycle_stage", "in", ["regular"]),
        cond("lifecycle_stage", "not_in", ["regular"]),
        cond("rfm_group", "in", ["prospects"]),
        cond("rfm_recency", "ne", 5),
        cond("rfm_frequency", "lte", 3),
    ):
        tree = parse_rules(rules(condition))
        python = sorted(p.external_id for p in people if evaluator.node(tree.root, p))
        sql = sorted(
            engine.matching_customers(merchant=merchant, rules=tree, as_of=AS_OF).values_list(
                "external_id", flat=True
            )
        )
        assert python == sql, condition


def test_why_in_why_out_shows_the_customers_value(merchant, scored):
    tree = rules(cond("rfm_recency", "gte", 4), cond("lifecycle_stage", "in", ["loyal"]))

    results = engine.explain(merchant=merchant, rules=tree, customer=scored["middle"])

    assert [(r.label, r.matched, r.actual) for r in results[1:]] == [
        ("RFM recency score ≥ 4", False, "this customer: 3"),
        ("lifecycle stage is loyal", False, "this customer: Repeat"),
    ]
    unscored = engine.explain(merchant=merchant, rules=tree, customer=scored["none"])
    assert unscored[1].actual == "this customer: none"
