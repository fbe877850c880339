"""Incremental updates (rules evaluated in Python for the changed customers) and full
refreshes (compiled SQL) write the same memberships, for varied rules over varied data."""

from __future__ import annotations

import pytest

from customers.models import Customer
from segments.models import Segment, SegmentKind, SegmentMembership
from segments.services import segment_memberships_update_for_customers, segment_refresh
from segments.templates_catalog import TEMPLATES
from tests.segments.conftest import AS_OF, cond, rules
from tests.segments.test_property import build_dataset

pytestmark = pytest.mark.django_db

PRODUCTS = {"product_types": ["preroll"], "brands": ["phat panda"]}
VARIED = {
    "spenders-recent": rules(
        cond("total_spend", "gte", "40"), cond("last_purchase", "within_days", 30)
    ),
    "windowed": rules(
        cond("orders_count", "gte", 1, window_days=90),
        cond("avg_order_value", "lt", 100, window_days=365),
        match="any",
    ),
    "prerolls": rules(cond("purchased", "gte", 6, products=PRODUCTS, window_days=365)),
    "branch-or-rewards": rules(
        cond("visited_branch", "in", ["EAST"], window_days=30),
        cond("rewards_redeemed", "gte", 1),
        match="any",
        negate=True,
    ),
    "profile": rules(
        cond("tags", "has_any", ["vip", "STAFF"]),
        rules(cond("age", "between", [18, 40]), cond("tier", "not_in", ["gold"]), match="any"),
        cond("birthday", "next_days", 30),
        match="any",
    ),
    "uses-others": rules(cond("segment", "in", ["spenders-recent", "hand-picked"])),
}


def test_incremental_and_full_refresh_write_the_same_members(merchant):
    # given: varied customers, the templates, varied rules and rules using other segments
    build_dataset(merchant)
    customers = list(Customer.objects.filter(merchant=merchant).values_list("pk", flat=True))
    hand_picked = Segment.objects.create(
        merchant=merchant, name="hand", slug="hand-picked", kind=SegmentKind.MANUAL
    )
    for pk in customers[::3]:
        SegmentMembership.objects.create(segment=hand_picked, customer_id=pk)
    segments = [
        Segment.objects.create(merchant=merchant, name=t["name"], slug=f"t{i}", rules=t["rules"])
        for i, t in enumerate(TEMPLATES)
    ] + [
        Segment.objects.create(merchant=merchant, name=slug, slug=slug, rules=tree)
        for slug, tree in VARIED.items()
    ]

    # when: every customer is updated incrementally, then every segment fully refreshed
    changes = segment_memberships_update_for_customers(
        merchant_id=merchant.pk, customer_ids=customers, as_of=AS_OF
    )
    results = [segment_refresh(segment_id=segment.pk, as_of=AS_OF) for segment in segments]

    # then: the refreshes find nothing to change, and the rules did select people
    assert [(r.status, r.entered, r.exited) for r in results] == [("ok", 0, 0)] * len(segments)
    assert len(changes) >= len(segments) - 3
    sizes = [r.member_count for r in results]
    assert all(size is not None and size < len(customers) for size in sizes)
    assert sum(bool(size) for size in sizes) >= len(segments) - 3
