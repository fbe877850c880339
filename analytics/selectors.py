"""The reports' reads: key figures, segment analysis, revenue by branch, segment growth and
overlap. Read-only over the other apps; `docs/reports.md` gives every formula.

Scoping: every query starts from one merchant's rows (`Scope.merchant`, the caller's current
merchant); segments passed in must be that merchant's (callers look them up among the
merchant's own, as the views and the `report` command do), and every sales figure is
limited to `Scope.branch_ids` when the user's membership is limited to branches
(transactions without a branch are then out). Group
sizes, segment sizes and overlaps are memberships, which stay merchant-wide.

Revenue is order totals minus refund totals, by the instant of the transaction, in the
period's merchant-local dates (`analytics.periods`). "Current members" means the
memberships and scores as they are now, as the segment pages show them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, DateField, QuerySet
from django.db.models.functions import Trunc

from analytics.periods import Granularity, Period, bucket_label, local_midnight, next_bucket
from customers.models import (
    Branch,
    Customer,
    CustomerMetrics,
    CustomerSales,
    Merchant,
    Redemption,
    SalesSpan,
)
from customers.scores.definitions import RFM_GROUPS, STAGE_DISPLAY_ORDER, STAGE_LABELS
from customers.scores.smart import SMART_SEGMENTS
from customers.sql import adapt, month_start
from segments.models import MembershipEvent, Segment, SegmentMembership, SegmentSizeSnapshot

#: PostgreSQL memory per sort or hash of a report statement (the server default is 4 MB).
REPORT_WORK_MEM = "64MB"
#: ...and its cost of a random page read (the server default, 4, is a spinning disk's).
REPORT_RANDOM_PAGE_COST = 1.1
CENT = Decimal("0.01")
ZERO = Decimal("0")
NO_MONEY = Decimal("0.00")
#: The overlap report compares 2 to 12 segments.
OVERLAP_MIN, OVERLAP_MAX = 2, 12
GROUP_BY_CHOICES = ("lifecycle_stage", "rfm_group", "smart_segment", "segment")
GROUP_BY_LABELS = {
    "lifecycle_stage": "Lifecycle stage",
    "rfm_group": "RFM group",
    "smart_segment": "Smart segment",
    "segment": "Segments",
}
#: The group of customers a score has not placed yet (no order, or never computed).
UNPLACED = ""
UNPLACED_LABELS = {
    "lifecycle_stage": "No order yet",
    "rfm_group": "Not scored",
    "smart_segment": "No prediction yet",
}
GROUP_BY_ERROR = "Unknown grouping {value!r}: use one of {choices}."
NO_SEGMENTS_ERROR = "Pick at least one segment to group by."
OVERLAP_COUNT_ERROR = "Pick {low} to {high} segments to compare (picked {n})."


class ReportError(ValueError):
    """A report asked for with parameters it cannot use; the message says which and why."""


@dataclass(frozen=True)
class Scope:
    """Whose data a report reads: one merchant, and the branches a limited user may see
    (None: every branch, and sales without a branch)."""

    merchant: Merchant
    branch_ids: tuple[int, ...] | None = None

    @property
    def limited(self) -> bool:
        return self.branch_ids is not None

    def branch_names(self) -> list[str]:
        if self.branch_ids is None:
            return []
        return list(
            Branch.objects.filter(merchant=self.merchant, pk__in=self.branch_ids).values_list(
                "name", flat=True
            )
        )


def money(value: Any) -> Decimal:
    """A sum as the database returns it (Decimal on PostgreSQL, float on SQLite) as Decimal
    to the cent; None (no rows) is zero."""
    if value is None:
        return NO_MONEY
    # + 0 turns SQLite's float -0.0 (refunds that cancel the orders) into 0.00.
    return Decimal(str(value)).quantize(CENT) + 0


def ratio(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
    """part / whole to six decimals, None when the whole is zero."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.000001"))


def change(current: Decimal | int | None, previous: Decimal | int | None) -> Decimal | None:
    """The relative change from `previous` to `current` (0.25 = +25%); None without a base."""
    if current is None or not previous:
        return None
    return ((Decimal(current) - Decimal(previous)) / abs(Decimal(previous))).quantize(
        Decimal("0.000001")
    )


