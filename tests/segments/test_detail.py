"""The segment detail page and what it reads: statistics stored at refresh, daily size
snapshots, the entry/exit log, the members table, and the definition history with its diff
and restore."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from segments import services
from segments.models import MembershipEvent, Segment, SegmentKind, SegmentSizeSnapshot
from segments.services import segment_refresh, segment_snapshot_sizes
from tests.factories import CustomerFactory, MerchantFactory, TransactionFactory

pytestmark = pytest.mark.django_db


def spend_at_least(amount):
    return {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": amount}]}


@pytest.fixture
def shoppers(merchant):
    """ann: orders of 100 and 50 (net 150); bob: one order of 300 and a refund of 60 (net
    240); cy: one order of 20; dee: nothing."""
    # Names, emails and phones fixed: the member search must not find "bo" in a random one.
    people = {
        name: CustomerFactory(
            merchant=merchant,
            external_id=name,
            first_name=name.title(),
            last_name="Shopper",
            email=f"{name}@example.com",
            phone="",
        )
        for name in ["ann", "bob", "cy", "dee"]
    }
    TransactionFactory(customer=people["ann"], total=Decimal("100"))
    TransactionFactory(customer=people["ann"], total=Decimal("50"))
    TransactionFactory(customer=people["bob"], total=Decimal("300"))
    TransactionFactory(customer=people["bob"], total=Decimal("60"), refund=True)
    TransactionFactory(customer=people["cy"], total=Decimal("20"))
    return people


@pytest.fixture
def big_spenders(merchant, shoppers):
    segment = Segment.objects.create(
        merchant=merchant, name="Big spenders", slug="big", rules=spend_at_least(100)
    )
    segment_refresh(segment_id=segment.pk)
    segment.refresh_from_db()
    return segment


def test_a_refresh_stores_the_members_statistics(big_spenders):
    # ann and bob: 3 orders worth 450; net spend 150 + 240 = 390; the merchant's net is 410
    assert big_spenders.member_count == 2
    assert big_spenders.avg_transaction_value == Decimal("150.00")  # 450 / 3
    assert big_spenders.avg_transactions == Decimal("1.50")  # 3 / 2
    assert big_spenders.avg_spending == Decimal("195.00")  # 390 / 2
    assert big_spenders.revenue_share == Decimal("0.9512")  # 390 / 410
    assert big_spenders.avg_clv is None
    assert big_spenders.stats_computed_at is not None


def test_an_empty_segment_has_no_statistics(merchant, shoppers):
    segment = Segment.objects.create(
        merchant=merchant, name="Whales", slug="whales", rules=spend_at_least(10_000)
    )

    segment_refresh(segment_id=segment.pk)

    segment.refresh_from_db()
    assert (segment.member_count, segment.avg_transaction_value, segment.avg_spending) == (
        0,
        None,
        None,
    )
    assert segment.stats_computed_at is not None


def test_manual_changes_update_the_statistics(merchant, shoppers):
    segment = services.segment_create(merchant=merchant, name="Picked", kind=SegmentKind.MANUAL)

    services.segment_members_add(segment=segment, customers=[shoppers["cy"], shoppers["dee"]])

    segment.refresh_from_db()
    assert segment.avg_transactions == Decimal("0.50")  # one order among two members
    assert segment.avg_transaction_value == Decimal("20.00")


def test_a_refresh_writes_the_days_size(big_spenders, merchant):
    assert list(SegmentSizeSnapshot.objects.values_list("day", "member_count")) == [
        (merchant.today(), 2)
    ]


def test_snapshots_use_each_merchants_local_day_and_update_the_day(merchant):
    # given: 03:30 UTC on 1 March is still 28 February in Toronto, 1 March in Paris
    paris = MerchantFactory(slug="paris", time_zone="Europe/Paris")
    here = Segment.objects.create(merchant=merchant, name="a", slug="a", member_count=5)
    there = Segment.objects.create(merchant=paris, name="b", slug="b", member_count=7)
    now = dt.datetime(2026, 3, 1, 3, 30, tzinfo=dt.UTC)

    # when: two runs the same day, the count changed in between
    segment_snapshot_sizes(now=now)
    Segment.objects.filter(pk=here.pk).update(member_count=6)
    written = segment_snapshot_sizes(now=now + dt.timedelta(minutes=50))

    # then
    assert written == 2
    rows = SegmentSizeSnapshot.objects.values_list("segment_id", "day", "member_count")
    assert set(rows) == {(here.pk, dt.date(2026, 2, 28), 6), (there.pk, dt.date(2026, 3, 1), 7)}


def test_the_detail_page_shows_statistics_chart_log_and_members(staff_client, big_spenders):
    response = staff_client.get(reverse("segments:detail", args=[big_spenders.pk]))

    body = response.content.decode()
    assert response.status_code == 200
    assert "195.00" in body and "95.1%" in body  # average spending, share of revenue
    # one day recorded: words, not a chart of one dot
    assert response.context["size_history"] == [(big_spenders.merchant.today().isoformat(), 2)]
    assert '<canvas id="size-chart"' not in body
    assert "the chart appears from the second day" in body
    SegmentSizeSnapshot.objects.create(
        segment=big_spenders,
        day=big_spenders.merchant.today() - dt.timedelta(days=1),
        member_count=1,
    )
    body = staff_client.get(reverse("segments:detail", args=[big_spenders.pk])).content.decode()
    history = json.loads(
        body.split('id="size-history" type="application/json">')[1].split("</script>")[0]
    )
    assert [count for _, count in history] == [1, 2]
    assert '<canvas id="size-chart"' in body
    events = response.context["events"].object_list
    assert sorted((e.customer.external_id, e.kind, e.reason) for e in events) == [
        ("ann", "entry", "rule"),
        ("bob", "entry", "rule"),
    ]
    members = [row.record.customer.external_id for row in response.context["members"].page]
    assert members == ["ann", "bob"]
    assert reverse("customers:detail", args=[big_spenders.memberships.first().customer_id]) in body


def test_members_search_and_sort(staff_client, big_spenders):
    url = reverse("segments:detail", args=[big_spenders.pk])

    searched = staff_client.get(url, {"mq": "BO"})
    by_spend = staff_client.get(url, {"m-sort": "-net_spend"})

    assert [r.record.customer.external_id for r in searched.context["members"].page] == ["bob"]
    assert [r.record.customer.external_id for r in by_spend.context["members"].page] == [
        "bob",
        "ann",
    ]


def test_the_log_records_exits_with_their_reason(staff_client, big_spenders, shoppers):
    TransactionFactory(customer=shoppers["ann"], total=Decimal("100"), refund=True)
    segment_refresh(segment_id=big_spenders.pk)

    response = staff_client.get(reverse("segments:detail", args=[big_spenders.pk]))

    newest = response.context["events"].object_list[0]
    assert (newest.customer.external_id, newest.kind, newest.reason) == ("ann", "exit", "rule")
    assert "left" in response.content.decode()


# -- definition history -------------------------------------------------------------------


@pytest.fixture
def edited(merchant, staff_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        segment = services.segment_create(
            merchant=merchant,
            name="Spenders",
            kind=SegmentKind.DYNAMIC,
            rules=spend_at_least(100),
            created_by=staff_user,
        )
        services.segment_update(
            segment=segment, user=staff_user, name="Big spenders", rules=spend_at_least(500)
        )
    return Segment.objects.get(pk=segment.pk)


def test_history_lists_versions_and_shows_the_latest_change(staff_client, edited, staff_user):
    response = staff_client.get(reverse("segments:history", args=[edited.pk]))

    body = response.content.decode()
    versions = [(v.version, v.created_by) for v, _ in response.context["versions"]]
    assert versions == [(2, staff_user), (1, staff_user)]
    diff = [(line.kind, line.text) for line in response.context["diff"]]
    assert ("removed", "-Name: Spenders") in diff
    assert ("added", "+Name: Big spenders") in diff
    assert ("removed", '-      "value": 100') in diff
    assert ("added", '+      "value": 500') in diff
    assert "Total spend ≥ 500" in body  # each version in words
    # the change reads as the two sentences, before and after
    assert response.context["old_sentence"] == "Total spend ≥ 100"
    assert response.context["new_sentence"] == "Total spend ≥ 500"
    assert 'id="old-sentence"' in body and 'id="new-sentence"' in body


def test_history_of_one_version_offers_no_comparison(staff_client, merchant):
    segment = services.segment_create(
        merchant=merchant, name="Fresh", kind=SegmentKind.DYNAMIC, rules=spend_at_least(1)
    )

    body = staff_client.get(reverse("segments:history", args=[segment.pk])).content.decode()

    assert 'id="compare-form"' not in body
    assert "This is the first version" in body


def test_history_compares_any_two_versions(staff_client, edited):
    response = staff_client.get(reverse("segments:history", args=[edited.pk]), {"old": 2, "new": 2})

    assert response.context["diff"] == []
    assert "No difference." in response.content.decode()


def test_restore_saves_the_old_definition_as_a_new_version(
    staff_client, edited, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("segments:restore", args=[edited.pk, 1]))

    edited.refresh_from_db()
    assert response.status_code == 302
    assert (edited.name, edited.rules, edited.definition_version) == (
        "Spenders",
        spend_at_least(100),
        3,
    )
    assert list(edited.versions.values_list("version", flat=True)) == [3, 2, 1]
    assert edited.last_refreshed_at is not None  # refreshed from the restored rules


def test_restoring_an_unknown_version_is_not_found(staff_client, edited):
    assert staff_client.post(reverse("segments:restore", args=[edited.pk, 9])).status_code == 404


def test_restoring_rules_that_no_longer_validate_is_refused(staff_client, merchant, edited):
    # given: version 3 used a segment that has since been deleted
    other = Segment.objects.create(merchant=merchant, name="Gone", slug="gone")
    uses_gone = {
        "match": "all",
        "conditions": [{"field": "segment", "op": "in", "value": ["gone"]}],
    }
    services.segment_update(segment=edited, rules=uses_gone)
    services.segment_update(segment=edited, rules=spend_at_least(1))
    other.delete()

    # when
    response = staff_client.post(reverse("segments:restore", args=[edited.pk, 3]), follow=True)

    # then
    assert "Version 3 cannot be restored" in response.content.decode()
    edited.refresh_from_db()
    assert edited.rules == spend_at_least(1)


def test_events_keep_their_definition_version(big_spenders):
    assert set(MembershipEvent.objects.values_list("definition_version", flat=True)) == {1}
    assert timezone.now() >= big_spenders.last_refreshed_at
