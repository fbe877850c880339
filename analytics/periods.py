"""Report periods: merchant-local dates, the presets of the period picker, the previous
period of the same length, and the time buckets (day, week, month, year) of a chart.

A period is a pair of merchant-local dates, both included. Its instants run from local
midnight at the start of the first day to local midnight after the last one, so an order at
23:30 local time on the last day is in, and a DST change inside the period moves nothing: the
boundaries are computed from the dates in the merchant's zone, never by adding hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

#: The longest period a report accepts (ten years); longer asks are refused, not slow.
MAX_DAYS = 3660
DATE_ERROR = "{field}: {value!r} is not a date (use YYYY-MM-DD)."
ORDER_ERROR = "The period ends ({end}) before it starts ({start})."
LENGTH_ERROR = "The period is {days:,} days long; a report covers at most {limit:,} days."
PRESET_ERROR = "Unknown period {value!r}: use one of {choices}."
GRANULARITY_ERROR = "Unknown interval {value!r}: use one of {choices}."


class PeriodError(ValueError):
    """A period that cannot be read; the message says which parameter and why."""


class Preset(StrEnum):
    LAST_7 = "7d"
    LAST_30 = "30d"
    LAST_90 = "90d"
    LAST_365 = "365d"
    THIS_MONTH = "this_month"
    LAST_MONTH = "last_month"
    CUSTOM = "custom"

    @property
    def label(self) -> str:
        return PRESET_LABELS[self]


PRESET_LABELS = {
    Preset.LAST_7: "Last 7 days",
    Preset.LAST_30: "Last 30 days",
    Preset.LAST_90: "Last 90 days",
    Preset.LAST_365: "Last 365 days",
    Preset.THIS_MONTH: "This month",
    Preset.LAST_MONTH: "Last month",
    Preset.CUSTOM: "Custom dates",
}


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True)
class Period:
    """Merchant-local dates `start` to `end`, both included, in the zone `tz`."""

    start: dt.date
    end: dt.date
    tz: ZoneInfo
    preset: Preset = Preset.CUSTOM

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise PeriodError(ORDER_ERROR.format(start=self.start, end=self.end))
        if self.days > MAX_DAYS:
            raise PeriodError(LENGTH_ERROR.format(days=self.days, limit=MAX_DAYS))

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def since(self) -> dt.datetime:
        """The first instant of the period: local midnight at the start of `start`."""
        return local_midnight(self.start, self.tz)

    @property
    def until(self) -> dt.datetime:
        """The instant just after the period: local midnight after `end` (excluded)."""
        return local_midnight(self.end + dt.timedelta(days=1), self.tz)

    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        end = self.start - dt.timedelta(days=1)
        return Period(start=end - dt.timedelta(days=self.days - 1), end=end, tz=self.tz)

    def auto_granularity(self) -> Granularity:
        """Daily up to 31 days, weekly up to 92, monthly up to 366, yearly beyond."""
        if self.days <= 31:
            return Granularity.DAY
        if self.days <= 92:
            return Granularity.WEEK
        if self.days <= 366:
            return Granularity.MONTH
        return Granularity.YEAR

    def buckets(self, granularity: Granularity) -> list[dt.date]:
        """The first day of every bucket that meets the period, in order (the first bucket
        may begin before `start`: a week starts on Monday, a month on the 1st)."""
        first = bucket_start(self.start, granularity)
        result = []
        day = first
        while day <= self.end:
            result.append(day)
            day = next_bucket(day, granularity)
        return result

    def label(self) -> str:
        if self.start == self.end:
            return format_day(self.start)
        return f"{format_day(self.start)} to {format_day(self.end)}"


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The aware instant at which `day` begins in `tz` (fold 0: a DST gap at midnight moves
    it to the first instant that exists, as zoneinfo resolves it)."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=tz)


def bucket_start(day: dt.date, granularity: Granularity) -> dt.date:
    if granularity is Granularity.WEEK:
        return day - dt.timedelta(days=day.weekday())
    if granularity is Granularity.MONTH:
        return day.replace(day=1)
    if granularity is Granularity.YEAR:
        return day.replace(month=1, day=1)
    return day


def next_bucket(day: dt.date, granularity: Granularity) -> dt.date:
    if granularity is Granularity.WEEK:
        return day + dt.timedelta(days=7)
    if granularity is Granularity.MONTH:
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    if granularity is Granularity.YEAR:
        return day.replace(year=day.year + 1, month=1, day=1)
    return day + dt.timedelta(days=1)


def bucket_label(day: dt.date, granularity: Granularity) -> str:
    if granularity is Granularity.WEEK:
        return f"Week of {format_day(day)}"
    if granularity is Granularity.MONTH:
        return day.strftime("%b %Y")
    if granularity is Granularity.YEAR:
        return str(day.year)
    return format_day(day)


def format_day(day: dt.date) -> str:
    return f"{day.day} {day.strftime('%b %Y')}"


def preset_period(preset: Preset, today: dt.date, tz: ZoneInfo) -> Period:
    """The period a preset names, ending today (the merchant's today) or, for last month,
    on its last day. "This month" runs from the 1st to today."""
    lengths = {Preset.LAST_7: 7, Preset.LAST_30: 30, Preset.LAST_90: 90, Preset.LAST_365: 365}
    if preset in lengths:
        start = today - dt.timedelta(days=lengths[preset] - 1)
        return Period(start=start, end=today, tz=tz, preset=preset)
    if preset is Preset.THIS_MONTH:
        return Period(start=today.replace(day=1), end=today, tz=tz, preset=preset)
    if preset is Preset.LAST_MONTH:
        end = today.replace(day=1) - dt.timedelta(days=1)
        return Period(start=end.replace(day=1), end=end, tz=tz, preset=preset)
    raise PeriodError(f"{preset} is not a preset with fixed dates.")


def parse_date(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise PeriodError(DATE_ERROR.format(field=field, value=value)) from None


def period_from_params(
    params: Mapping[str, str], *, today: dt.date, tz: ZoneInfo, default: Preset = Preset.LAST_30
) -> Period:
    """The period of a request's query: `period` (a preset; `custom` with `from` and `to`,
    merchant-local dates, both included). Dates without a preset mean custom. Raises
    `PeriodError` naming the parameter at fault."""
    raw = params.get("period", "").strip()
    has_dates = bool(params.get("from", "").strip() or params.get("to", "").strip())
    if not raw:
        raw = Preset.CUSTOM.value if has_dates else default.value
    try:
        preset = Preset(raw)
    except ValueError:
        choices = ", ".join(p.value for p in Preset)
        raise PeriodError(PRESET_ERROR.format(value=raw, choices=choices)) from None
    if preset is not Preset.CUSTOM:
        return preset_period(preset, today, tz)
    start_text, end_text = params.get("from", "").strip(), params.get("to", "").strip()
    if not start_text and not end_text:
        raise PeriodError("Custom dates need a start (from) and an end (to).")
    start = parse_date(start_text, "from") if start_text else None
    end = parse_date(end_text, "to") if end_text else today
    return Period(start=start or end, end=end, tz=tz, preset=Preset.CUSTOM)


def granularity_from(value: str | None, period: Period) -> Granularity:
    """The interval a request asks for (`auto` or empty: the period's own)."""
    if not value or value == "auto":
        return period.auto_granularity()
    try:
        return Granularity(value)
    except ValueError:
        choices = "auto, " + ", ".join(g.value for g in Granularity)
        raise PeriodError(GRANULARITY_ERROR.format(value=value, choices=choices)) from None
