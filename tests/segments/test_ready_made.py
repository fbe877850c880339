"""Ready-made segments over the scores: one button per family on the segment list, ordinary
dynamic segments, refreshed after each score computation."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from customers.scores.service import scores_compute
from customers.scores.smart import SMART_SEGMENT_NAMES
from segments import services
from segments.models import Segment, SegmentKind
from segments.ready_made import ready_made_missing
from tests.factories import CustomerFactory, TierFactory, TransactionFactory

pytestmark = pytest.mark.django_db


def test_each_family_adds_its_segments_once(merchant, staff_client):
    TierFactory(merchant=merchant, name="Gold", rank=3)
    TierFactory(merchant=merchant, name="Silver", rank=2)

    response = staff_client.post(
        reverse("segments:ready_made"), {"family": "lifecycle"}, follow=True
    )
    again = staff_client.post(reverse("segments:ready_made"), {"family": "lifecycle"}, follow=True)
    services.segments_add_ready_made(merchant=merchant, family="rfm")
    services.segments_add_ready_made(merchant=merchant, family="tiers")

    assert "Added 6 segments for lifecycle stages" in response.content.decode()
    assert "You have every segment for lifecycle stages already." in again.content.decode()
    slugs = list(
        Segment.objects.filter(merchant=merchant).order_by("pk").values_list("slug", flat=True)
    )
    assert slugs[:6] == [
        "lifecycle-new",
        "lifecycle-repeat",
        "lifecycle-regular",
        "lifecycle-loyal",
        "lifecycle-at-risk",
        "lifecycle-dormant",
    ]
    assert len(slugs) == 6 + 11 + 2
    gold = Segment.objects.get(merchant=merchant, name="Tier: Gold")
    assert gold.rules["conditions"] == [{"field": "tier", "op": "in", "value": ["Gold"]}]
    assert [
        (f, missing, total) for f, _, missing, total in ready_made_missing(merchant=merchant)
    ] == [
        ("lifecycle", 0, 6),
        ("rfm", 0, 11),
        ("tiers", 0, 2),
        ("smart", 10, 10),
    ]


def test_the_list_offers_the_families_to_those_who_may_save(merchant, staff_client):
    html = staff_client.get(reverse("segments:list")).content.decode()
    assert 'id="ready-made-lifecycle"' in html
    assert "6 of 6 to add" in html and "11 of 11 to add" in html and "none yet" in html
    assert 'id="ready-made-smart"' in html
    assert "Add the ten smart segments <small" in html and "10 of 10 to add" in html


def test_an_unknown_family_is_refused(merchant, staff_client):
    response = staff_client.post(reverse("segments:ready_made"), {"family": "zodiac"}, follow=True)
    assert "Pick lifecycle stages, RFM groups, tiers or smart segments." in (
        response.content.decode()
    )
    assert not Segment.objects.filter(merchant=merchant).exists()


def test_they_follow_each_score_computation(merchant, django_capture_on_commit_callbacks):
    now = dt.datetime.now(dt.UTC)
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, occurred_at=now - dt.timedelta(days=10))
    with django_capture_on_commit_callbacks(execute=True):
        services.segments_add_ready_made(merchant=merchant, family="lifecycle")
    new = Segment.objects.get(merchant=merchant, slug="lifecycle-new")
    at_risk = Segment.objects.get(merchant=merchant, slug="lifecycle-at-risk")
    assert (new.member_count, at_risk.member_count) == (1, 0)

    # when the computation runs 100 days later, the customer is at risk
    with django_capture_on_commit_callbacks(execute=True):
        scores_compute(merchant=merchant, as_of=now + dt.timedelta(days=100))

    new.refresh_from_db()
    at_risk.refresh_from_db()
    assert (new.member_count, at_risk.member_count) == (0, 1)


def test_the_smart_segments_button_adds_the_ten_once(merchant, staff_client):
    # given the ten added once, and one of them removed since
    services.segments_add_ready_made(merchant=merchant, family="smart")
    Segment.objects.filter(merchant=merchant, slug="smart-lost").delete()

    # when the button is pressed twice
    response = staff_client.post(reverse("segments:ready_made"), {"family": "smart"}, follow=True)
    again = staff_client.post(reverse("segments:ready_made"), {"family": "smart"}, follow=True)

    # then the missing one is back, and nothing is added twice
    assert "Added 1 segment for the ten smart segments" in response.content.decode()
    assert "You have every segment for the ten smart segments already." in (again.content.decode())
    smart = Segment.objects.filter(merchant=merchant, slug__startswith="smart-").order_by("pk")
    assert smart.count() == 10
    assert sorted(s.slug for s in smart) == sorted(
        f"smart-{name.replace('_', '-')}" for name in SMART_SEGMENT_NAMES
    )
    lost = Segment.objects.get(merchant=merchant, slug="smart-lost")
    assert (lost.name, lost.kind) == ("Smart: Lost", SegmentKind.DYNAMIC)
    assert lost.rules["conditions"] == [{"field": "smart_segment", "op": "in", "value": ["lost"]}]
    assert lost.description == (
        "Smart segment lost: one order, longer ago than the merchant's one-time cut-off, "
        "or P(alive) below 0.2."
    )
    assert Segment.objects.get(slug="smart-waiting-first-order").name == (
        "Smart: Waiting for the first order"
    )


def test_a_smart_segment_follows_each_score_computation(
    merchant, django_capture_on_commit_callbacks
):
    # given a customer whose only order was 10 days ago: a one-time shopper
    now = dt.datetime.now(dt.UTC)
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, occurred_at=now - dt.timedelta(days=10))
    with django_capture_on_commit_callbacks(execute=True):
        services.segments_add_ready_made(merchant=merchant, family="smart")
    once = Segment.objects.get(merchant=merchant, slug="smart-one-time-shopper")
    lost = Segment.objects.get(merchant=merchant, slug="smart-lost")
    assert (once.member_count, lost.member_count) == (1, 0)

    # when the computation runs 200 days later, past the one-time cut-off (90 days at least)
    with django_capture_on_commit_callbacks(execute=True):
        scores_compute(merchant=merchant, as_of=now + dt.timedelta(days=200))

    # then the customer has moved from one to the other
    once.refresh_from_db()
    lost.refresh_from_db()
    assert (once.member_count, lost.member_count) == (0, 1)


def test_a_purchase_moves_a_customer_between_smart_segments_at_once(
    merchant, django_capture_on_commit_callbacks
):
    # given a customer without an order, and the smart segments
    customer = CustomerFactory(merchant=merchant)
    with django_capture_on_commit_callbacks(execute=True):
        services.segments_add_ready_made(merchant=merchant, family="smart")
    waiting = Segment.objects.get(merchant=merchant, slug="smart-waiting-first-order")
    once = Segment.objects.get(merchant=merchant, slug="smart-one-time-shopper")
    assert list(waiting.memberships.values_list("customer", flat=True)) == [customer.pk]

    # when they buy, with no score computation in between
    with django_capture_on_commit_callbacks(execute=True):
        TransactionFactory(customer=customer, occurred_at=dt.datetime.now(dt.UTC))

    # then the purchase's own follow-up has moved them
    assert not waiting.memberships.exists()
    assert list(once.memberships.values_list("customer", flat=True)) == [customer.pk]
