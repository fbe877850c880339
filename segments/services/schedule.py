"""When a segment is refreshed next, from its cadence (pure: no database)."""

from __future__ import annotations

import datetime as dt

from segments.models import (
    RefreshCadence,
    Segment,
)


def segment_next_refresh_at(segment: Segment, after: dt.datetime) -> dt.datetime:
    """The first scheduled refresh strictly after `after` (aware), in UTC.

    hourly: the next full hour of the merchant's clock; daily: the next `refresh_hour`:00
    merchant-local; weekly: the next `refresh_weekday` (0 = Monday) at `refresh_hour`:00.
    Local times are built on the local calendar and then converted with the merchant's
    time zone, so "3:00" stays 3:00 across a DST change; a local time that a spring-forward
    skips resolves to the same instant one hour later on the wall clock.
    """
    tz = segment.merchant.tzinfo
    local = after.astimezone(tz)
    if segment.refresh_cadence == RefreshCadence.HOURLY:
        # Absolute arithmetic: an hour is 60 minutes even on the day the clock jumps.
        floor = after - dt.timedelta(
            minutes=local.minute, seconds=local.second, microseconds=local.microsecond
        )
        return (floor + dt.timedelta(hours=1)).astimezone(dt.UTC)
    at = dt.time(segment.refresh_hour)
    day = local.date()
    if segment.refresh_cadence == RefreshCadence.WEEKLY:
        day += dt.timedelta(days=(segment.refresh_weekday - day.weekday()) % 7)
        step = dt.timedelta(days=7)
    else:
        step = dt.timedelta(days=1)
    candidate = dt.datetime.combine(day, at, tzinfo=tz).astimezone(dt.UTC)
    while candidate <= after:
        day += step
        candidate = dt.datetime.combine(day, at, tzinfo=tz).astimezone(dt.UTC)
    return candidate
