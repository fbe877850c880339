"""The prediction and smart segment fields of the rule contract (p_alive, churn_risk,
expected_orders_90d, predicted_clv, smart_segment): they read the values stored on the
metrics row, a missing prediction never matches a comparison while the negation matches it,
the Python evaluator agrees, and "why in, why out" shows the customer's value, and for the
smart segment the step of the rule that decided it with the merchant's cut-offs."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from customers.models import CustomerMetrics
from customers.scores.service import score_settings_for
from segments import builder, engine, selectors
from segments.criteria import REGISTRY
from segments.evaluate import Evaluator, load_people
from segments.rules import parse_rules
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.conftest import AS_OF, cond, rules

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
FITTED = {
    "bgnbd": {"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
    "prediction_error": None,
    "cutoffs": {"one_time_days": 120, "unit_price_p90": 14.5, "spend_p80": 250.0},
}
#: (orders, p_alive, churn_risk, expected_orders_90d, predicted_clv, smart_segment): what a
#: computation might have stored (the tests set it as such: they read stored values).
STORED: dict[str, tuple[int, Any, Any, Any, Any, str]] = {
    "alive": (3, 0.9, 0.1, 1.5, Decimal("250.00"), "active_loyal"),
    "fading": (2, 0.35, 0.65, 0.2, Decimal("40.50"), "churn_candidate"),
    "gone": (3, 0.1, 0.9, 0.01, Decimal("0.00"), "lost"),
    "once": (1, 0.2, 0.8, 0.3, Decimal("12.00"), "lost"),
    "none": (0, None, None, None, None, "waiting_first_order"),
}


def store_model(merchant, model: dict[str, Any]) -> None:
    settings_row = score_settings_for(merchant)
    settings_row.model = model
    settings_row.save(update_fields=["model"])


@pytest.fixture
def predicted(merchant):
    """Five customers with orders and the predictions and smart segments above."""
    people = {}
    for ext, (orders, p_alive, churn, expected, clv, smart) in STORED.items():
        customer = CustomerFactory(merchant=merchant, external_id=ext)
        for index in range(orders):
            TransactionFactory(customer=customer, occurred_at=AS_OF - (10 + 40 * index) * DAY)
        CustomerMetrics.objects.filter(pk=customer.pk).update(
            p_alive=p_alive,
            churn_risk=churn,
            expected_orders_90d=expected,
            predicted_clv=clv,
            smart_segment=smart,
        )
        people[ext] = customer
    store_model(merchant, FITTED)
    return people


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("p_alive", "gte", 0.5, ["alive"]),
        ("p_alive", "lt", 0.2, ["gone"]),  # 0.2 itself is not below 0.2
        ("p_alive", "eq", 0.2, ["once"]),
        ("p_alive", "between", [0.1, 0.35], ["fading", "gone", "once"]),
        # no prediction never matches, not even `ne`
        ("p_alive", "ne", 0.2, ["alive", "fading", "gone"]),
        ("p_alive", "gte", 0, ["alive", "fading", "gone", "once"]),
        ("churn_risk", "gt", 0.5, ["fading", "gone", "once"]),
        ("churn_risk", "lte", 0.1, ["alive"]),
        ("churn_risk", "ne", 1, ["alive", "fading", "gone", "once"]),
        ("expected_orders_90d", "gte", 1, ["alive"]),
        ("expected_orders_90d", "lt", 0.25, ["fading", "gone"]),
        ("expected_orders_90d", "between", [0, 0.3], ["fading", "gone", "once"]),
        ("predicted_clv", "gte", "40.50", ["alive", "fading"]),
        ("predicted_clv", "eq", 0, ["gone"]),
        ("predicted_clv", "ne", 0, ["alive", "fading", "once"]),
        ("predicted_clv", "between", ["12", "40.5"], ["fading", "once"]),
    ],
)
def test_predictions_compare_and_never_match_a_missing_one(
    predicted, check, field, op, value, expected
):
    # `check` also checks the negated condition matches exactly everyone else, "none" too
    check(cond(field, op, value), expected)


def test_smart_segment_is_never_missing(predicted, check):
    check(cond("smart_segment", "in", ["lost"]), ["gone", "once"])
    check(cond("smart_segment", "in", ["waiting_first_order", "active_loyal"]), ["alive", "none"])
    check(cond("smart_segment", "not_in", ["lost", "active_loyal"]), ["fading", "none"])


def test_a_merchant_without_a_fit_matches_no_prediction(merchant, check):
    # given a customer with an order whose merchant has no fit: predictions stay empty
    customer = CustomerFactory(merchant=merchant, external_id="solo")
    TransactionFactory(customer=customer, occurred_at=AS_OF - 3 * DAY)
    store_model(merchant, {"bgnbd": None, "prediction_error": "fewer than 50 customers"})

    # then no comparison matches, and every negation does
    check(cond("p_alive", "lt", 1), [])
    check(cond("churn_risk", "gte", 0), [])
    check(cond("predicted_clv", "ne", 0), [])


def test_the_python_evaluator_agrees(merchant, predicted):
    people = load_people(merchant)
    evaluator = Evaluator(AS_OF, merchant.tzinfo)
    for condition in (
        cond("p_alive", "ne", 0.2),
        cond("p_alive", "lt", 0.2),
        cond("churn_risk", "between", [0.65, 0.9]),
        cond("expected_orders_90d", "gt", 0.01),
        cond("predicted_clv", "lte", "12.00"),
        cond("predicted_clv", "ne", "0.001"),
        cond("smart_segment", "in", ["lost", "churn_candidate"]),
        cond("smart_segment", "not_in", ["waiting_first_order"]),
    ):
        for tree in (rules(condition), rules(condition, negate=True)):
            parsed = parse_rules(tree)
            python = sorted(p.external_id for p in people if evaluator.node(parsed.root, p))
            sql = sorted(
                engine.matching_customers(merchant=merchant, rules=parsed, as_of=AS_OF).values_list(
                    "external_id", flat=True
                )
            )
            assert python == sql, tree


def actuals(merchant, customer, *conditions) -> list[tuple[str, bool, str]]:
    results = engine.explain(merchant=merchant, rules=rules(*conditions), customer=customer)
    return [(r.label, r.matched, r.actual) for r in results[1:]]


def test_why_in_why_out_shows_the_predictions(merchant, predicted):
    # when
    shown = actuals(
        merchant,
        predicted["fading"],
        cond("p_alive", "lt", 0.5),
        cond("churn_risk", "gte", 0.7),
        cond("expected_orders_90d", "between", [0, 1]),
        cond("predicted_clv", "gt", 100),
    )

    # then each shows the stored value beside the condition's threshold
    assert shown == [
        ("P(alive) < 0.5", True, "this customer: 0.35"),
        ("churn risk ≥ 0.7", False, "this customer: 0.65"),
        ("expected orders in the next 90 days between 0 and 1", True, "this customer: 0.20"),
        ("predicted CLV > 100", False, "this customer: 40.50"),
    ]
    assert actuals(merchant, predicted["none"], cond("p_alive", "lt", 0.5)) == [
        ("P(alive) < 0.5", False, "this customer: none")
    ]


def test_a_value_is_never_rounded_across_the_threshold(merchant, predicted):
    CustomerMetrics.objects.filter(pk=predicted["once"].pk).update(p_alive=0.199996)

    shown = actuals(merchant, predicted["once"], cond("p_alive", "lt", 0.2))

    # "0.20" would read as not below 0.2
    assert shown == [("P(alive) < 0.2", True, "this customer: 0.199996")]


def test_why_in_why_out_names_the_step_that_made_a_customer_lost(merchant, predicted):
    lost = cond("smart_segment", "in", ["lost"])

    # three orders: lost by P(alive), step 3; one order: lost by the one-time cut-off, step 2
    assert actuals(merchant, predicted["gone"], lost) == [
        ("smart segment is lost", True, "this customer: Lost (step 3: P(alive) below 0.2)")
    ]
    assert actuals(merchant, predicted["once"], lost) == [
        (
            "smart segment is lost",
            True,
            "this customer: Lost (step 2: one order, more than 120 days ago)",
        )
    ]


def test_why_in_why_out_gives_the_other_steps_with_the_merchants_cut_offs(merchant, predicted):
    not_lost = cond("smart_segment", "not_in", ["lost"])

    assert actuals(merchant, predicted["none"], not_lost)[0][1:] == (
        True,
        "this customer: Waiting for the first order (step 1: no order yet)",
    )
    assert actuals(merchant, predicted["fading"], not_lost)[0][2] == (
        "this customer: Churn candidate (step 6: P(alive) below 0.5)"
    )
    # without a fit, the recency ratio rule stands in for P(alive)
    store_model(merchant, {"bgnbd": None, "cutoffs": FITTED["cutoffs"]})
    assert actuals(merchant, predicted["gone"], not_lost)[0][1:] == (
        False,
        "this customer: Lost (step 3: no order for more than 4 of their own gaps between orders)",
    )


def test_why_in_why_out_reads_its_own_merchants_model_in_the_one_query(
    merchant, other_merchant, predicted, django_assert_num_queries
):
    # given another merchant whose cut-off differs
    store_model(other_merchant, {**FITTED, "cutoffs": {"one_time_days": 400}})
    tree = rules(
        cond("smart_segment", "in", ["lost"]), cond("smart_segment", "in", ["big_spender"])
    )

    # when (PostgreSQL sets its evaluation settings first)
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 1):
        results = engine.explain(merchant=merchant, rules=tree, customer=predicted["once"])

    # then: the merchant's 120 days, not the other's 400
    assert {r.actual for r in results[1:]} == {
        "this customer: Lost (step 2: one order, more than 120 days ago)"
    }


def test_before_any_computation_the_rule_reads_with_the_defaults(merchant):
    customer = CustomerFactory(merchant=merchant, external_id="new")

    shown = actuals(merchant, customer, cond("smart_segment", "in", ["active_loyal"]))

    assert shown == [
        (
            "smart segment is active_loyal",
            False,
            "this customer: Waiting for the first order (step 1: no order yet)",
        )
    ]


def test_the_builder_explains_each_smart_segment_with_the_merchants_cut_offs(merchant):
    store_model(merchant, FITTED)

    help_lines = selectors.builder_options(merchant=merchant)["smart_segment"]["help"]

    assert len(help_lines) == 10
    assert "Big spender: step 8: spend at or above the merchant's 80th percentile (250.00)" in (
        help_lines
    )
    assert (
        "Lost: step 2: one order, more than 120 days ago; or step 3: P(alive) below 0.2"
        in help_lines
    )


def test_the_builder_widgets_of_the_predictions():
    tree = rules(
        cond("p_alive", "gte", 0.5),
        cond("expected_orders_90d", "between", [0.5, 2]),
        cond("predicted_clv", "gte", "99.50"),
        cond("rfm_recency", "gte", 4),
    )

    root = builder.editor_nodes(tree, options={}, currency="CAD")

    assert [(n.kind, n.step, n.maximum, n.unit) for n in root.children] == [
        ("number", "0.01", "1", "(0 to 1)"),
        ("number_pair", "0.1", "", "orders"),
        ("money", "0.01", "", "CAD"),
        ("number", "1", "5", ""),
    ]


def test_the_builder_reads_a_typed_probability_as_a_number():
    tree = rules(cond("churn_risk", "gte", None))
    form = {"c:r.0:field": "churn_risk", "c:r.0:op": "gte", "c:r.0:value": "0.75"}

    edited = builder.apply_widgets(tree, form_data(form))

    assert edited["conditions"][0]["value"] == 0.75
    assert REGISTRY["churn_risk"].clean_value("gte", 0.75) == 0.75


def form_data(fields: dict[str, str]):
    from django.http import QueryDict

    data = QueryDict(mutable=True)
    data.update(fields)
    return data


def test_the_builder_page_renders_the_new_widgets(staff_client, merchant):
    store_model(merchant, FITTED)
    tree = rules(cond("p_alive", "lt", 0.2), cond("smart_segment", "in", ["lost"]))

    response = staff_client.post(
        reverse("segments:builder_editor"), {"rules_json": json.dumps(tree)}
    )

    html = response.content.decode()
    assert 'id="node-r-0-value" value="0.2" min="0" max="1" step="0.01"' in html
    assert '<span class="small text-muted pt-1 value-unit">(0 to 1)</span>' in html
    assert '<option value="lost" selected>lost</option>' in html
    assert (
        "<li>Lost: step 2: one order, more than 120 days ago; or step 3: P(alive) below 0.2</li>"
        in (html)
    )