def average(total: Decimal, count: int) -> Decimal | None:
    return (total / count).quantize(CENT) if count else None


# --- Shared SQL pieces ---------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A run of dates read at one span of the sales summary: month rows (`m`) for whole
    months, day rows (`d`) for the rest; `first` and `last` bound the rows' `starts_on`."""

    span: str
    first: dt.date
    last: dt.date


def pieces(start: dt.date, end: dt.date, *, quarters: bool = False) -> list[Piece]:
    """The dates `start` to `end` (both included) as few summary rows as possible: the whole
    months inside them from month rows, the days before and after from day rows; with
    `quarters`, the whole calendar quarters first from quarter rows (not for monthly
    buckets, which a quarter row cannot split)."""
    if quarters:
        first_quarter = _quarter_start(start)
        if first_quarter < start:
            first_quarter = _quarter_start(first_quarter + dt.timedelta(days=92))
        after_quarters = _quarter_start(end + dt.timedelta(days=1))
        if first_quarter < after_quarters:
            before = (
                pieces(start, first_quarter - dt.timedelta(days=1)) if start < first_quarter else []
            )
            after = pieces(after_quarters, end) if after_quarters <= end else []
            middle = Piece(SalesSpan.QUARTER, first_quarter, after_quarters - dt.timedelta(days=1))
            return [*before, middle, *after]
    first_full = start if start.day == 1 else next_bucket(start.replace(day=1), Granularity.MONTH)
    after_full = (end + dt.timedelta(days=1)).replace(day=1)
    if first_full >= after_full:
        return [Piece(SalesSpan.DAY, start, end)]
    result = []
    if start < first_full:
        result.append(Piece(SalesSpan.DAY, start, first_full - dt.timedelta(days=1)))
    result.append(Piece(SalesSpan.MONTH, first_full, after_full - dt.timedelta(days=1)))
    if after_full <= end:
        result.append(Piece(SalesSpan.DAY, after_full, end))
    return result


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _sales_rows(
    scope: Scope,
    periods: Sequence[tuple[Period, int]],
    *,
    segment: Segment | None = None,
    days_only: bool = False,
    quarters: bool = True,
) -> tuple[str, list[Any]]:
    """A subquery of the scope's summary rows over the periods, each row tagged with its
    period's number (`tag`): customer_id, branch_id, starts_on, span, orders, gross_cents,
    refund_cents. `days_only`: day rows throughout (daily or weekly buckets); `quarters`:
    whole quarters from quarter rows (not for monthly buckets)."""
    sales = CustomerSales._meta.db_table
    parts, params = [], []
    branch_sql = ""
    branch_params: list[Any] = []
    if scope.branch_ids is not None:
        if not scope.branch_ids:
            branch_sql = " AND 1 = 0"
        else:
            branch_sql = f" AND branch_id IN ({', '.join(['%s'] * len(scope.branch_ids))})"
            branch_params = list(scope.branch_ids)
    segment_sql = ""
    if segment is not None:
        segment_sql = f" AND customer_id IN ({_members_sql([segment.pk])})"
    for period, tag in periods:
        runs = (
            [Piece(SalesSpan.DAY, period.start, period.end)]
            if days_only
            else pieces(period.start, period.end, quarters=quarters)
        )
        for piece in runs:
            parts.append(
                f"SELECT customer_id, branch_id, starts_on, span, orders, gross_cents, "
                f"refund_cents, {int(tag)} AS tag FROM {sales} "
                f"WHERE merchant_id = %s AND span = %s AND starts_on >= %s AND starts_on <= %s"
                f"{branch_sql}{segment_sql}"
            )
            params += [scope.merchant.pk, piece.span, piece.first, piece.last, *branch_params]
            if segment is not None:
                params.append(segment.pk)
    return " UNION ALL ".join(parts), params


def _members_sql(segment_ids: Sequence[int]) -> str:
    members = SegmentMembership._meta.db_table
    return (
        f"SELECT customer_id FROM {members} "
        f"WHERE segment_id IN ({', '.join(['%s'] * len(segment_ids))})"
    )


