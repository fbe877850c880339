"""Incremental updates: a customer's new purchases move them in and out of segments."""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.models import CustomerMetrics
from customers.services import merchant_metrics_refresh
from segments.models import MembershipEvent, Segment, SegmentKind, SegmentMembership
from segments.services import segment_memberships_update_for_customers, segment_refresh
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.refresh_helpers import (
    BROKEN_RULES,
    install_fake_engine,
    make_segment,
    segment_rules,
    spend_rules,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch, settings):
    install_fake_engine(monkeypatch)
    assert settings.CELERY_TASK_ALWAYS_EAGER


def memberships(customer):
    return set(
        SegmentMembership.objects.filter(customer=customer).values_list("segment__slug", flat=True)
    )


def test_a_new_purchase_puts_the_customer_into_the_segment_with_an_event(
    merchant, django_capture_on_commit_callbacks
):
    # given
    customer = CustomerFactory(merchant=merchant)
    segment = make_segment(merchant, "big-spenders", spend_rules(100))
    segment_refresh(segment_id=segment.pk)

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        TransactionFactory(customer=customer, total=Decimal("150"))

    # then
    assert len(callbacks) == 1
    assert memberships(customer) == {"big-spenders"}
    event = MembershipEvent.objects.get(segment=segment, customer=customer)
    assert (event.kind, event.reason, event.definition_version) == ("entry", "rule", 1)
    assert Segment.objects.get(pk=segment.pk).member_count == 1


def test_a_refund_takes_the_customer_out_again(merchant, django_capture_on_commit_callbacks):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    segment = make_segment(merchant, "big-spenders", spend_rules(100))
    segment_refresh(segment_id=segment.pk)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        TransactionFactory(customer=customer, total=Decimal("100"), refund=True)

    # then
    assert memberships(customer) == set()
    assert list(
        MembershipEvent.objects.filter(customer=customer).values_list("kind", flat=True)
    ) == ["exit", "entry"]
    assert Segment.objects.get(pk=segment.pk).member_count == 0


def test_nothing_is_enqueued_for_a_merchant_without_active_dynamic_segments(
    merchant, django_capture_on_commit_callbacks
):
    # given
    make_segment(merchant, "vips", kind=SegmentKind.MANUAL)
    make_segment(merchant, "paused", spend_rules(1), is_active=False)
    customer = CustomerFactory(merchant=merchant)

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        TransactionFactory(customer=customer, total=Decimal("150"))

    # then
    assert callbacks == []


def test_a_merchant_wide_metrics_refresh_refreshes_the_merchants_segments(
    merchant, django_capture_on_commit_callbacks
):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    segment = make_segment(merchant, "big-spenders", spend_rules(100))

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        merchant_metrics_refresh(merchant_id=merchant.pk)

    # then
    assert len(callbacks) == 1
    assert memberships(customer) == {"big-spenders"}
    assert Segment.objects.get(pk=segment.pk).refresh_status == "ok"


def test_segments_using_other_segments_are_updated_after_them(merchant):
    # given: "loyal-big" uses "big-spenders"; created first, so only the order helps it
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    make_segment(merchant, "a-loyal-big", segment_rules("big-spenders"))
    make_segment(merchant, "big-spenders", spend_rules(100))

    # when
    changes = segment_memberships_update_for_customers(
        merchant_id=merchant.pk, customer_ids=[customer.pk]
    )

    # then
    assert memberships(customer) == {"big-spenders", "a-loyal-big"}
    assert [c.entered for c in changes] == [{customer.pk}, {customer.pk}]


def test_a_failing_segment_does_not_stop_the_others(merchant):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    make_segment(merchant, "a-broken", BROKEN_RULES)
    make_segment(merchant, "big-spenders", spend_rules(100))

    # when
    segment_memberships_update_for_customers(merchant_id=merchant.pk, customer_ids=[customer.pk])

    # then
    assert memberships(customer) == {"big-spenders"}


def test_only_the_given_customers_of_that_merchant_are_touched(merchant, other_merchant):
    # given
    customer, bystander = CustomerFactory(merchant=merchant), CustomerFactory(merchant=merchant)
    foreigner = CustomerFactory(merchant=other_merchant)
    for person in (customer, bystander, foreigner):
        TransactionFactory(customer=person, total=Decimal("150"))
    make_segment(merchant, "big-spenders", spend_rules(100))

    # when
    segment_memberships_update_for_customers(
        merchant_id=merchant.pk, customer_ids=[customer.pk, foreigner.pk]
    )

    # then
    assert set(SegmentMembership.objects.values_list("customer_id", flat=True)) == {customer.pk}


def test_an_unchanged_customer_writes_nothing(merchant):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    segment = make_segment(merchant, "big-spenders", spend_rules(100))
    segment_refresh(segment_id=segment.pk)
    CustomerMetrics.objects.filter(customer=customer).update(net_spend=Decimal("200"))

    # when
    changes = segment_memberships_update_for_customers(
        merchant_id=merchant.pk, customer_ids=[customer.pk]
    )

    # then
    assert changes == []
    assert MembershipEvent.objects.count() == 1
    assert Segment.objects.get(pk=segment.pk).member_count == 1


def test_a_segment_using_a_deleted_segment_is_left_alone(merchant):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("150"))
    fans = make_segment(merchant, "fans", segment_rules("gone"))
    SegmentMembership.objects.create(segment=fans, customer=customer)

    # when
    segment_memberships_update_for_customers(merchant_id=merchant.pk, customer_ids=[customer.pk])

    # then
    assert memberships(customer) == {"fans"}
