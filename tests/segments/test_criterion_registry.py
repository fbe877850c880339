"""One home per rule field: a criterion class holds its validation, SQL, Python evaluation,
builder widget and options, and a system check refuses to start when one lacks any of them.
Adding a field is one class (shown here with a field that exists only in this test)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.core.management import call_command
from django.db.models import F

from segments import builder, engine, selectors
from segments.checks import check_rule_fields, criterion_errors
from segments.criteria import REGISTRY
from segments.criteria.base import (
    FIELD_GROUPS,
    WIDGET_KINDS,
    ChoiceCriterion,
    Criterion,
    NumberCriterion,
    TimeCriterion,
)
from segments.evaluate import Evaluator, load_people
from tests.factories import CustomerFactory, TagFactory
from tests.segments.conftest import AS_OF, cond, rules

pytestmark = pytest.mark.django_db


def test_every_registered_field_is_complete():
    assert check_rule_fields() == []
    for key, criterion in REGISTRY.items():
        assert criterion.group in FIELD_GROUPS, key
        for op in criterion.ops:
            assert criterion.widget(op) in WIDGET_KINDS, (key, op)
    call_command("check", "--fail-level", "ERROR")


def test_the_builder_reads_groups_widgets_and_options_from_the_criteria(merchant):
    TagFactory(merchant=merchant, name="vip")

    catalogue = dict(builder.field_catalogue())
    options = selectors.builder_options(merchant=merchant)

    assert list(catalogue) == ["Profile", "Purchases", "Scores", "Segments"]
    assert {f.key for f in catalogue["Purchases"]} >= {"purchased", "orders_count"}
    assert [(f.key, f.label) for f in catalogue["Scores"]] == [
        ("lifecycle_stage", "Lifecycle stage"),
        ("rfm_group", "RFM group"),
        ("rfm_recency", "RFM recency score"),
        ("rfm_frequency", "RFM frequency score"),
        ("rfm_monetary", "RFM monetary score"),
        ("smart_segment", "Smart segment"),
        ("p_alive", "P(alive)"),
        ("churn_risk", "Churn risk"),
        ("expected_orders_90d", "Expected orders in the next 90 days"),
        ("predicted_clv", "Predicted CLV"),
    ]
    # the stage and group lists explain each name, with the merchant's thresholds
    assert options["lifecycle_stage"]["value"][0] == "new"
    assert (
        "At risk: latest order more than 90 days ago (up to 180)"
        in (options["lifecycle_stage"]["help"])
    )
    assert len(options["rfm_group"]["help"]) == 11
    assert len(options["smart_segment"]["help"]) == 10
    assert options["tags"] == {"value": ["vip"]}
    assert options["gender"]["value"] == ["female", "male", "other", "unspecified"]
    assert set(options["purchased"]) == {
        "products.product_types",
        "products.brands",
        "products.categories",
        "products.skus",
    }
    assert builder.widget_kind(REGISTRY["total_spend"], "between") == "money_pair"
    assert builder.widget_kind(REGISTRY["last_purchase"], "between") == "date_pair"
    assert builder.widget_kind(REGISTRY["tags"], "gte") == "none"  # not an operator of tags


# -- incomplete fields are refused at start-up -------------------------------------------------


class NoEvaluation(NumberCriterion):
    """A number field that forgot how to read the customer in Python."""

    label = "no evaluation"
    group = "Profile"

    def value_expression(self, condition: Any, ctx: Any) -> Any:
        return F("points_balance")


class UnknownWidget(Criterion):
    """A field whose operator asks for a widget the builder does not have."""

    label = "unknown widget"
    group = "Profile"
    ops: ClassVar[tuple[str, ...]] = ("eq",)

    def clean_value(self, op: str, value: Any) -> Any:
        return value

    def compile(self, condition: Any, ctx: Any) -> Any:
        raise NotImplementedError

    def evaluate(self, condition: Any, person: Any, ev: Any) -> bool:
        return True

    def widget(self, op: str) -> str:
        return "slider"


class NamesWithoutOptions(ChoiceCriterion):
    """A list of names with nothing to pick from, and no group."""

    label = "names without options"

    def matches(self, names: Any, ctx: Any) -> Any:
        raise NotImplementedError

    def person_value(self, person: Any) -> str | None:
        return None


class UnreadInstant(TimeCriterion):
    """A time field without its instant in Python."""

    label = "unread instant"
    group = "Purchases"

    def instant_expression(self, condition: Any, ctx: Any) -> Any:
        return F("joined_at")


@pytest.mark.parametrize(
    ("criterion", "codes"),
    [
        (NoEvaluation(), {"segments.E001"}),
        (UnknownWidget(), {"segments.E002"}),
        (NamesWithoutOptions(), {"segments.E003", "segments.E004"}),
        (UnreadInstant(), {"segments.E001"}),
    ],
    ids=["no-evaluation", "unknown-widget", "names-without-options", "unread-instant"],
)
def test_the_system_check_names_what_a_field_lacks(criterion, codes):
    errors = criterion_errors("test_field", criterion)
    assert {e.id for e in errors} == codes
    assert all("rule field 'test_field'" in e.msg for e in errors)


def test_an_incomplete_field_fails_the_check_command():
    REGISTRY["test_incomplete"] = NoEvaluation()
    try:
        with pytest.raises(Exception, match=r"segments\.E001"):
            call_command("check", "--fail-level", "ERROR")
    finally:
        del REGISTRY["test_incomplete"]


# -- a new field is one class -------------------------------------------------------------------


class LoyalPoints(NumberCriterion):
    """Points balance plus lifetime points, a field invented for this test. Never NULL
    (both columns are NOT NULL)."""

    label = "loyal points"
    group = "Profile"
    maximum = 10**9

    def value_expression(self, condition: Any, ctx: Any) -> Any:
        return F("points_balance") + F("lifetime_points")

    def person_number(self, condition: Any, person: Any, ev: Any) -> Any:
        return person.points_balance + person.lifetime_points


@pytest.fixture
def loyal_points():
    LoyalPoints.key = "loyal_points"
    REGISTRY["loyal_points"] = LoyalPoints()
    yield REGISTRY["loyal_points"]
    del REGISTRY["loyal_points"]


def test_a_field_added_as_one_class_works_everywhere(merchant, loyal_points):
    # given customers with points, and a field that exists only as the class above
    for external_id, balance, lifetime in (("A", 10, 100), ("B", 0, 40), ("C", 60, 0)):
        CustomerFactory(
            merchant=merchant,
            external_id=external_id,
            points_balance=balance,
            lifetime_points=lifetime,
        )
    tree = rules(cond("loyal_points", "gte", 50))

    # then it validates, compiles (both paths), evaluates in Python, and the builder shows it
    parsed = engine.validate_rules(tree, merchant=merchant)
    sql = {
        exact: sorted(
            engine.matching_customers(
                merchant=merchant, rules=tree, as_of=AS_OF, exact=exact
            ).values_list("external_id", flat=True)
        )
        for exact in (True, False)
    }
    evaluator = Evaluator(AS_OF, merchant.tzinfo)
    python = sorted(p.external_id for p in load_people(merchant) if evaluator.matches(parsed, p))
    assert sql == {True: ["A", "C"], False: ["A", "C"]}
    assert python == ["A", "C"]
    assert "loyal_points" in {f.key for f in dict(builder.field_catalogue())["Profile"]}
    assert builder.widget_kind(loyal_points, "between") == "number_pair"
    assert engine.describe(tree) == "Loyal points ≥ 50"
    assert criterion_errors("loyal_points", loyal_points) == []


def test_one_customer_evaluated_at_two_instants_has_the_orders_of_each(merchant):
    # given: one order ten days before AS_OF (the evaluator keeps each customer's orders
    # per window on the customer, for the next segment)
    from datetime import timedelta

    from tests.factories import TransactionFactory

    ann = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=ann, merchant=merchant, occurred_at=AS_OF - timedelta(days=10))
    person = load_people(merchant, [ann.pk])[0]
    recent = rules(cond("orders_count", "gte", 1, window_days=7))
    tree = engine.parse_rules(recent)

    # when: the same customer is evaluated as of AS_OF and as of five days earlier
    now = Evaluator(AS_OF, merchant.tzinfo).matches(tree, person)
    earlier = Evaluator(AS_OF - timedelta(days=5), merchant.tzinfo).matches(tree, person)

    # then: within 7 days of the earlier instant only
    assert (now, earlier) == (False, True)
