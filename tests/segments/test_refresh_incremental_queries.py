"""The incremental update evaluates every segment in one query: its cost does not grow with
the number of segments when a purchase changes no membership (the common case)."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from segments.models import Segment, SegmentMembership
from segments.services import segment_memberships_update_for_customers
from tests.factories import CustomerFactory, TransactionFactory

pytestmark = pytest.mark.django_db


def spend_segment(merchant, slug, minimum):
    return Segment.objects.create(
        merchant=merchant,
        name=slug,
        slug=slug,
        rules={
            "match": "all",
            "conditions": [{"field": "total_spend", "op": "gte", "value": minimum}],
        },
    )


def queries_for_update(merchant, customer):
    with CaptureQueriesContext(connection) as captured:
        segment_memberships_update_for_customers(
            merchant_id=merchant.pk, customer_ids=[customer.pk]
        )
    return len(captured)


def test_query_count_does_not_grow_with_segments_when_nothing_changes(merchant):
    # given: a customer who matches none of the segments
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("10"))
    for i in range(3):
        spend_segment(merchant, f"few-{i}", 1000 + i)
    few = queries_for_update(merchant, customer)

    # when: nine more segments
    for i in range(9):
        spend_segment(merchant, f"many-{i}", 2000 + i)
    many = queries_for_update(merchant, customer)

    # then
    assert many == few
    assert not SegmentMembership.objects.exists()


def test_only_the_segments_whose_membership_changes_are_written(merchant):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    entered = spend_segment(merchant, "hundred", 100)
    untouched = [spend_segment(merchant, f"big-{i}", 5000 + i) for i in range(4)]

    # when
    changes = segment_memberships_update_for_customers(
        merchant_id=merchant.pk, customer_ids=[customer.pk]
    )

    # then
    assert [(c.segment_id, c.entered, c.exited) for c in changes] == [
        (entered.pk, {customer.pk}, set())
    ]
    assert SegmentMembership.objects.get().segment == entered
    assert all(s.memberships.count() == 0 for s in untouched)


def test_a_segment_whose_stored_rules_fail_does_not_stop_the_others(merchant):
    # given: one segment whose stored rules no longer validate (written behind the service)
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    good = spend_segment(merchant, "hundred", 100)
    broken = spend_segment(merchant, "broken", 1)
    Segment.objects.filter(pk=broken.pk).update(
        rules={"match": "all", "conditions": [{"field": "gone", "op": "in", "value": ["x"]}]}
    )

    # when
    changes = segment_memberships_update_for_customers(
        merchant_id=merchant.pk, customer_ids=[customer.pk]
    )

    # then
    assert [c.segment_id for c in changes] == [good.pk]
    assert not broken.memberships.exists()


def test_a_segment_whose_write_fails_does_not_stop_the_others(merchant, monkeypatch):
    # given: two segments the customer enters; writing one of them fails
    from segments.services import incremental

    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    good = spend_segment(merchant, "hundred", 100)
    failing = spend_segment(merchant, "fifty", 50)
    real = incremental.memberships_write

    def apply_changes(changes, **kwargs):
        if any(segment.pk == failing.pk for segment, _ in changes):
            raise RuntimeError("disk full")
        return real(changes, **kwargs)

    monkeypatch.setattr(incremental, "memberships_write", apply_changes)

    # when
    changes = segment_memberships_update_for_customers(
        merchant_id=merchant.pk, customer_ids=[customer.pk]
    )

    # then: the good one is written (on the one-by-one retry), the failing one left alone
    assert [c.segment_id for c in changes] == [good.pk]
    assert list(SegmentMembership.objects.values_list("segment_id", flat=True)) == [good.pk]
    assert Segment.objects.get(pk=good.pk).member_count == 1
    assert Segment.objects.get(pk=failing.pk).member_count == 0