def _fetch(sql: str, params: Iterable[Any], *, memory: bool = True) -> list[tuple[Any, ...]]:
    """The rows of a report statement. `memory`: on PostgreSQL, with REPORT_WORK_MEM for
    its sorts and hashes (a million customers' hash tables stay in memory instead of
    spilling to disk); without, the server's default, which keeps streaming plans."""
    if connection.vendor != "postgresql" or not memory:
        with connection.cursor() as cursor:
            cursor.execute(sql, adapt(params))
            return list(cursor.fetchall())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        # Solid-state storage: random reads cost little more than sequential ones, so an
        # index-only scan of a covering index beats reading the whole wide metrics table.
        cursor.execute(f"SET LOCAL random_page_cost = {REPORT_RANDOM_PAGE_COST}")
        cursor.execute(sql, list(params))
        return list(cursor.fetchall())


def cents_money(value: Any) -> Decimal:
    """A sum of cents as money (None: no rows, zero)."""
    return (Decimal(int(value or 0)) / 100).quantize(CENT)


# --- Key figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFigures:
    """One period's figures for all customers or a segment's current members."""

    revenue: Decimal
    gross: Decimal
    refunds: Decimal
    orders: int
    active_customers: int
    new_customers: int
    redemptions: int

    @property
    def avg_order_value(self) -> Decimal | None:
        return average(self.gross, self.orders)


KEY_FIGURES: tuple[tuple[str, str, str], ...] = (
    # (attribute, label, kind: money | count)
    ("revenue", "Revenue", "money"),
    ("orders", "Orders", "count"),
    ("active_customers", "Active customers", "count"),
    ("new_customers", "New customers", "count"),
    ("avg_order_value", "Average order value", "money"),
    ("redemptions", "Redemptions", "count"),
)


def key_figures(scope: Scope, period: Period, *, segment: Segment | None = None) -> KeyFigures:
    """Revenue, orders, active customers (with an order in the period), new customers (whose
    first order ever falls in the period and who ordered in it within the scope), average
    order value (order totals / orders) and redemptions (rewards redeemed in the period;
    they have no branch, so a branch limit does not apply to them)."""
    return key_figures_of(scope, [period], segment=segment)[0]


def key_figures_of(
    scope: Scope, periods: Sequence[Period], *, segment: Segment | None = None
) -> list[KeyFigures]:
    """`key_figures` of several periods (a period and the previous one) with one pass over
    the sales summary."""
    rows, params = _sales_rows(scope, [(p, i) for i, p in enumerate(periods)], segment=segment)
    sums = ", ".join(
        f"SUM(CASE WHEN tag = {i} THEN gross_cents ELSE 0 END), "
        f"SUM(CASE WHEN tag = {i} THEN refund_cents ELSE 0 END), "
        f"SUM(CASE WHEN tag = {i} THEN orders ELSE 0 END), "
        f"COUNT(DISTINCT CASE WHEN tag = {i} AND orders > 0 THEN customer_id END)"
        for i in range(len(periods))
    )
    row = _fetch(f"SELECT {sums} FROM ({rows}) s", params)[0]
    result = []
    for i, period in enumerate(periods):
        gross_cents, refund_cents, orders, active = row[4 * i : 4 * i + 4]
        redemptions = Redemption.objects.filter(
            merchant=scope.merchant, redeemed_at__gte=period.since, redeemed_at__lt=period.until
        )
        if segment is not None:
            redemptions = redemptions.filter(
                customer_id__in=SegmentMembership.objects.filter(segment=segment).values(
                    "customer_id"
                )
            )
        gross, refunds = cents_money(gross_cents), cents_money(refund_cents)
        result.append(
            KeyFigures(
                revenue=gross - refunds,
                gross=gross,
                refunds=refunds,
                orders=int(orders or 0),
                active_customers=int(active or 0),
                new_customers=_new_customers(scope, period, segment),
                redemptions=redemptions.count(),
            )
        )
    return result


def group_sizes(scope: Scope, group_by: str) -> dict[str, int]:
    """Customers per lifecycle stage, RFM group or smart segment now ("" for none), read
    from the metrics' group index."""
    source, params, _ = _group_source(scope, group_by, [])
    rows = _fetch(f"SELECT grp, COUNT(*) FROM ({source}) g GROUP BY grp", params)
    return {str(key): int(n) for key, n in rows}


