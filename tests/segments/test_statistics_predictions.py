"""The statistics over the members' predictions and reachability, stored at refresh: the
values against hand-computed ones (NULL predictions left out, a past `as_of` read from
the transactions), the list's Avg. CLV column, filter and export, and the admin. The
segment page's card: `test_detail_predictions.py`."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from segments import services
from segments.models import Segment, SegmentKind
from segments.services import segment_refresh, segment_stats_refresh
from segments.views import SegmentListView
from tests.factories import TransactionFactory, UserFactory
from tests.segments.prediction_fixtures import VIP_RULES, now, type_rules, vip_segment, vips

pytestmark = pytest.mark.django_db

# Fixtures, used by name.
__all__ = ["now", "vip_segment", "vips"]


def stored(segment: Segment) -> dict[str, object]:
    segment.refresh_from_db()
    return {
        "avg_clv": segment.avg_clv,
        "avg_churn_risk": segment.avg_churn_risk,
        "avg_p_order_30d": segment.avg_p_order_30d,
        "predicted_count": segment.predicted_count,
        "activity_ratio": segment.activity_ratio,
        "stats_member_count": segment.stats_member_count,
        "registered_count": segment.registered_count,
        "purchasers_count": segment.purchasers_count,
        "email_reachable_count": segment.email_reachable_count,
        "sms_reachable_count": segment.sms_reachable_count,
        "push_reachable_count": segment.push_reachable_count,
    }


def test_a_refresh_stores_the_means_of_the_members_predictions_and_their_reach(vip_segment):
    # then: means over ann and bob (cy has no prediction); dee and the rival are no members
    assert stored(vip_segment) == {
        "avg_clv": Decimal("200.25"),  # (100.00 + 300.50) / 2
        "avg_churn_risk": Decimal("0.5000"),  # (0.25 + 0.75) / 2
        "avg_p_order_30d": Decimal("0.3750"),  # (0.5 + 0.25) / 2
        "predicted_count": 2,
        "activity_ratio": Decimal("0.3333"),  # ann's order 5 days ago; bob's is 40 days old
        "stats_member_count": 3,
        "registered_count": 2,  # cy joins tomorrow
        "purchasers_count": 2,
        "email_reachable_count": 2,  # ann and cy; bob opted in without an address
        "sms_reachable_count": 1,  # ann; bob opted in without a phone
        "push_reachable_count": 1,  # ann
    }


def test_a_refresh_as_of_a_past_moment_counts_activity_from_the_transactions(merchant, vips, now):
    # given: as of 20 days ago, ann's order (5 days ago) is in the future and bob's (40 days
    # ago) within the 30 days before; cy had not joined either
    segment = Segment.objects.create(merchant=merchant, name="VIPs", slug="vips", rules=VIP_RULES)

    # when
    segment_refresh(segment_id=segment.pk, as_of=now - dt.timedelta(days=20))

    # then
    values = stored(segment)
    assert (values["activity_ratio"], values["registered_count"]) == (Decimal("0.3333"), 2)
    assert Segment.objects.get(pk=segment.pk).member_count == 3


def test_the_activity_window_is_the_30_days_up_to_the_refresh_both_ends_included(
    merchant, vips, now
):
    # given: as of 2 days ago, the window is [32 days ago, 2 days ago]: ann's order 5 days
    # ago is in it, cy's exactly 30 days before the as_of too; bob's order 31 days before
    # it and his order of yesterday are not
    as_of = now - dt.timedelta(days=2)
    TransactionFactory(customer=vips["cy"], occurred_at=as_of - dt.timedelta(days=30))
    TransactionFactory(customer=vips["bob"], occurred_at=as_of - dt.timedelta(days=31))
    TransactionFactory(customer=vips["bob"], occurred_at=now - dt.timedelta(days=1))
    segment = Segment.objects.create(merchant=merchant, name="VIPs", slug="vips", rules=VIP_RULES)

    # when
    segment_refresh(segment_id=segment.pk, as_of=as_of)

    # then: ann and cy
    assert stored(segment)["activity_ratio"] == Decimal("0.6667")


def test_members_without_predictions_leave_the_means_empty_but_count_their_reach(merchant, vips):
    # given: only cy, who has no order and so no prediction
    segment = services.segment_create(merchant=merchant, name="Picked", kind=SegmentKind.MANUAL)

    # when
    services.segment_members_add(segment=segment, customers=[vips["cy"]])

    # then
    values = stored(segment)
    assert (values["avg_clv"], values["avg_churn_risk"], values["avg_p_order_30d"]) == (
        None,
        None,
        None,
    )
    assert (values["predicted_count"], values["activity_ratio"]) == (0, Decimal("0.0000"))
    assert (values["stats_member_count"], values["email_reachable_count"]) == (1, 1)


def test_an_empty_segment_has_no_means_and_zero_counts(merchant, vips):
    segment = Segment.objects.create(
        merchant=merchant,
        name="Nobody",
        slug="nobody",
        rules=type_rules("nobody"),
    )

    segment_refresh(segment_id=segment.pk)

    values = stored(segment)
    assert values["avg_clv"] is None and values["activity_ratio"] is None
    assert values["stats_member_count"] == values["push_reachable_count"] == 0


def test_the_statistics_are_one_aggregate_over_the_members(vip_segment):
    # one over the members, the merchant (its time zone), the members' last 30 days of
    # sales, one over the merchant's revenue, one update
    with CaptureQueriesContext(connection) as queries:
        segment_stats_refresh(segment=vip_segment)

    assert len(queries) == 5


# -- the list ---------------------------------------------------------------------------------


def test_the_list_shows_sorts_and_filters_on_the_stored_avg_clv(staff_client, vip_segment):
    # given: a segment without predictions beside the VIPs
    Segment.objects.create(
        merchant=vip_segment.merchant, name="Empty", slug="empty", rules=VIP_RULES, member_count=0
    )
    staff_client.cookies["segments_columns"] = ".".join(SegmentListView.optional_columns)

    # when
    page = staff_client.get(reverse("segments:list"), {"sort": "-avg_clv"})
    above = staff_client.get(reverse("segments:list"), {"clv_min": "200.25"})
    below = staff_client.get(reverse("segments:list"), {"clv_max": "200"})

    # then
    text = page.content.decode()
    assert "Avg. CLV (CAD)" in text
    assert "200.25 CAD" in text
    assert [r.record.name for r in page.context["table"].page.object_list] == ["VIPs", "Empty"]
    assert [r.record.name for r in above.context["table"].page.object_list] == ["VIPs"]
    assert [r.record.name for r in below.context["table"].page.object_list] == []


def test_the_list_export_has_the_avg_clv_as_a_plain_number(staff_client, vip_segment):
    response = staff_client.get(reverse("segments:list"), {"_export": "csv"})

    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [row["Avg. CLV (CAD)"] for row in rows] == ["200.25"]


# -- the admin --------------------------------------------------------------------------------


def test_the_admin_shows_the_statistics_read_only(vip_segment):
    client = Client()
    client.force_login(UserFactory(username="support", is_staff=True, is_superuser=True))

    page = client.get(reverse("admin:segments_segment_change", args=[vip_segment.pk]))

    text = page.content.decode()
    assert "Statistics of the members" in text
    assert 'name="avg_clv"' not in text  # read-only: shown, not an input
    assert "200.25" in text
    assert "field-email_reachable_count" in text
