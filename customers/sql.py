"""Raw SQL that runs on both databases: the metrics upsert's and the score service's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any

from django.db import connection


def adapt(params: Iterable[Any]) -> list[Any]:
    """Parameters as the backend stores them: SQLite keeps instants as naive UTC text, so
    an aware datetime must be converted the way Django converts it before comparing, and
    its money columns are floating point."""
    ops = connection.ops
    return [
        ops.adapt_datetimefield_value(p)
        if isinstance(p, dt.datetime)
        else ops.adapt_datefield_value(p)
        if isinstance(p, dt.date)
        # TRICKY: SQLite binds a Decimal as text, and text compares greater than any number.
        else float(p)
        if isinstance(p, Decimal) and connection.vendor == "sqlite"
        else p
        for p in params
    ]


def any_of(
    column: str, values: Collection[Any], *, vendor: str | None = None
) -> tuple[str, list[Any]]:
    """`column` is one of `values`: one array parameter on PostgreSQL (`= ANY(%s)`), an
    `IN` list on SQLite; none matches nothing. `vendor`: the database's, when not the
    default connection's (`customers.lookups` writes querysets' `__any` with this)."""
    if (vendor or connection.vendor) == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    if not values:
        return "1 = 0", []
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def distinct() -> str:
    """NULL-safe inequality."""
    return "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"


def local_date(instant: str, time_zone: str) -> str:
    """The merchant-local date of the instant column `instant` in the time zone named by
    the column `time_zone` (a date on PostgreSQL, ISO text on SQLite). For a time zone
    known in Python, `connection.ops.datetime_cast_date_sql` does the same."""
    if connection.vendor == "postgresql":
        return f"({instant} AT TIME ZONE {time_zone})::date"
    return f"django_datetime_cast_date({instant}, {time_zone}, '{connection.timezone_name}')"


def day_diff(later: str, earlier: str) -> str:
    """Whole days from the date expression `earlier` to `later` (merchant-local dates:
    `date` on PostgreSQL, ISO text on SQLite)."""
    if connection.vendor == "postgresql":
        return f"({later} - {earlier})"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def date_param() -> str:
    """A placeholder for a date parameter that `day_diff` can subtract from."""
    return "CAST(%s AS date)" if connection.vendor == "postgresql" else "%s"


def month_start(day: str) -> str:
    """The first day of the month of the date expression `day` (as `local_date` gives it)."""
    if connection.vendor == "postgresql":
        return f"CAST(date_trunc('month', {day}) AS date)"
    return f"strftime('%%Y-%%m-01', {day})"  # (%% : the statements take parameters)


def cents(amount: str) -> str:
    """A money column (two decimals) as an exact integer of cents."""
    return f"CAST(ROUND({amount} * 100) AS BIGINT)"


def quarter_start(day: str) -> str:
    """The first day of the calendar quarter of the date expression `day`."""
    if connection.vendor == "postgresql":
        return f"CAST(date_trunc('quarter', {day}) AS date)"
    back = f"((CAST(strftime('%%m', {day}) AS INTEGER) - 1) %% 3)"
    return f"date({day}, 'start of month', '-' || {back} || ' months')"