def _new_customers(scope: Scope, period: Period, segment: Segment | None) -> int:
    """Customers whose first order ever falls in the period (the metrics' first purchase,
    by index), who ordered within the scope's branches, among the segment's members."""
    metrics, sales = CustomerMetrics._meta.db_table, CustomerSales._meta.db_table
    sql = (
        f"SELECT COUNT(*) FROM {metrics} m WHERE m.merchant_id = %s "
        "AND m.first_purchase_at >= %s AND m.first_purchase_at < %s"
    )
    params: list[Any] = [scope.merchant.pk, period.since, period.until]
    if scope.branch_ids is not None:
        if not scope.branch_ids:
            return 0
        sql += (
            f" AND EXISTS (SELECT 1 FROM {sales} s WHERE s.customer_id = m.customer_id "
            "AND s.span = 'd' AND s.starts_on >= %s AND s.starts_on <= %s AND s.orders > 0 "
            f"AND s.branch_id IN ({', '.join(['%s'] * len(scope.branch_ids))}))"
        )
        params += [period.start, period.end, *scope.branch_ids]
    if segment is not None:
        sql += f" AND m.customer_id IN ({_members_sql([segment.pk])})"
        params.append(segment.pk)
    return int(_fetch(sql, params)[0][0] or 0)


# --- Segment analysis ----------------------------------------------------------------------


@dataclass
class GroupRow:
    """One group of the segment analysis, in the period and the previous one."""

    key: str
    label: str
    customers: int
    revenue: Decimal
    gross: Decimal
    orders: int
    prev_revenue: Decimal
    prev_orders: int
    customers_share: Decimal | None = None
    revenue_share: Decimal | None = None
    segment: Segment | None = None

    @property
    def avg_order_value(self) -> Decimal | None:
        return average(self.gross, self.orders)

    @property
    def revenue_change(self) -> Decimal | None:
        return change(self.revenue, self.prev_revenue)


@dataclass
class Analysis:
    group_by: str
    period: Period
    previous: Period
    rows: list[GroupRow]
    customers: int  # the merchant's customers
    revenue: Decimal  # the merchant's revenue in the period (within the scope's branches)
    prev_revenue: Decimal
    orders: int
    segments: list[Segment] = field(default_factory=list)

    @property
    def revenue_change(self) -> Decimal | None:
        return change(self.revenue, self.prev_revenue)


def _group_source(
    scope: Scope, group_by: str, segments: Sequence[Segment]
) -> tuple[str, list[Any], list[tuple[str, str, Segment | None]]]:
    """The (grp, customer_id) rows of the grouping, and every group's key and label in
    display order."""
    if group_by == "segment":
        if not segments:
            raise ReportError(NO_SEGMENTS_ERROR)
        ids = [s.pk for s in segments]
        members = SegmentMembership._meta.db_table
        sql = (
            f"SELECT CAST(segment_id AS VARCHAR(20)) AS grp, customer_id FROM {members} "
            f"WHERE segment_id IN ({', '.join(['%s'] * len(ids))})"
        )
        return sql, ids, [(str(s.pk), s.name, s) for s in segments]
    if group_by not in GROUP_BY_CHOICES:
        raise ReportError(
            GROUP_BY_ERROR.format(value=group_by, choices=", ".join(GROUP_BY_CHOICES))
        )
    labels: Sequence[tuple[str, str]] = {
        "lifecycle_stage": [(name, STAGE_LABELS[name]) for name in STAGE_DISPLAY_ORDER],
        "rfm_group": RFM_GROUPS,
        "smart_segment": SMART_SEGMENTS,
    }[group_by]
    metrics = CustomerMetrics._meta.db_table
    sql = (
        f"SELECT COALESCE({group_by}, '') AS grp, customer_id FROM {metrics} WHERE merchant_id = %s"
    )
    groups: list[tuple[str, str, Segment | None]] = [(key, label, None) for key, label in labels]
    groups.append((UNPLACED, UNPLACED_LABELS[group_by], None))
    return sql, [scope.merchant.pk], groups


