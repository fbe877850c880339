"""Full refresh: the difference in SQL, events, freshness, the version guard, failures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import CustomerMetrics
from segments.models import (
    MembershipEvent,
    RefreshStatus,
    Segment,
    SegmentKind,
    SegmentMembership,
)
from segments.services import refresh, seams, segment_refresh
from tests.factories import CustomerFactory, MerchantFactory, TransactionFactory
from tests.segments.refresh_helpers import (
    BROKEN_RULES,
    fake_matching,
    install_fake_engine,
    make_segment,
    spend_rules,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    install_fake_engine(monkeypatch)


def spender(merchant, total):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal(total))
    return customer


def set_spend(customer, total):
    CustomerMetrics.objects.filter(customer=customer).update(net_spend=Decimal(total))


def members(segment):
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list("customer_id", flat=True)
    )


def events(segment):
    return set(
        MembershipEvent.objects.filter(segment=segment).values_list("customer_id", "kind", "reason")
    )


def test_first_refresh_materialises_the_matching_customers_with_entry_events(merchant):
    # given
    rich, richer = spender(merchant, "150"), spender(merchant, "900")
    spender(merchant, "20")
    CustomerFactory(merchant=merchant)  # no purchases, no metrics row
    spender(MerchantFactory(), "5000")  # another merchant's customer
    segment = make_segment(merchant, "big-spenders")

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert result.status == "ok"
    assert (result.entered, result.exited, result.member_count) == (2, 0, 2)
    assert members(segment) == {rich.pk, richer.pk}
    assert events(segment) == {(rich.pk, "entry", "rule"), (richer.pk, "entry", "rule")}
    segment.refresh_from_db()
    assert segment.member_count == 2
    assert segment.refresh_status == RefreshStatus.OK
    assert segment.last_refreshed_at is not None
    assert segment.last_refresh_duration_ms is not None
    assert segment.last_refresh_error == ""
    assert segment.next_refresh_at > segment.last_refreshed_at
    assert set(MembershipEvent.objects.values_list("definition_version", flat=True)) == {1}


def test_refresh_applies_the_difference_and_keeps_since_of_those_who_stay(merchant):
    # given
    stayer, leaver, newcomer = (spender(merchant, t) for t in ("500", "200", "10"))
    segment = make_segment(merchant, "big-spenders")
    segment_refresh(segment_id=segment.pk)
    since = SegmentMembership.objects.get(segment=segment, customer=stayer).since
    set_spend(leaver, "50")
    set_spend(newcomer, "120")

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert (result.status, result.entered, result.exited, result.member_count) == ("ok", 1, 1, 2)
    assert members(segment) == {stayer.pk, newcomer.pk}
    assert SegmentMembership.objects.get(segment=segment, customer=stayer).since == since
    assert events(segment) == {
        (stayer.pk, "entry", "rule"),
        (leaver.pk, "entry", "rule"),
        (leaver.pk, "exit", "rule"),
        (newcomer.pk, "entry", "rule"),
    }
    segment.refresh_from_db()
    assert segment.member_count == 2


def test_a_refresh_without_changes_writes_no_events(merchant):
    # given
    spender(merchant, "500")
    segment = make_segment(merchant, "big-spenders")
    segment_refresh(segment_id=segment.pk)

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert (result.entered, result.exited, result.member_count) == (0, 0, 1)
    assert MembershipEvent.objects.filter(segment=segment).count() == 1


def test_refresh_runs_the_same_queries_whatever_the_number_of_members(merchant):
    # given: set-based SQL, no row-by-row work in Python
    small, large = make_segment(merchant, "small"), make_segment(merchant, "large")
    for _ in range(5):
        spender(merchant, "150")
    for _ in range(40):
        spender(merchant, "500")
    large.rules = spend_rules(400)
    large.save()

    # when
    queries = {}
    for segment in (small, large):
        with CaptureQueriesContext(connection) as captured:
            result = segment_refresh(segment_id=segment.pk)
        queries[segment.slug] = (len(captured), result.entered)

    # then
    assert queries["small"][1] == 45 and queries["large"][1] == 40
    # the diff, the freshness, the statistics and the day's size: a fixed set of statements
    assert queries["small"][0] == queries["large"][0] <= 26


def test_an_edit_during_the_refresh_supersedes_it_and_nothing_is_written(merchant, monkeypatch):
    # given
    old_member = spender(merchant, "500")
    segment = make_segment(merchant, "big-spenders")
    segment_refresh(segment_id=segment.pk)
    set_spend(old_member, "10")
    spender(merchant, "700")

    def edit_while_computing(segment, as_of):
        # Another request saves new rules after the refresh noted the version it started from.
        Segment.objects.filter(pk=segment.pk).update(definition_version=F("definition_version") + 1)
        return fake_matching(segment, as_of)

    monkeypatch.setattr(seams, "matching_queryset", edit_while_computing)

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert result.status == "superseded"
    assert members(segment) == {old_member.pk}
    assert MembershipEvent.objects.filter(segment=segment).count() == 1
    segment.refresh_from_db()
    assert segment.definition_version == 2
    assert segment.refresh_status == RefreshStatus.QUEUED
    assert segment.member_count == 1


def test_an_edit_between_start_and_write_supersedes_the_refresh(merchant, monkeypatch):
    # given: the edit lands after the first, short transaction marked the segment running
    spender(merchant, "500")
    segment = make_segment(merchant, "big-spenders")
    original_start = refresh.refresh_start

    def start_then_edit(segment_id):
        started = original_start(segment_id)
        Segment.objects.filter(pk=segment_id).update(
            definition_version=F("definition_version") + 1, refresh_status=RefreshStatus.QUEUED
        )
        return started

    monkeypatch.setattr(refresh, "refresh_start", start_then_edit)

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert result.status == "superseded"
    assert members(segment) == set()
    segment.refresh_from_db()
    assert segment.refresh_status == RefreshStatus.QUEUED


def test_a_failing_refresh_keeps_the_old_membership_and_records_the_error(merchant):
    # given
    member = spender(merchant, "500")
    segment = make_segment(merchant, "big-spenders")
    segment_refresh(segment_id=segment.pk)
    refreshed_at = Segment.objects.get(pk=segment.pk).last_refreshed_at
    Segment.objects.filter(pk=segment.pk).update(rules=BROKEN_RULES)

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert result.status == "failed"
    assert 'there is no segment "gone"' in result.error
    assert members(segment) == {member.pk}
    segment.refresh_from_db()
    assert segment.refresh_status == RefreshStatus.FAILED
    assert 'there is no segment "gone"' in segment.last_refresh_error
    assert segment.last_refresh_duration_ms is not None
    assert segment.last_refreshed_at == refreshed_at
    assert segment.member_count == 1
    assert segment.next_refresh_at is not None


def test_a_failure_in_the_middle_of_the_writes_rolls_them_back(merchant, monkeypatch):
    # given
    stayer = spender(merchant, "500")
    segment = make_segment(merchant, "big-spenders")
    segment_refresh(segment_id=segment.pk)
    set_spend(stayer, "1")
    spender(merchant, "800")
    statements = refresh.diff_statements

    def last_statement_fails(*args):
        return [*statements(*args)[:3], ("SELECT * FROM no_such_table", [])]

    monkeypatch.setattr(refresh, "diff_statements", last_statement_fails)

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert result.status == "failed"
    assert members(segment) == {stayer.pk}
    assert MembershipEvent.objects.filter(segment=segment).count() == 1
    assert Segment.objects.get(pk=segment.pk).refresh_status == RefreshStatus.FAILED


def test_the_next_successful_refresh_clears_the_error(merchant):
    # given
    spender(merchant, "500")
    segment = make_segment(merchant, "big-spenders", rules=BROKEN_RULES)
    segment_refresh(segment_id=segment.pk)
    Segment.objects.filter(pk=segment.pk).update(rules=make_segment(merchant, "x").rules)

    # when
    result = segment_refresh(segment_id=segment.pk)

    # then
    assert result.status == "ok"
    segment.refresh_from_db()
    assert (segment.refresh_status, segment.last_refresh_error) == (RefreshStatus.OK, "")


def test_inactive_and_manual_segments_are_not_refreshed(merchant):
    # given
    spender(merchant, "500")
    inactive = make_segment(merchant, "inactive", is_active=False)
    manual = make_segment(merchant, "vips", kind=SegmentKind.MANUAL)

    # when
    results = [segment_refresh(segment_id=s.pk) for s in (inactive, manual)]

    # then
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert SegmentMembership.objects.count() == 0
    assert set(Segment.objects.values_list("refresh_status", flat=True)) == {RefreshStatus.NEVER}


def test_a_missing_segment_is_skipped(db):
    assert segment_refresh(segment_id=987654).status == "skipped"


def test_refresh_as_of_is_handed_to_the_rules(merchant, monkeypatch):
    # given
    seen = []

    def record(segment, as_of):
        seen.append(as_of)
        return fake_matching(segment, as_of)

    monkeypatch.setattr(seams, "matching_queryset", record)
    segment = make_segment(merchant, "big-spenders")
    as_of = timezone.now() - dt.timedelta(days=30)

    # when
    segment_refresh(segment_id=segment.pk, as_of=as_of)

    # then
    assert seen == [as_of]


def test_deleting_a_customer_or_a_segment_removes_their_memberships_and_events(merchant):
    # given: memberships and events, whose foreign keys have no database constraint
    keep, gone = spender(merchant, "500"), spender(merchant, "600")
    segment = make_segment(merchant, "big-spenders")
    other = make_segment(merchant, "others")
    segment_refresh(segment_id=segment.pk)
    segment_refresh(segment_id=other.pk)
    assert SegmentMembership.objects.count() == 4

    # when: Django cascades the deletes itself
    gone.delete()
    other.delete()

    # then
    assert list(SegmentMembership.objects.values_list("segment_id", "customer_id")) == [
        (segment.pk, keep.pk)
    ]
    assert set(MembershipEvent.objects.values_list("segment_id", "customer_id")) == {
        (segment.pk, keep.pk)
    }
