"""Reads of the scores for the portal: the overview, the transitions matrix, a customer's
history. Every query starts from one merchant's rows (the caller's current merchant)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet

from customers.models import Customer, CustomerMetrics, Merchant, ScoreChange
from customers.scores.definitions import (
    STAGE_DISPLAY_ORDER,
    STAGE_LABELS,
    rfm_fm,
)

#: The blank "from" or "to" of a lifecycle change: no stage (no order yet).
NO_STAGE = ""


def stage_label(name: str | None) -> str:
    return STAGE_LABELS.get(name or "", "No order yet")


def stage_counts(*, merchant: Merchant) -> dict[str, int]:
    """Customers per lifecycle stage now (the stage follows purchases between
    computations), "" for customers without an order."""
    rows = (
        CustomerMetrics.objects.filter(merchant=merchant)
        .values_list("lifecycle_stage")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {name or NO_STAGE: n for name, n in rows}
    return {name: counts.get(name, 0) for name in (*STAGE_DISPLAY_ORDER, NO_STAGE)}


@dataclass(frozen=True)
class GridCell:
    recency: int
    fm: int
    group: str
    customers: int


def rfm_grid_counts(*, merchant: Merchant, grid: list[list[str]]) -> list[list[GridCell]]:
    """The RFM grid (rows R = 5..1, columns FM = 1..5) with each cell's customers."""
    counts: dict[tuple[int, int], int] = {}
    rows = (
        CustomerMetrics.objects.filter(merchant=merchant, rfm_recency__isnull=False)
        .values_list("rfm_recency", "rfm_frequency", "rfm_monetary")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for recency, frequency, monetary, n in rows:
        key = (recency, rfm_fm(frequency, monetary))
        counts[key] = counts.get(key, 0) + n
    return [
        [
            GridCell(5 - row, column + 1, grid[row][column], counts.get((5 - row, column + 1), 0))
            for column in range(5)
        ]
        for row in range(5)
    ]


def _counts_by(merchant: Merchant, column: str) -> dict[str, int]:
    """The merchant's customers per value of a metrics column."""
    rows = (
        CustomerMetrics.objects.filter(merchant=merchant)
        .values_list(column)
        .annotate(n=Count("pk"))
        .order_by()
    )
    return dict(rows)


def group_counts(*, merchant: Merchant) -> dict[str, int]:
    """Customers per RFM group (Prospects for those without scores)."""
    return _counts_by(merchant, "rfm_group")


def smart_segment_counts(*, merchant: Merchant) -> dict[str, int]:
    """Customers per smart segment (every customer has one)."""
    return _counts_by(merchant, "smart_segment")


# -- transitions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A merchant-local week (Monday to Sunday) or calendar month."""

    kind: str  # "week" or "month"
    start: dt.date

    @classmethod
    def containing(cls, kind: str, day: dt.date) -> Period:
        if kind == "month":
            return cls("month", day.replace(day=1))
        return cls("week", day - dt.timedelta(days=day.weekday()))

    @property
    def end(self) -> dt.date:
        """The first day after the period."""
        if self.kind == "month":
            return (self.start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return self.start + dt.timedelta(days=7)

    @property
    def previous(self) -> Period:
        return Period.containing(self.kind, self.start - dt.timedelta(days=1))

    @property
    def next(self) -> Period:
        return Period(self.kind, self.end)

    @property
    def label(self) -> str:
        if self.kind == "month":
            return self.start.strftime("%B %Y")
        last = self.end - dt.timedelta(days=1)
        return f"week of {self.start:%d %b} to {last:%d %b %Y}"

    def bounds(self, merchant: Merchant) -> tuple[dt.datetime, dt.datetime]:
        """The period as instants: local midnight of its first day and of the day after."""
        tz = merchant.tzinfo
        return (
            dt.datetime.combine(self.start, dt.time(0), tzinfo=tz).astimezone(dt.UTC),
            dt.datetime.combine(self.end, dt.time(0), tzinfo=tz).astimezone(dt.UTC),
        )


def _moves_sql() -> str:
    """Per customer with changes of a kind in the period: the value before the first and
    after the last, in time order (a customer who moved and came back did not move)."""
    table = ScoreChange._meta.db_table
    return f"""
        WITH changes AS (
            SELECT customer_id, from_value, to_value,
                   ROW_NUMBER() OVER (
                       PARTITION BY customer_id ORDER BY changed_at, id) AS first_rank,
                   ROW_NUMBER() OVER (
                       PARTITION BY customer_id ORDER BY changed_at DESC, id DESC) AS last_rank
            FROM {table}
            WHERE merchant_id = %s AND kind = %s AND changed_at >= %s AND changed_at < %s
        )
        SELECT f.customer_id, f.from_value AS from_value, l.to_value AS to_value
        FROM changes f JOIN changes l ON l.customer_id = f.customer_id AND l.last_rank = 1
        WHERE f.first_rank = 1 AND f.from_value <> l.to_value
    """


def _params(merchant: Merchant, period: Period, kind: str) -> list[Any]:
    start, end = period.bounds(merchant)
    ops = connection.ops
    return [
        merchant.pk,
        kind,
        ops.adapt_datetimefield_value(start),
        ops.adapt_datetimefield_value(end),
    ]


def transition_matrix(
    *, merchant: Merchant, period: Period, kind: str = "lifecycle"
) -> dict[tuple[str, str], int]:
    """How many customers moved from each value to each other over `period`: the value
    before their first change in it and after their last."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT from_value, to_value, COUNT(*) FROM ({_moves_sql()}) moves "
            "GROUP BY from_value, to_value",
            _params(merchant, period, kind),
        )
        return {(row[0], row[1]): row[2] for row in cursor.fetchall()}


def transition_customers(
    *, merchant: Merchant, period: Period, from_value: str, to_value: str, kind: str = "lifecycle"
) -> QuerySet[Customer]:
    """The merchant's customers who moved from `from_value` to `to_value` over `period`."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT customer_id FROM ({_moves_sql()}) moves "
            "WHERE from_value = %s AND to_value = %s",
            [*_params(merchant, period, kind), from_value, to_value],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return (
        Customer.objects.filter(merchant=merchant, pk__in=ids)
        .select_related("tier", "metrics")
        .order_by("external_id", "pk")
    )


def customer_score_history(*, customer: Customer, limit: int = 50) -> list[ScoreChange]:
    """The customer's stage and tier changes, newest first."""
    return list(
        ScoreChange.objects.filter(merchant_id=customer.merchant_id, customer=customer).order_by(
            "-changed_at", "-pk"
        )[:limit]
    )