def segment_analysis(
    scope: Scope,
    period: Period,
    *,
    group_by: str,
    segments: Sequence[Segment] = (),
    compare: bool = True,
) -> Analysis:
    """One row per group (current members): customers, share of the merchant's customers,
    revenue, share of the merchant's revenue in the period, orders, average order value,
    and the previous period's revenue and orders (`compare`). The sales summary rows of both
    periods (tagged 1 and 0) are joined to the groups once; the group sizes are counted from
    the groups alone."""
    source, source_params, groups = _group_source(scope, group_by, segments)
    previous = period.previous()
    tagged = [(period, 1), (previous, 0)] if compare else [(period, 1)]
    rows_sql, rows_params = _sales_rows(scope, tagged)
    sums = """
        SUM(CASE WHEN s.tag = 1 THEN s.gross_cents - s.refund_cents ELSE 0 END),
        SUM(CASE WHEN s.tag = 1 THEN s.gross_cents ELSE 0 END),
        SUM(CASE WHEN s.tag = 1 THEN s.orders ELSE 0 END),
        SUM(CASE WHEN s.tag = 0 THEN s.gross_cents - s.refund_cents ELSE 0 END),
        SUM(CASE WHEN s.tag = 0 THEN s.orders ELSE 0 END)
    """
    sizes = {
        str(key): n
        for key, n in _fetch(f"SELECT grp, COUNT(*) FROM ({source}) g GROUP BY grp", source_params)
    }
    found = {
        str(r[0]): r[1:]
        for r in _fetch(
            f"""
            SELECT g.grp, {sums}
            FROM ({rows_sql}) s JOIN ({source}) g ON g.customer_id = s.customer_id
            GROUP BY g.grp
            """,
            [*rows_params, *source_params],
        )
    }
    if group_by == "segment":
        # Segments may share customers or leave some out: the merchant's total is its own sum.
        total = _fetch(f"SELECT {sums} FROM ({rows_sql}) s", rows_params)[0]
    else:
        # The scores' groups split every customer exactly once: their sums are the total.
        total = tuple(sum(int(r[i] or 0) for r in found.values()) for i in range(5))
    if group_by == "segment":
        customers = Customer.objects.filter(merchant=scope.merchant).count()
    else:
        customers = sum(int(n) for n in sizes.values())  # a metrics row per customer
    revenue = cents_money(total[0])
    rows: list[GroupRow] = []
    for key, label, segment in groups:
        size = int(sizes.get(key) or 0)
        if not size and key == UNPLACED:
            continue  # no unplaced customers: no row
        r = found.get(key) or (0, 0, 0, 0, 0)
        row = GroupRow(
            key=key,
            label=label,
            customers=size,
            revenue=cents_money(r[0]),
            gross=cents_money(r[1]),
            orders=int(r[2] or 0),
            prev_revenue=cents_money(r[3]),
            prev_orders=int(r[4] or 0),
            segment=segment,
        )
        row.customers_share = ratio(row.customers, customers)
        row.revenue_share = ratio(row.revenue, revenue)
        rows.append(row)
    return Analysis(
        group_by=group_by,
        period=period,
        previous=previous,
        rows=rows,
        customers=customers,
        revenue=revenue,
        prev_revenue=cents_money(total[3]),
        orders=int(total[2] or 0),
        segments=list(segments),
    )


# --- Revenue by branch ---------------------------------------------------------------------


@dataclass
class SalesCell:
    revenue: Decimal = NO_MONEY
    gross: Decimal = NO_MONEY
    orders: int = 0
    customers: int = 0

    @property
    def avg_order_value(self) -> Decimal | None:
        return average(self.gross, self.orders)


@dataclass
class BranchRevenue:
    """Revenue, orders, customers and average order value per branch per bucket, with the
    totals of each bucket and of each branch (customers are counted once per total)."""

    granularity: Granularity
    buckets: list[dt.date]
    branches: list[tuple[int | None, str]]
    cells: dict[tuple[dt.date, int | None], SalesCell]
    bucket_totals: dict[dt.date, SalesCell]
    branch_totals: dict[int | None, SalesCell]
    total: SalesCell

    def bucket_label(self, day: dt.date) -> str:
        return bucket_label(day, self.granularity)

    def cell(self, bucket: dt.date, branch: int | None) -> SalesCell:
        return self.cells.get((bucket, branch), SalesCell())


