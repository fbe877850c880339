"""Ready-made segments over the scores: one button per family on the segment list, ordinary
dynamic segments, refreshed after each score computation."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from customers.scores.service import scores_compute
from segments import services
from segments.models import Segment
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
    ]


def test_the_list_offers_the_families_to_those_who_may_save(merchant, staff_client):
    html = staff_client.get(reverse("segments:list")).content.decode()
    assert 'id="ready-made-lifecycle"' in html
    assert "6 of 6 to add" in html and "11 of 11 to add" in html and "none yet" in html


def test_an_unknown_family_is_refused(merchant, staff_client):
    response = staff_client.post(reverse("segments:ready_made"), {"family": "zodiac"}, follow=True)
    assert "Pick lifecycle stages, RFM groups or tiers." in response.content.decode()
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
