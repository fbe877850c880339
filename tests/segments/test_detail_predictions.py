"""The segment page's "Predictions and reachability" card: the stored figures as people read
them, why a figure is empty, and the reach without predictions."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from segments import services
from segments.models import Segment, SegmentKind
from tests.segments.prediction_fixtures import VIP_RULES, now, vip_segment, vips

pytestmark = pytest.mark.django_db

# Fixtures, used by name.
__all__ = ["now", "vip_segment", "vips"]


def card(client: Client, segment: Segment) -> str:
    response = client.get(reverse("segments:detail", args=[segment.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    start = text.index('id="predictions-card"')
    return text[start : text.index('id="members-heading-count"', start)]


def test_the_segment_page_shows_the_predictions_and_the_reach(staff_client, vip_segment):
    text = card(staff_client, vip_segment)

    for expected in [
        "200.25 CAD",  # LTV
        "50.0%",  # risk rate
        "33.3%",  # activity ratio
        "37.5%",  # next order in 30 days
        "means over the 2 of 3 members with a prediction",
        "(of 3 members)",
    ]:
        assert expected in text
    assert reverse("help", args=["customer-scores"]) in text
    assert "no predictions yet" not in text


@pytest.mark.parametrize(
    ("row", "count", "share"),
    [
        ("registered", "2", "66.7%"),
        ("purchasers", "2", "66.7%"),
        ("email", "2", "66.7%"),
        ("sms", "1", "33.3%"),
        ("push", "1", "33.3%"),
    ],
)
def test_each_reachability_row_has_its_count_and_share(
    staff_client, vip_segment, row, count, share
):
    text = card(staff_client, vip_segment)

    cells = text[text.index(f'id="reach-{row}"') :].split("</tr>", 1)[0]
    assert f'<td class="num">{count}</td>' in cells
    assert f'<td class="num text-muted">{share}</td>' in cells


def test_without_predictions_the_page_says_so_and_still_shows_the_reach(
    staff_client, merchant, vips
):
    segment = services.segment_create(merchant=merchant, name="Picked", kind=SegmentKind.MANUAL)
    services.segment_members_add(segment=segment, customers=[vips["cy"]])

    text = card(staff_client, segment)

    assert text.count("no predictions yet") == 3  # LTV, risk rate, next order
    assert "None of the members has a prediction yet" in text
    assert "0.0%" in text  # activity: cy has no order
    assert 'id="reach-email"' in text


def test_statistics_stored_before_these_existed_wait_for_the_next_refresh(staff_client, merchant):
    segment = Segment.objects.create(
        merchant=merchant, name="Old", slug="old", rules=VIP_RULES, stats_computed_at=timezone.now()
    )

    text = card(staff_client, segment)

    assert "Computed at the next refresh." in text
    assert 'id="reachability"' not in text


def test_when_every_member_has_a_prediction_the_page_says_so(staff_client, merchant, vips):
    segment = services.segment_create(merchant=merchant, name="Ann", kind=SegmentKind.MANUAL)
    services.segment_members_add(segment=segment, customers=[vips["ann"]])

    text = card(staff_client, segment)

    assert "means over every member: each has a prediction" in text
    assert "100.00 CAD" in text