NO_BRANCH_LABEL = "No branch"


def revenue_by_branch(
    scope: Scope,
    period: Period,
    *,
    granularity: Granularity,
    segment: Segment | None = None,
) -> BranchRevenue:
    """Per branch and bucket (merchant-local day, week from Monday, month or year), for all
    customers or the segment's current members, with the totals per bucket, per branch and
    overall (customers counted once in each). One statement with grouping sets on
    PostgreSQL; four on SQLite, which has none."""
    days_only = granularity in (Granularity.DAY, Granularity.WEEK)
    rows_sql, params = _sales_rows(
        scope,
        [(period, 1)],
        segment=segment,
        days_only=days_only,
        quarters=granularity is Granularity.YEAR,
    )
    figures = """
        SUM(gross_cents - refund_cents), SUM(gross_cents), SUM(orders),
        COUNT(DISTINCT CASE WHEN orders > 0 THEN customer_id END)
    """
    source = f"(SELECT {_bucket_sql(granularity)} AS bucket, s.* FROM ({rows_sql}) s) x"
    results: list[tuple[Any, ...]] = []  # (by bucket?, by branch?, bucket, branch, figures...)
    if connection.vendor == "postgresql":
        for r in _fetch(
            f"""
            SELECT GROUPING(bucket) = 0, GROUPING(branch_id) = 0, bucket, branch_id, {figures}
            FROM {source}
            GROUP BY GROUPING SETS ((bucket, branch_id), (bucket), (branch_id), ())
            """,
            params,
        ):
            results.append(r)
    else:
        for by_bucket, by_branch in ((True, True), (True, False), (False, True), (False, False)):
            keys = [k for k, on in (("bucket", by_bucket), ("branch_id", by_branch)) if on]
            group = f"GROUP BY {', '.join(keys)}" if keys else ""
            select = ", ".join(k if k in keys else "NULL" for k in ("bucket", "branch_id"))
            for r in _fetch(f"SELECT {select}, {figures} FROM {source} {group}", params):
                results.append((by_bucket, by_branch, *r))
    cells: dict[tuple[dt.date, int | None], SalesCell] = {}
    bucket_totals: dict[dt.date, SalesCell] = {}
    branch_totals: dict[int | None, SalesCell] = {}
    total = SalesCell()
    for by_bucket, by_branch, bucket, branch, revenue, gross, orders, customers in results:
        cell = SalesCell(
            revenue=cents_money(revenue),
            gross=cents_money(gross),
            orders=int(orders or 0),
            customers=int(customers or 0),
        )
        day = _as_date(bucket) if by_bucket else None
        if by_bucket and by_branch:
            cells[(day, branch)] = cell  # type: ignore[index]
        elif by_bucket:
            bucket_totals[day] = cell  # type: ignore[index]
        elif by_branch:
            branch_totals[branch] = cell
        else:
            total = cell
    names = dict(Branch.objects.filter(merchant=scope.merchant).values_list("pk", "name"))
    shown: list[tuple[int | None, str]] = [
        (pk, name)
        for pk, name in sorted(names.items(), key=lambda item: item[1])
        if scope.branch_ids is None or pk in scope.branch_ids
    ]
    if None in branch_totals:
        shown.append((None, NO_BRANCH_LABEL))
    return BranchRevenue(
        granularity=granularity,
        buckets=period.buckets(granularity),
        branches=shown,
        cells=cells,
        bucket_totals=bucket_totals,
        branch_totals=branch_totals,
        total=total,
    )


def _bucket_sql(granularity: Granularity, day: str = "s.starts_on") -> str:
    """The first day of the bucket of the date column `day` (weeks from Monday)."""
    if granularity is Granularity.DAY:
        return day
    if granularity is Granularity.MONTH:
        return month_start(day)
    if connection.vendor == "postgresql":
        return f"CAST(date_trunc('{granularity.value}', {day}) AS date)"
    if granularity is Granularity.WEEK:
        # %%w: 0 for Sunday; Monday is 0 to 6 days back.
        back = f"((CAST(strftime('%%w', {day}) AS INTEGER) + 6) %% 7)"
        return f"date({day}, '-' || {back} || ' days')"
    return f"strftime('%%Y-01-01', {day})"


