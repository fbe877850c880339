"""The engine's public interface: composition, both paths, tenancy, the segment criterion,
explain, funnel and describe."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from segments import engine
from segments.engine import RuleValidationError
from segments.models import Segment, SegmentKind, SegmentMembership
from tests.factories import (
    CustomerFactory,
    LineItemFactory,
    ProductFactory,
    TagFactory,
    TransactionFactory,
)
from tests.segments.conftest import AS_OF, cond, ext_ids, rules

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def evaluations(queries):
    """The queries that evaluate rules (PostgreSQL also runs `SET LOCAL` for the engine's
    session settings)."""
    return [q for q in queries if not q["sql"].startswith("SET ")]


@pytest.fixture
def crowd(merchant):
    """loyal: 5 recent orders of 200; lapsed: 1 old order; staff: recent, tagged staff;
    newbie: nothing."""
    staff_tag = TagFactory(merchant=merchant, name="staff")
    people = {}
    for ext in ("loyal", "lapsed", "staff", "newbie"):
        people[ext] = CustomerFactory(
            merchant=merchant, external_id=ext, joined_at=AS_OF - 500 * DAY
        )
    for days in range(1, 6):
        TransactionFactory(customer=people["loyal"], occurred_at=AS_OF - days * DAY, total=200)
    TransactionFactory(customer=people["lapsed"], occurred_at=AS_OF - 90 * DAY, total=900)
    TransactionFactory(customer=people["staff"], occurred_at=AS_OF - 2 * DAY, total=600)
    people["staff"].tags.add(staff_tag)
    people["staff"].customer_type = "employee"
    people["staff"].save()
    return people


CONTRACT_EXAMPLE = rules(
    cond("total_spend", "gte", 500),
    cond("last_purchase", "within_days", 30),
    rules(
        cond("tags", "has_any", ["staff"]),
        cond("customer_type", "in", ["employee"]),
        match="any",
        negate=True,
    ),
)


def test_contract_example(crowd, evaluate):
    assert evaluate(CONTRACT_EXAMPLE) == ["loyal"]
    assert evaluate(CONTRACT_EXAMPLE, fast=True) == ["loyal"]


def test_groups_compose_without_duplicate_rows(crowd, evaluate, merchant):
    # loyal has five matching transactions, yet appears once under any combination.
    tree = rules(
        cond("orders_count", "gte", 1, window_days=30),
        rules(cond("total_spend", "gte", 1), cond("last_purchase", "within_days", 10), match="any"),
        match="all",
    )
    qs = engine.matching_customers(merchant=merchant, rules=tree, as_of=AS_OF)
    assert ext_ids(qs) == ["loyal", "staff"]
    assert qs.count() == 2
    assert "DISTINCT" not in str(qs.query).upper()
    assert evaluate(rules(tree, negate=True)) == ["lapsed", "newbie"]
    assert evaluate(rules(rules(tree, negate=True), negate=True)) == ["loyal", "staff"]


def test_any_and_nested_negation(crowd, evaluate):
    tree = rules(
        cond("orders_count", "eq", 0),
        rules(cond("last_purchase", "within_days", 30), negate=True),
        match="any",
    )
    assert evaluate(tree) == ["lapsed", "newbie"]
    assert evaluate(tree, fast=True) == ["lapsed", "newbie"]


def test_fast_path_is_the_default_for_now_and_agrees(crowd, merchant, monkeypatch):
    # "now" pinned just after the data, whatever the machine's clock says
    monkeypatch.setattr("segments.engine.timezone.now", lambda: AS_OF + DAY)
    tree = rules(cond("total_spend", "gte", 500), cond("orders_count", "lte", 5))
    fast = engine.matching_customers(merchant=merchant, rules=tree)
    exact = engine.matching_customers(merchant=merchant, rules=tree, exact=True)
    # the fast path reads the aggregates on the per-customer row, the exact one transactions
    assert "net_spend" in str(fast.query)
    assert "customers_transaction" not in str(fast.query)
    assert "net_spend" not in str(exact.query)
    assert "customers_transaction" in str(exact.query)
    assert ext_ids(fast) == ext_ids(exact) == ["lapsed", "loyal", "staff"]
    assert engine.count_matching(merchant=merchant, rules=tree) == 3
    past = engine.matching_customers(merchant=merchant, rules=tree, as_of=AS_OF)
    assert "net_spend" not in str(past.query)  # an explicit as_of takes the exact path


def test_past_as_of_ignores_later_transactions(crowd, evaluate):
    assert evaluate(rules(cond("total_spend", "gte", 500)), as_of=AS_OF - 3 * DAY) == [
        "lapsed",
        "loyal",
    ]
    assert evaluate(rules(cond("last_purchase", "never")), as_of=AS_OF - 100 * DAY) == [
        "lapsed",
        "loyal",
        "newbie",
        "staff",
    ]


def test_another_merchants_customers_never_appear(crowd, merchant, other_merchant):
    stranger = CustomerFactory(merchant=other_merchant, external_id="loyal")
    TransactionFactory(customer=stranger, occurred_at=AS_OF - DAY, total=5000)
    tree = rules(cond("total_spend", "gte", 0), match="any")
    qs = engine.matching_customers(merchant=merchant, rules=tree, as_of=AS_OF)
    assert stranger not in qs
    assert set(qs.values_list("merchant_id", flat=True)) == {merchant.pk}
    assert engine.count_matching(merchant=other_merchant, rules=tree, as_of=AS_OF) == 1


def test_naive_as_of_is_refused(merchant):
    with pytest.raises(ValueError, match="aware"):
        engine.matching_customers(
            merchant=merchant, rules=rules(cond("age", "gte", 1)), as_of=dt.datetime(2026, 1, 1)
        )


# -- the segment criterion ----------------------------------------------------------------------


def make_segment(merchant, slug, tree=None, kind=SegmentKind.DYNAMIC):
    return Segment.objects.create(
        merchant=merchant, name=slug, slug=slug, kind=kind, rules=tree or {}
    )


def test_segment_dynamic_is_compiled_live_with_the_same_as_of(crowd, merchant, evaluate):
    make_segment(merchant, "big-spenders", rules(cond("total_spend", "gte", 900)))
    tree = rules(cond("segment", "in", ["big-spenders"]))
    assert evaluate(tree) == ["lapsed", "loyal"]
    assert evaluate(tree, as_of=AS_OF - 3 * DAY) == ["lapsed"]
    assert evaluate(rules(cond("segment", "not_in", ["big-spenders"]))) == ["newbie", "staff"]


def test_segment_manual_reads_memberships_and_nests(crowd, merchant, evaluate):
    vip = make_segment(merchant, "vip", kind=SegmentKind.MANUAL)
    SegmentMembership.objects.create(segment=vip, customer=crowd["newbie"])
    make_segment(
        merchant,
        "vip-or-staff",
        rules(cond("segment", "in", ["vip"]), cond("tags", "has_any", ["staff"]), match="any"),
    )
    assert evaluate(rules(cond("segment", "in", ["vip"]))) == ["newbie"]
    assert evaluate(rules(cond("segment", "in", ["vip-or-staff"]))) == ["newbie", "staff"]
    assert evaluate(rules(cond("segment", "not_in", ["vip", "vip-or-staff"]))) == [
        "lapsed",
        "loyal",
    ]


def test_segment_unknown_slug_and_other_merchants_slug(merchant, other_merchant):
    make_segment(other_merchant, "theirs", rules(cond("age", "gte", 1)))
    with pytest.raises(RuleValidationError) as info:
        engine.validate_rules(
            rules(cond("age", "gte", 1), cond("segment", "in", ["nope", "theirs"])),
            merchant=merchant,
        )
    assert info.value.errors == [
        'conditions[1].value: "nope" is not a segment of this merchant',
        'conditions[1].value: "theirs" is not a segment of this merchant',
    ]


def test_segment_cycles_are_validation_errors(merchant):
    a = make_segment(merchant, "a", rules(cond("age", "gte", 1)))
    make_segment(merchant, "b", rules(cond("segment", "in", ["a"])))
    make_segment(merchant, "c", rules(cond("segment", "in", ["b"])))
    with pytest.raises(RuleValidationError) as info:
        engine.validate_rules(rules(cond("segment", "in", ["c"])), merchant=merchant, segment=a)
    assert info.value.errors == [
        'conditions[0].value: "c" makes a cycle of segments (a -> c -> b -> a)'
    ]
    with pytest.raises(RuleValidationError) as info:
        engine.validate_rules(rules(cond("segment", "in", ["a"])), merchant=merchant, segment=a)
    assert info.value.errors == ['conditions[0].value: a segment cannot refer to itself ("a")']
    # Without the segment being edited there is no cycle.
    assert engine.validate_rules(rules(cond("segment", "in", ["c"])), merchant=merchant)


def test_a_stored_cycle_fails_loudly_instead_of_recursing(merchant):
    make_segment(merchant, "x", rules(cond("segment", "in", ["y"])))
    make_segment(merchant, "y", rules(cond("segment", "in", ["x"])))
    with pytest.raises(RuleValidationError, match="cycle"):
        engine.count_matching(merchant=merchant, rules=rules(cond("segment", "in", ["x"])))


def test_referenced_segment_slugs():
    tree = rules(cond("segment", "in", ["a", "b"]), rules(cond("segment", "not_in", ["c"])))
    assert engine.referenced_segment_slugs(tree) == {"a", "b", "c"}
    assert engine.referenced_segment_slugs(engine.parse_rules(tree)) == {"a", "b", "c"}
    assert engine.referenced_segment_slugs({"match": "all"}) == set()


# -- explain, funnel, describe ------------------------------------------------------------------


def test_explain_every_node_in_one_query(crowd, merchant):
    with CaptureQueriesContext(connection) as queries:
        results = engine.explain(
            merchant=merchant, rules=CONTRACT_EXAMPLE, customer=crowd["staff"], as_of=AS_OF
        )
    assert len(evaluations(queries)) == 1
    assert [(r.path, r.label, r.matched) for r in results] == [
        (
            "",
            "total spend ≥ 500 and last purchase within 30 days and not (tags has any of "
            "staff or customer type is employee)",
            False,
        ),
        ("conditions[0]", "total spend ≥ 500", True),
        ("conditions[1]", "last purchase within 30 days", True),
        ("conditions[2]", "not (tags has any of staff or customer type is employee)", False),
        ("conditions[2].conditions[0]", "tags has any of staff", True),
        ("conditions[2].conditions[1]", "customer type is employee", True),
    ]
    assert [r.depth for r in results] == [0, 1, 1, 1, 2, 2]
    newbie = engine.explain(merchant=merchant, rules=CONTRACT_EXAMPLE, customer=crowd["newbie"])
    assert [r.matched for r in newbie] == [False, False, False, True, False, False]


def test_explain_refuses_another_merchants_customer(merchant, other_merchant):
    stranger = CustomerFactory(merchant=other_merchant)
    with pytest.raises(type(stranger).DoesNotExist):
        engine.explain(merchant=merchant, rules=CONTRACT_EXAMPLE, customer=stranger)


def test_funnel_counts_alone_and_cumulative_in_one_query(crowd, merchant):
    with CaptureQueriesContext(connection) as queries:
        steps = engine.funnel(merchant=merchant, rules=CONTRACT_EXAMPLE, as_of=AS_OF)
    assert len(evaluations(queries)) == 1
    assert [(s.path, s.count, s.cumulative) for s in steps] == [
        ("conditions[0]", 3, 3),
        ("conditions[1]", 2, 2),
        ("conditions[2]", 3, 1),
    ]
    assert steps[2].cumulative == engine.count_matching(
        merchant=merchant, rules=CONTRACT_EXAMPLE, as_of=AS_OF
    )


def test_funnel_any_with_root_negate(crowd, merchant):
    tree = rules(
        cond("orders_count", "eq", 0), cond("total_spend", "gte", 900), match="any", negate=True
    )
    steps = engine.funnel(merchant=merchant, rules=tree, as_of=AS_OF)
    assert [(s.path, s.label, s.count, s.cumulative) for s in steps] == [
        ("conditions[0]", "orders = 0", 1, 1),
        ("conditions[1]", "total spend ≥ 900", 2, 3),
        ("", "not (any of the above)", 1, 1),
    ]
    assert engine.count_matching(merchant=merchant, rules=tree, as_of=AS_OF) == 1


def test_describe():
    assert engine.describe(CONTRACT_EXAMPLE) == (
        "Total spend ≥ 500 and last purchase within 30 days and not (tags has any of staff "
        "or customer type is employee)"
    )
    assert engine.describe(
        rules(
            cond(
                "purchased",
                "gt",
                15,
                products={"product_types": ["preroll"], "brands": ["Phat Panda"]},
                last_within_days=14,
            ),
            rules(
                cond("age", "between", [21, 30]),
                cond("gender", "in", ["female", "other"]),
                match="any",
            ),
            cond("birthday", "this_month"),
            cond("last_contacted", "before_days", 30),
            cond("orders_count", "gte", 2, window_days=90),
        )
    ) == (
        "Purchased brand Phat Panda product type preroll units > 15, last within 14 days and "
        "(age between 21 and 30 or gender is one of female, other) and birthday this month "
        "and last contacted more than 30 days ago and orders ≥ 2 in the last 90 days"
    )
    assert engine.describe(rules(cond("total_spend", "gte", Decimal("1000.50")))) == (
        "Total spend ≥ 1000.50"
    )


def test_every_json_example_of_the_user_docs_validates(merchant):
    # given the ```json blocks of docs/segment-rules.md
    text = (Path(settings.BASE_DIR) / "docs" / "segment-rules.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 9
    for block in blocks:
        data = json.loads(block)
        # when / then: a condition on its own is checked inside a group
        tree = rules(data) if "field" in data else data
        assert engine.validate_rules(tree, merchant=merchant)


def test_count_with_funnel_is_one_query_and_agrees(crowd, merchant):
    # given: one condition (the count's shortcut) and several (the funnel's histogram)
    single = rules(cond("total_spend", "gte", 500))
    several = CONTRACT_EXAMPLE

    for tree in (single, several):
        # when
        with CaptureQueriesContext(connection) as queries:
            count, steps = engine.count_with_funnel(merchant=merchant, rules=tree, as_of=AS_OF)

        # then
        assert len(evaluations(queries)) == 1
        assert count == engine.count_matching(merchant=merchant, rules=tree, as_of=AS_OF)
        assert steps == engine.funnel(merchant=merchant, rules=tree, as_of=AS_OF)
        assert steps[-1].cumulative == count


def test_a_set_of_buyers_is_counted_once_each_and_count_sql_runs_the_same_count(merchant):
    # given: Ann bought two edibles (two product rows), Bob one, Cy a flower only
    edible_a, edible_b = (ProductFactory(merchant=merchant, product_type="edible") for _ in "ab")
    flower = ProductFactory(merchant=merchant, product_type="flower")
    now = timezone.now()
    for name, products in (("ann", [edible_a, edible_b]), ("bob", [edible_a]), ("cy", [flower])):
        purchase = TransactionFactory(
            customer=CustomerFactory(merchant=merchant, external_id=name),
            occurred_at=now - 3 * DAY,
        )
        for product in products:
            LineItemFactory(transaction=purchase, product=product)
    bought = rules(
        cond("purchased", "gte", 1, products={"product_types": ["edible"]}, window_days=30)
    )
    tree = rules(cond("total_spend", "gte", 0), cond("orders_count", "gte", 1))

    for tree_rules, expected in ((bought, 2), (tree, 3)):
        # when
        rows = engine.count_queryset(merchant=merchant, rules=tree_rules)
        sql, params = engine.count_sql(rows)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            (by_sql,) = cursor.fetchone()

        # then
        assert engine.count_matching(merchant=merchant, rules=tree_rules) == by_sql == expected
