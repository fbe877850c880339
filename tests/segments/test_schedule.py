"""The refresh schedule: next refresh across DST, dependency order, due segments, beat."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django_celery_beat.models import PeriodicTask

from segments.graph import dependency_order
from segments.models import RefreshCadence, Segment, SegmentKind
from segments.services import segment_next_refresh_at, segments_refresh_due
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.refresh_helpers import (
    install_fake_engine,
    make_segment,
    segment_rules,
    spend_rules,
)

UTC = dt.UTC


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def toronto_segment(cadence, hour=3, weekday=6):
    # Unsaved: the schedule only reads the cadence fields and the merchant's time zone.
    from customers.models import Merchant

    merchant = Merchant(slug="acme", time_zone="America/Toronto")
    return Segment(
        merchant=merchant, refresh_cadence=cadence, refresh_hour=hour, refresh_weekday=weekday
    )


# 2026 in Toronto: EST (UTC-5) until Sunday 8 March 02:00, EDT (UTC-4) until Sunday 1 November.
@pytest.mark.parametrize(
    ("cadence", "after", "expected"),
    [
        # hourly: the next full hour, 60 real minutes apart even when the clock jumps
        ("hourly", utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7)),  # 01:30 EST -> 03:00 EDT
        ("hourly", utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 8)),
        ("hourly", utc(2026, 11, 1, 5, 59), utc(2026, 11, 1, 6)),  # 01:59 EDT -> 01:00 EST
        ("hourly", utc(2026, 11, 1, 6, 0), utc(2026, 11, 1, 7)),
        # daily at 03:00 local: 08:00 UTC in winter, 07:00 UTC in summer
        ("daily", utc(2026, 3, 7, 9), utc(2026, 3, 8, 7)),
        ("daily", utc(2026, 3, 7, 7), utc(2026, 3, 7, 8)),
        ("daily", utc(2026, 3, 7, 8), utc(2026, 3, 8, 7)),
        ("daily", utc(2026, 10, 31, 12), utc(2026, 11, 1, 8)),
        # weekly on Sunday at 03:00 local
        ("weekly", utc(2026, 3, 2, 12), utc(2026, 3, 8, 7)),
        ("weekly", utc(2026, 3, 8, 7), utc(2026, 3, 15, 7)),
        ("weekly", utc(2026, 10, 26, 12), utc(2026, 11, 1, 8)),
    ],
)
def test_next_refresh_follows_the_merchants_clock_across_dst(cadence, after, expected):
    assert segment_next_refresh_at(toronto_segment(cadence), after) == expected


def test_a_local_hour_skipped_by_spring_forward_runs_once_that_day():
    # 02:30 does not exist in Toronto on 8 March 2026; it runs at 03:30 EDT (07:30 UTC)
    segment = toronto_segment(RefreshCadence.DAILY, hour=2)
    assert segment_next_refresh_at(segment, utc(2026, 3, 7, 12)) == utc(2026, 3, 8, 7)
    assert segment_next_refresh_at(segment, utc(2026, 3, 8, 7)) == utc(2026, 3, 9, 6)


def test_a_weekly_refresh_on_another_weekday():
    segment = toronto_segment(RefreshCadence.WEEKLY, hour=23, weekday=0)  # Monday 23:00
    # Monday 2 March 2026 23:00 EST = Tuesday 04:00 UTC
    assert segment_next_refresh_at(segment, utc(2026, 3, 1, 12)) == utc(2026, 3, 3, 4)
    assert segment_next_refresh_at(segment, utc(2026, 3, 3, 4)) == utc(2026, 3, 10, 3)


def test_dependency_order_puts_each_segment_after_the_ones_it_uses():
    graph = {"c": {"b"}, "b": {"a"}, "a": set(), "d": set(), "e": {"a", "d", "missing"}}
    order = dependency_order(graph)
    assert order == ["a", "b", "c", "d", "e"]


def test_dependency_order_survives_cycles_and_self_references():
    graph = {"x": {"y"}, "y": {"x"}, "z": {"z"}, "w": {"x"}}
    assert dependency_order(graph) == ["z", "w", "x", "y"]


@pytest.mark.django_db
def test_due_segments_are_refreshed_in_dependency_order(merchant, other_merchant, monkeypatch):
    # given
    install_fake_engine(monkeypatch)
    now = utc(2026, 6, 15, 16)
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("500"))
    uses = make_segment(merchant, "a-uses-big", segment_rules("big"), next_refresh_at=None)
    big = make_segment(merchant, "big", spend_rules(100), next_refresh_at=now)
    later = make_segment(merchant, "later", next_refresh_at=now + dt.timedelta(minutes=1))
    make_segment(merchant, "paused", is_active=False, next_refresh_at=None)
    make_segment(merchant, "vips", kind=SegmentKind.MANUAL)
    elsewhere = make_segment(other_merchant, "big", next_refresh_at=now - dt.timedelta(days=1))

    # when
    results = segments_refresh_due(now=now)

    # then
    assert [r.segment_id for r in results] == [big.pk, uses.pk, elsewhere.pk]
    assert {r.status for r in results} == {"ok"}
    assert set(customer.segment_memberships.values_list("segment__slug", flat=True)) == {
        "big",
        "a-uses-big",
    }
    assert Segment.objects.get(pk=later.pk).last_refreshed_at is None
    assert Segment.objects.get(pk=big.pk).next_refresh_at > now


@pytest.mark.django_db
def test_the_beat_schedule_refreshes_due_segments_every_5_minutes():
    # TRICKY: a transactional test earlier in this worker may have flushed the rows that
    # `migrate` wrote, so run the migration's function (idempotent) before reading them.
    from importlib import import_module

    from django.apps import apps

    import_module("segments.migrations.0002_refresh_due_schedule").schedule(apps, None)

    task = PeriodicTask.objects.get(name="Refresh due segments")
    assert task.task == "segments.tasks.refresh_due_segments"
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (5, "minutes")


@pytest.mark.django_db
def test_the_beat_migration_is_idempotent():
    # given
    from importlib import import_module

    from django.apps import apps

    migration = import_module("segments.migrations.0002_refresh_due_schedule")

    # when
    migration.schedule(apps, None)
    migration.schedule(apps, None)

    # then
    assert PeriodicTask.objects.filter(name="Refresh due segments").count() == 1