def _as_date(value: Any) -> dt.date:
    """A date as the backend returns it (ISO text on SQLite)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


# --- Segment growth ------------------------------------------------------------------------


@dataclass
class GrowthSeries:
    segment: Segment
    sizes: list[int | None]  # per day of the period; None: no snapshot that day


@dataclass
class WeekChanges:
    week: dt.date
    entries: dict[int, int]
    exits: dict[int, int]


@dataclass
class Growth:
    days: list[dt.date]
    series: list[GrowthSeries]
    weeks: list[WeekChanges]


def segment_growth(scope: Scope, period: Period, *, segments: Sequence[Segment]) -> Growth:
    """Each segment's size per day of the period (its daily snapshots; a day without one
    carries the last known size forward, so a missed snapshot does not draw a drop), and its
    entries and exits per week (from Monday, merchant-local)."""
    days = [period.start + dt.timedelta(days=i) for i in range(period.days)]
    ids = [s.pk for s in segments]
    snapshots: dict[int, dict[dt.date, int]] = {pk: {} for pk in ids}
    before: dict[int, int] = {}
    for segment_id, day, count in SegmentSizeSnapshot.objects.filter(
        segment_id__in=ids, day__gte=period.start, day__lte=period.end
    ).values_list("segment_id", "day", "member_count"):
        snapshots[segment_id][day] = count
    for segment_id, count in (
        SegmentSizeSnapshot.objects.filter(segment_id__in=ids, day__lt=period.start)
        .order_by("segment_id", "-day")
        .values_list("segment_id", "member_count")
    ):
        before.setdefault(segment_id, count)
    series = []
    for segment in segments:
        known = before.get(segment.pk)
        sizes: list[int | None] = []
        for day in days:
            known = snapshots[segment.pk].get(day, known)
            sizes.append(known)
        series.append(GrowthSeries(segment=segment, sizes=sizes))
    week = Trunc("occurred_at", "week", output_field=DateField(), tzinfo=period.tz)
    weeks: dict[dt.date, WeekChanges] = {
        day: WeekChanges(week=day, entries={}, exits={}) for day in period.buckets(Granularity.WEEK)
    }
    rows = (
        MembershipEvent.objects.filter(
            segment_id__in=ids, occurred_at__gte=period.since, occurred_at__lt=period.until
        )
        .annotate(week=week)
        .values_list("week", "segment_id", "kind")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for day, segment_id, kind, n in rows:
        bucket = weeks.setdefault(day, WeekChanges(week=day, entries={}, exits={}))
        (bucket.entries if kind == "entry" else bucket.exits)[segment_id] = n
    return Growth(days=days, series=series, weeks=[weeks[k] for k in sorted(weeks)])


def week_changes(
    scope: Scope, segment: Segment, *, week: dt.date, kind: str, tz: Any
) -> QuerySet[MembershipEvent]:
    """The entries or exits of a segment in the merchant-local week starting `week`."""
    return (
        MembershipEvent.objects.filter(
            segment=segment,
            kind=kind,
            occurred_at__gte=local_midnight(week, tz),
            occurred_at__lt=local_midnight(week + dt.timedelta(days=7), tz),
        )
        .select_related("customer")
        .order_by("-occurred_at", "-pk")
    )


# --- Overlap -------------------------------------------------------------------------------


@dataclass
class Overlap:
    """Pairwise shared members of 2 to 12 segments, from the count of customers in each
    combination of them (`regions`: bitmask of the segments' positions -> customers)."""

    segments: list[Segment]
    regions: dict[int, int]

    def size(self, i: int) -> int:
        return sum(n for mask, n in self.regions.items() if mask & (1 << i))

    def shared(self, i: int, j: int) -> int:
        both = (1 << i) | (1 << j)
        return sum(n for mask, n in self.regions.items() if mask & both == both)

    def matrix(self) -> list[list[tuple[int, Decimal | None]]]:
        """Row i, column j: members of i also in j, and that as a share of i's members."""
        sizes = [self.size(i) for i in range(len(self.segments))]
        return [
            [
                (shared := self.shared(i, j), ratio(shared, sizes[i]))
                for j in range(len(self.segments))
            ]
            for i in range(len(self.segments))
        ]

    def union(self) -> int:
        return sum(self.regions.values())

    def region(self, *positions: int) -> int:
        """Members of exactly these segments (among the compared ones)."""
        mask = sum(1 << p for p in positions)
        return self.regions.get(mask, 0)


def overlap(scope: Scope, *, segments: Sequence[Segment]) -> Overlap:
    """One pass over the chosen segments' memberships: each customer's set of segments as a
    bitmask (a sum, since a customer is in a segment at most once), then customers per set."""
    if not OVERLAP_MIN <= len(segments) <= OVERLAP_MAX:
        raise ReportError(
            OVERLAP_COUNT_ERROR.format(low=OVERLAP_MIN, high=OVERLAP_MAX, n=len(segments))
        )
    members = SegmentMembership._meta.db_table
    bits = " ".join(f"WHEN %s THEN {1 << i}" for i in range(len(segments)))
    ids = [s.pk for s in segments]
    sql = f"""
        SELECT mask, COUNT(*) FROM (
            SELECT customer_id, SUM(CASE segment_id {bits} END) AS mask
            FROM {members}
            WHERE segment_id IN ({", ".join(["%s"] * len(ids))})
            GROUP BY customer_id
        ) sets
        GROUP BY mask
    """
    # TRICKY: the server's small default work_mem keeps the plan that streams the
    # (customer, segment) index in customer order; with more memory PostgreSQL picks a hash
    # aggregate over every membership, three times slower (bench/reports_bench.py).
    regions = {int(mask): int(n) for mask, n in _fetch(sql, [*ids, *ids], memory=False)}
    return Overlap(segments=list(segments), regions=regions)


# --- The dashboard's top segments ----------------------------------------------------------


@dataclass
class SegmentRevenue:
    segment: Segment
    revenue: Decimal
    buyers: int


def top_segments(scope: Scope, period: Period, *, limit: int = 5) -> list[SegmentRevenue]:
    """The merchant's active segments with the most revenue from their current members in
    the period (several segments may share a customer's revenue)."""
    members, segments = SegmentMembership._meta.db_table, Segment._meta.db_table
    rows_sql, params = _sales_rows(scope, [(period, 1)])
    sql = f"""
        WITH sales AS (
            SELECT customer_id, SUM(gross_cents - refund_cents) AS revenue,
                   SUM(orders) AS orders
            FROM ({rows_sql}) s GROUP BY customer_id
        )
        SELECT sm.segment_id, SUM(s.revenue) AS revenue,
               SUM(CASE WHEN s.orders > 0 THEN 1 ELSE 0 END)
        FROM sales s
        JOIN {members} sm ON sm.customer_id = s.customer_id
        JOIN {segments} sg ON sg.id = sm.segment_id
        WHERE sg.merchant_id = %s AND sg.is_active
        GROUP BY sm.segment_id
        ORDER BY revenue DESC, sm.segment_id
        LIMIT %s
    """
    rows = _fetch(sql, [*params, scope.merchant.pk, limit])
    by_id = Segment.objects.in_bulk([r[0] for r in rows])
    return [
        SegmentRevenue(segment=by_id[r[0]], revenue=cents_money(r[1]), buyers=int(r[2] or 0))
        for r in rows
        if r[0] in by_id
    ]


def top_segments_stored(merchant: Merchant, *, limit: int = 5) -> list[SegmentRevenue]:
    """The merchant's active segments with the most revenue from their members in the 30
    days up to each one's last statistics (stored at refresh: no membership is read).
    The dashboard's list for users who see every branch."""
    segments = Segment.objects.filter(
        merchant=merchant, is_active=True, revenue_30d__isnull=False
    ).order_by("-revenue_30d", "pk")[:limit]
    return [
        SegmentRevenue(segment=s, revenue=money(s.revenue_30d), buyers=int(s.buyers_30d or 0))
        for s in segments
    ]
