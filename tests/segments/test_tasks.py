"""The Celery entry points and the customers_changed receiver (tasks run in-process)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from customers.models import CustomerMetrics
from segments import signals, tasks
from segments.models import Segment, SegmentMembership
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.refresh_helpers import install_fake_engine, make_segment, spend_rules

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    install_fake_engine(monkeypatch)


@pytest.fixture
def rich(merchant):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("500"))
    return customer


def test_refresh_segment_takes_an_id_and_reports_the_outcome(merchant, rich):
    segment = make_segment(merchant, "big", spend_rules(100))
    assert tasks.refresh_segment.delay(segment.pk).get() == "ok"
    assert SegmentMembership.objects.filter(segment=segment, customer=rich).exists()


def test_refresh_merchant_segments_and_due_segments(merchant, rich):
    # given
    make_segment(merchant, "big", spend_rules(100))
    make_segment(merchant, "huge", spend_rules(1000))

    # when / then
    assert tasks.refresh_merchant_segments.delay(merchant.pk).get() == ["ok", "ok"]
    assert tasks.refresh_due_segments.delay().get() == 0
    Segment.objects.update(next_refresh_at=None)
    assert tasks.refresh_due_segments.delay().get() == 2


def test_update_customers_reports_how_many_segments_changed(merchant, rich):
    make_segment(merchant, "big", spend_rules(100))
    make_segment(merchant, "huge", spend_rules(1000))
    assert tasks.update_customers.delay(merchant.pk, [rich.pk]).get() == 1


def test_the_receiver_enqueues_one_update_per_change(
    merchant, other_merchant, django_capture_on_commit_callbacks, monkeypatch
):
    # given
    calls = []
    monkeypatch.setattr(tasks.update_customers, "delay", lambda *args: calls.append(args))
    make_segment(merchant, "big", spend_rules(100))
    make_segment(other_merchant, "big", spend_rules(100))
    ours = [CustomerFactory(merchant=merchant) for _ in range(2)]
    theirs = CustomerFactory(merchant=other_merchant)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        signals.on_customers_changed(
            sender=CustomerMetrics,
            merchant_id=merchant.pk,
            customer_ids=frozenset(c.pk for c in ours),
        )
        signals.on_customers_changed(
            sender=CustomerMetrics,
            merchant_id=other_merchant.pk,
            customer_ids=frozenset([theirs.pk]),
        )

    # then
    assert sorted(calls) == sorted(
        [(merchant.pk, sorted(c.pk for c in ours)), (other_merchant.pk, [theirs.pk])]
    )


def test_many_changed_customers_refresh_the_merchants_segments_instead(
    merchant, django_capture_on_commit_callbacks, monkeypatch
):
    # given: a write of more customers than the write chain announces one by one
    from customers import services as customer_services

    refreshed = []
    monkeypatch.setattr(customer_services, "CHANGE_BATCH_MAX", 2)
    monkeypatch.setattr(tasks.refresh_merchant_segments, "delay", refreshed.append)
    make_segment(merchant, "big", spend_rules(100))
    ids = [CustomerFactory(merchant=merchant).pk for _ in range(3)]

    # when
    with django_capture_on_commit_callbacks(execute=True):
        customer_services.customer_metrics_refresh(customer_ids=ids)

    # then
    assert refreshed == [merchant.pk]
