"""Report periods (`analytics.periods`): presets, the previous period, the automatic
interval, buckets, and reading a period from a request's query."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from analytics.periods import (
    Granularity,
    Period,
    PeriodError,
    Preset,
    bucket_label,
    granularity_from,
    period_from_params,
    preset_period,
)

TORONTO = ZoneInfo("America/Toronto")
UTC = dt.UTC
#: A Sunday in March, away from a month end and a DST change.
TODAY = dt.date(2026, 3, 15)


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def period(start: str, end: str) -> Period:
    return Period(start=day(start), end=day(end), tz=TORONTO)


def dates(p: Period) -> tuple[str, str]:
    return p.start.isoformat(), p.end.isoformat()


# --- Presets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (Preset.LAST_7, ("2026-03-09", "2026-03-15")),
        (Preset.LAST_30, ("2026-02-14", "2026-03-15")),
        # 15 days back to 28 Feb, 28 more to 31 Jan, 31 more to 31 Dec: 74; 15 more: 16 Dec
        (Preset.LAST_90, ("2025-12-16", "2026-03-15")),
        (Preset.LAST_365, ("2025-03-16", "2026-03-15")),
        (Preset.THIS_MONTH, ("2026-03-01", "2026-03-15")),
        (Preset.LAST_MONTH, ("2026-02-01", "2026-02-28")),
    ],
)
def test_a_preset_ends_today_or_on_the_last_day_of_last_month(preset, expected):
    result = preset_period(preset, TODAY, TORONTO)

    assert dates(result) == expected
    assert result.preset is preset
    assert result.tz is TORONTO


def test_the_day_counts_of_the_rolling_presets():
    assert [preset_period(p, TODAY, TORONTO).days for p in Preset if p.value.endswith("d")] == [
        7,
        30,
        90,
        365,
    ]


def test_last_month_in_january_is_december_of_the_year_before():
    assert dates(preset_period(Preset.LAST_MONTH, day("2026-01-10"), TORONTO)) == (
        "2025-12-01",
        "2025-12-31",
    )


def test_this_month_on_the_first_is_one_day():
    result = preset_period(Preset.THIS_MONTH, day("2026-03-01"), TORONTO)
    assert dates(result) == ("2026-03-01", "2026-03-01")
    assert result.days == 1


def test_custom_is_not_a_preset_with_dates():
    with pytest.raises(PeriodError, match="custom is not a preset with fixed dates"):
        preset_period(Preset.CUSTOM, TODAY, TORONTO)


def test_every_preset_has_a_label():
    assert Preset.LAST_7.label == "Last 7 days"
    assert Preset.LAST_MONTH.label == "Last month"
    assert Preset.CUSTOM.label == "Custom dates"


# --- The period itself ---------------------------------------------------------------------


def test_the_previous_period_has_the_same_length_and_ends_the_day_before():
    june = period("2026-06-01", "2026-06-30")

    previous = june.previous()

    assert dates(previous) == ("2026-05-02", "2026-05-31")
    assert previous.days == june.days == 30
    assert previous.tz is TORONTO


def test_the_previous_period_of_one_day_is_the_day_before():
    assert dates(period("2026-03-01", "2026-03-01").previous()) == ("2026-02-28", "2026-02-28")


def test_the_instants_are_local_midnights_across_a_dst_change():
    # given two weeks over the end of daylight saving time in Toronto (1 November 2026)
    fortnight = period("2026-10-25", "2026-11-07")

    # then it starts at midnight EDT (UTC-4) and ends at midnight EST (UTC-5): 14 days and
    # one hour of instants, never 14 x 24 hours from the start (TRICKY: Python subtracts
    # two datetimes of the same zone by their wall clocks, hence the UTC conversion)
    assert fortnight.since == dt.datetime(2026, 10, 25, 4, 0, tzinfo=UTC)
    assert fortnight.until == dt.datetime(2026, 11, 8, 5, 0, tzinfo=UTC)
    elapsed = fortnight.until.astimezone(UTC) - fortnight.since.astimezone(UTC)
    assert elapsed == dt.timedelta(days=14, hours=1)
    assert fortnight.days == 14


def test_the_end_before_the_start_is_refused():
    with pytest.raises(PeriodError) as error:
        period("2026-06-30", "2026-06-01")
    assert str(error.value) == "The period ends (2026-06-01) before it starts (2026-06-30)."


def test_ten_years_is_the_longest_period():
    # 2016-01-01 + 3,653 days (three leap days) is 2026-01-01; 6 more days: 7 January
    assert period("2016-01-01", "2026-01-07").days == 3660
    with pytest.raises(PeriodError) as error:
        period("2016-01-01", "2026-01-08")
    assert str(error.value) == "The period is 3,661 days long; a report covers at most 3,660 days."


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (1, Granularity.DAY),
        (31, Granularity.DAY),
        (32, Granularity.WEEK),
        (92, Granularity.WEEK),
        (93, Granularity.MONTH),
        (366, Granularity.MONTH),
        (367, Granularity.YEAR),
    ],
)
def test_auto_granularity_thresholds(days, expected):
    start = day("2026-01-01")
    span = Period(start=start, end=start + dt.timedelta(days=days - 1), tz=TORONTO)

    assert span.days == days
    assert span.auto_granularity() is expected


# --- Buckets -------------------------------------------------------------------------------


def test_day_buckets_are_the_days():
    assert period("2026-02-27", "2026-03-02").buckets(Granularity.DAY) == [
        day("2026-02-27"),
        day("2026-02-28"),
        day("2026-03-01"),
        day("2026-03-02"),
    ]


def test_week_buckets_start_on_monday_even_before_the_period():
    # Wednesday 3 June to Sunday 21 June 2026: the weeks of Monday 1, 8 and 15 June
    assert period("2026-06-03", "2026-06-21").buckets(Granularity.WEEK) == [
        day("2026-06-01"),
        day("2026-06-08"),
        day("2026-06-15"),
    ]


def test_a_period_ending_on_a_monday_has_a_bucket_for_that_week():
    assert period("2026-06-07", "2026-06-08").buckets(Granularity.WEEK) == [
        day("2026-06-01"),
        day("2026-06-08"),
    ]


def test_month_buckets_start_on_the_first_across_a_year_end():
    assert period("2025-11-30", "2026-02-01").buckets(Granularity.MONTH) == [
        day("2025-11-01"),
        day("2025-12-01"),
        day("2026-01-01"),
        day("2026-02-01"),
    ]


def test_month_buckets_from_the_31st():
    # the 31st of January is the case the day arithmetic of "next month" gets wrong
    assert period("2026-01-31", "2026-03-01").buckets(Granularity.MONTH) == [
        day("2026-01-01"),
        day("2026-02-01"),
        day("2026-03-01"),
    ]


def test_year_buckets():
    assert period("2025-12-31", "2026-01-01").buckets(Granularity.YEAR) == [
        day("2025-01-01"),
        day("2026-01-01"),
    ]


def test_bucket_and_period_labels():
    june = day("2026-06-01")
    assert bucket_label(june, Granularity.DAY) == "1 Jun 2026"
    assert bucket_label(june, Granularity.WEEK) == "Week of 1 Jun 2026"
    assert bucket_label(june, Granularity.MONTH) == "Jun 2026"
    assert bucket_label(june, Granularity.YEAR) == "2026"
    assert period("2026-06-01", "2026-06-30").label() == "1 Jun 2026 to 30 Jun 2026"
    assert period("2026-06-01", "2026-06-01").label() == "1 Jun 2026"


# --- Reading a request's query -------------------------------------------------------------


def read(**params: str) -> Period:
    return period_from_params(params, today=TODAY, tz=TORONTO)


def test_no_parameters_mean_the_last_30_days():
    result = read()
    assert dates(result) == ("2026-02-14", "2026-03-15")
    assert result.preset is Preset.LAST_30


def test_the_default_preset_can_be_chosen():
    result = period_from_params({}, today=TODAY, tz=TORONTO, default=Preset.LAST_7)
    assert dates(result) == ("2026-03-09", "2026-03-15")


def test_a_preset_wins_over_dates():
    result = read(period="7d", **{"from": "2020-01-01", "to": "2020-01-31"})
    assert dates(result) == ("2026-03-09", "2026-03-15")
    assert result.preset is Preset.LAST_7


def test_custom_dates_both_included():
    result = read(period="custom", **{"from": "2026-01-05", "to": " 2026-01-11 "})
    assert dates(result) == ("2026-01-05", "2026-01-11")
    assert result.preset is Preset.CUSTOM
    assert result.days == 7


def test_dates_without_a_preset_mean_custom():
    assert read(**{"from": "2026-03-01", "to": "2026-03-04"}).preset is Preset.CUSTOM


def test_a_start_alone_runs_to_today_and_an_end_alone_is_one_day():
    assert dates(read(**{"from": "2026-03-10"})) == ("2026-03-10", "2026-03-15")
    assert dates(read(to="2026-02-02")) == ("2026-02-02", "2026-02-02")


def test_custom_without_dates_is_refused():
    with pytest.raises(PeriodError) as error:
        read(period="custom")
    assert str(error.value) == "Custom dates need a start (from) and an end (to)."


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"from": "2026-13-01", "to": "2026-03-01"},
            "from: '2026-13-01' is not a date (use YYYY-MM-DD).",
        ),
        (
            {"from": "2026-03-01", "to": "tomorrow"},
            "to: 'tomorrow' is not a date (use YYYY-MM-DD).",
        ),
        (
            {"from": "2026-03-10", "to": "2026-03-01"},
            "The period ends (2026-03-01) before it starts (2026-03-10).",
        ),
        (
            {"from": "2026-03-20"},  # after today, so after the end
            "The period ends (2026-03-15) before it starts (2026-03-20).",
        ),
        (
            {"from": "2000-01-01", "to": "2026-03-01"},
            # 26 years from 1 Jan 2000 (seven leap days) to 1 Jan 2026: 9,497 days; + 59
            # (January and February) + 1 (both ends): 9,557
            "The period is 9,557 days long; a report covers at most 3,660 days.",
        ),
        (
            {"period": "14d"},
            "Unknown period '14d': use one of 7d, 30d, 90d, 365d, this_month, last_month, custom.",
        ),
    ],
)
def test_a_bad_query_names_the_parameter_and_the_reason(params, message):
    with pytest.raises(PeriodError) as error:
        period_from_params(params, today=TODAY, tz=TORONTO)
    assert str(error.value) == message


def test_a_period_error_is_a_value_error():
    assert issubclass(PeriodError, ValueError)


# --- Interval ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "auto"])
def test_auto_or_no_interval_is_the_periods_own(value):
    assert granularity_from(value, period("2026-01-01", "2026-03-31")) is Granularity.WEEK
    assert granularity_from(value, period("2026-01-01", "2026-01-31")) is Granularity.DAY


def test_an_interval_asked_for_wins_over_the_period():
    assert granularity_from("month", period("2026-01-01", "2026-01-07")) is Granularity.MONTH


def test_an_unknown_interval_is_refused():
    with pytest.raises(PeriodError) as error:
        granularity_from("hour", period("2026-01-01", "2026-01-07"))
    assert str(error.value) == "Unknown interval 'hour': use one of auto, day, week, month, year."
