"""Validation: every kind of error, each naming its path in the contract's style."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from segments.engine import RuleValidationError, validate_rules
from segments.rules import Condition, Group, parse_rules
from tests.segments.conftest import cond, rules

pytestmark = pytest.mark.django_db


def errors_of(data, merchant) -> list[str]:
    with pytest.raises(RuleValidationError) as info:
        validate_rules(data, merchant=merchant)
    return info.value.errors


def test_contract_example_parses_into_typed_immutable_objects(merchant):
    tree = validate_rules(
        {
            "version": 1,
            "match": "all",
            "conditions": [
                cond("total_spend", "gte", "500.50"),
                cond("last_purchase", "between", ["2026-01-01", "2026-01-31"]),
                rules(
                    cond("tags", "has_any", ["staff"]),
                    cond("customer_type", "in", ["employee"]),
                    match="any",
                    negate=True,
                ),
            ],
        },
        merchant=merchant,
    )
    spend, last, group = tree.root.children
    assert spend == Condition("total_spend", "gte", Decimal("500.50"))
    assert last.value == (dt.date(2026, 1, 1), dt.date(2026, 1, 31))
    assert isinstance(group, Group) and group.negate and group.match == "any"
    with pytest.raises(AttributeError):
        spend.op = "lt"


def test_unknown_operator_names_the_nested_path(merchant):
    data = rules(
        cond("age", "gte", 1),
        cond("age", "lte", 90),
        rules(cond("total_spend", "gtee", 5), match="any"),
    )
    assert errors_of(data, merchant) == [
        'conditions[2].conditions[0].op: "gtee" is not an operator of total_spend'
    ]


def test_all_errors_are_collected(merchant):
    data = rules(
        cond("colour", "in", ["red"]),
        cond("p_alive", "gte", 1.5),
        cond("orders_count", "gte", "many"),
        cond("gender", "in", ["female"], window_days=3),
        rules(),
        {"foo": 1},
    )
    assert errors_of(data, merchant) == [
        'conditions[0].field: "colour" is not a known field',
        "conditions[1].value: must be at most 1, got 1.5",
        'conditions[2].value: expected a whole number, got "many"',
        'conditions[3].window_days: "window_days" is not a key of gender',
        "conditions[4].conditions: a group needs at least 1 condition",
        "conditions[5]: expected a group (match, conditions) or a condition (field, op, value)",
    ]


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        (cond("total_spend", "between", [10, 5]), "value: expected low <= high, got [10, 5]"),
        (cond("total_spend", "between", [10]), "value: expected [low, high], got a list"),
        (cond("total_spend", "gte", True), "value: expected a number, got true"),
        (cond("total_spend", "gte", "NaN"), 'value: expected a number, got "NaN"'),
        (cond("orders_count", "gte", -1), "value: must be at least 0, got -1"),
        (cond("orders_count", "gte", 1.5), "value: expected a whole number, got 1.5"),
        (cond("tags", "has_any", []), "value: expected a non-empty list of names"),
        (cond("tags", "has_any", "vip"), 'value: expected a list of names, got "vip"'),
        (
            cond("gender", "in", ["robot"]),
            'value: "robot" is not one of female, male, other, unspecified',
        ),
        (
            cond("last_purchase", "before", "2026-13-01"),
            'value: expected an ISO date (YYYY-MM-DD), got "2026-13-01"',
        ),
        (cond("last_purchase", "within_days", -3), "value: must be at least 0, got -3"),
        (cond("last_purchase", "never", 3), "value: never takes no value (null), got 3"),
        (cond("member_since", "never"), 'op: "never" is not an operator of member_since'),
        (cond("birthday", "next_days", 0), "value: must be at least 1, got 0"),
        (cond("birthday", "next_days", 367), "value: must be at most 366, got 367"),
        (cond("email_opt_in", "is", "yes"), "value: expected true or false"),
        (cond("orders_count", "gte", 1, window_days=-1), "window_days: must be at least 0, got -1"),
        ({"field": "age", "value": 3}, "op: missing; age takes eq, ne, gt, gte, lt, lte, between"),
        (
            cond("purchased", "gte", 1),
            "products: missing; name the products (product_types, brands, ...)",
        ),
        (
            cond("purchased", "gte", 1, products={"brands": [], "skus": []}),
            "products: at least one product list must be non-empty",
        ),
        (
            cond("purchased", "gte", 1, products={"flavours": ["x"]}),
            'products.flavours: "flavours" is not a product list',
        ),
        (
            cond("purchased", "gte", 1, products={"brands": "x"}),
            'products.brands: expected a list of names, got "x"',
        ),
        (
            cond("visited_branch", "not_in", ["A"]),
            'op: "not_in" is not an operator of visited_branch',
        ),
        (cond("churn_risk", "lt", "high"), 'value: expected a number, got "high"'),
        (cond("churn_risk", "lt", True), "value: expected a number, got true"),
        (cond("p_alive", "between", [0.5, 0.2]), "value: expected low <= high, got [0.5, 0.2]"),
        (cond("expected_orders_90d", "gt", -0.5), "value: must be at least 0, got -0.5"),
        (
            cond("predicted_clv", "gte", "1.23456"),
            'value: money has at most 4 decimal places, got "1.23456"',
        ),
        (
            cond("smart_segment", "in", ["Lost"]),
            'value: "Lost" is not one of active_loyal, big_spender, richie_rich, bulk_shopper, '
            "loyal_at_risk, sleeping_opportunist, churn_candidate, one_time_shopper, "
            "waiting_first_order, lost",
        ),
        (cond("smart_segment", "eq", "lost"), 'op: "eq" is not an operator of smart_segment'),
    ],
)
def test_value_errors_name_the_key(merchant, condition, error):
    assert errors_of(rules(cond("age", "gte", 1), condition), merchant) == [
        f"conditions[1].{error}"
    ]


def test_group_shape_errors(merchant):
    data = {"match": "some", "negate": "yes", "conditions": [cond("age", "gte", 1)], "x": 1}
    assert errors_of(data, merchant) == [
        'x: "x" is not a key of a group',
        'match: expected "all" or "any", got "some"',
        'negate: expected true or false, got "yes"',
    ]
    assert errors_of([], merchant) == [
        'rules: expected a group {"match": ..., "conditions": [...]}'
    ]
    assert errors_of({"match": "all"}, merchant) == [
        "conditions: expected a list of conditions or groups"
    ]


def test_limits_depth_nodes_conditions(merchant):
    deep = rules(cond("age", "gte", 1))
    for _ in range(4):
        deep = rules(deep)
    assert parse_rules(deep)  # five groups deep is fine
    assert errors_of(rules(deep), merchant) == [
        ".".join(["conditions[0]"] * 5) + ": groups nest at most 5 deep"
    ]
    assert errors_of(rules(*[cond("age", "gte", 1)] * 51), merchant) == [
        "conditions: a group holds at most 50 nodes, got 51"
    ]
    three_groups = rules(*[rules(*[cond("age", "gte", 1)] * 34) for _ in range(3)])
    assert errors_of(three_groups, merchant) == [
        "rules: the rules hold 102 conditions, at most 100"
    ]


def test_versions(merchant):
    assert (
        validate_rules({"version": 1, **rules(cond("age", "gte", 1))}, merchant=merchant).version
        == 1
    )
    assert errors_of({"version": 2, **rules(cond("age", "gte", 1))}, merchant) == [
        "version: unknown rules version 2 (supported: 1)"
    ]
    # "version" is only a key of the root
    assert errors_of(rules({"version": 1, **rules(cond("age", "gte", 1))}), merchant) == [
        'conditions[0].version: "version" is not a key of a group'
    ]


def test_money_accepts_numbers_and_strings(merchant):
    tree = validate_rules(rules(cond("total_spend", "between", [0.1, "2.50"])), merchant=merchant)
    assert tree.root.children[0].value == (Decimal("0.1"), Decimal("2.50"))
