"""The reports' reads: key figures, segment analysis, revenue by branch, segment growth and
overlap. Read-only over the other apps; `docs/reports.md` gives every formula.

Scoping: every query starts from one merchant's rows (`Scope.merchant`, the caller's current
merchant); segments passed in must be that merchant's (callers look them up among the
merchant's own, as the views and the `report` command do), and every sales figure is limited to `Scope.branch_ids` when the user's
membership is limited to branches (transactions without a branch are then out). Group
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

from django.db import connection
from django.db.models import Case, Count, DateField, F, Q, QuerySet, Sum, When
from django.db.models.functions import Trunc

from analytics.periods import Granularity, Period, bucket_label
from customers.models import (
    Branch,
    Customer,
    CustomerMetrics,
    Merchant,
    Redemption,
    Transaction,
    TransactionKind,
)
from customers.scores.definitions import RFM_GROUPS, STAGE_DISPLAY_ORDER, STAGE_LABELS
from customers.scores.smart import SMART_SEGMENTS
from customers.sql import adapt
from segments.models import MembershipEvent, Segment, SegmentMembership, SegmentSizeSnapshot

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


def _sales_where(
    scope: Scope, since: dt.datetime, until: dt.datetime, alias: str = "t"
) -> tuple[str, list[Any]]:
    """The transactions of the scope in [since, until): merchant, time, and branches."""
    sql = f"{alias}.merchant_id = %s AND {alias}.occurred_at >= %s AND {alias}.occurred_at < %s"
    params: list[Any] = [scope.merchant.pk, since, until]
    if scope.branch_ids is not None:
        if not scope.branch_ids:
            return "1 = 0", []
        sql += f" AND {alias}.branch_id IN ({', '.join(['%s'] * len(scope.branch_ids))})"
        params += list(scope.branch_ids)
    return sql, params


def _members_sql(segment_ids: Sequence[int]) -> str:
    members = SegmentMembership._meta.db_table
    return (
        f"SELECT customer_id FROM {members} "
        f"WHERE segment_id IN ({', '.join(['%s'] * len(segment_ids))})"
    )


def _fetch(sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, adapt(params))
        return list(cursor.fetchall())


def sales_queryset(
    scope: Scope, period: Period, *, segment: Segment | None = None
) -> QuerySet[Transaction]:
    """The scope's transactions in the period, of the segment's current members when given."""
    qs = Transaction.objects.filter(
        merchant=scope.merchant, occurred_at__gte=period.since, occurred_at__lt=period.until
    )
    if scope.branch_ids is not None:
        qs = qs.filter(branch_id__in=scope.branch_ids)
    if segment is not None:
        qs = qs.filter(
            customer_id__in=SegmentMembership.objects.filter(segment=segment).values("customer_id")
        )
    return qs


_REVENUE = Sum(
    Case(
        When(kind=TransactionKind.PURCHASE, then=F("total")),
        default=-F("total"),
    )
)
_GROSS = Sum("total", filter=Q(kind=TransactionKind.PURCHASE))
_ORDERS = Count("pk", filter=Q(kind=TransactionKind.PURCHASE))
_CUSTOMERS = Count("customer_id", filter=Q(kind=TransactionKind.PURCHASE), distinct=True)


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
    txns, metrics = Transaction._meta.db_table, CustomerMetrics._meta.db_table
    where, params = _sales_where(scope, period.since, period.until)
    segment_sql = ""
    if segment is not None:
        segment_sql = f" AND t.customer_id IN ({_members_sql([segment.pk])})"
        params.append(segment.pk)
    row = _fetch(
        f"""
        SELECT SUM(CASE WHEN t.kind = 'purchase' THEN t.total ELSE 0 END),
               SUM(CASE WHEN t.kind = 'refund' THEN t.total ELSE 0 END),
               SUM(CASE WHEN t.kind = 'purchase' THEN 1 ELSE 0 END),
               COUNT(DISTINCT CASE WHEN t.kind = 'purchase' THEN t.customer_id END),
               COUNT(DISTINCT CASE WHEN t.kind = 'purchase' AND m.first_purchase_at >= %s
                                   THEN t.customer_id END)
        FROM {txns} t LEFT JOIN {metrics} m ON m.customer_id = t.customer_id
        WHERE {where}{segment_sql}
        """,
        [period.since, *params],
    )[0]
    redemptions = Redemption.objects.filter(
        merchant=scope.merchant, redeemed_at__gte=period.since, redeemed_at__lt=period.until
    )
    if segment is not None:
        redemptions = redemptions.filter(
            customer_id__in=SegmentMembership.objects.filter(segment=segment).values("customer_id")
        )
    gross, refunds = money(row[0]), money(row[1])
    return KeyFigures(
        revenue=gross - refunds,
        gross=gross,
        refunds=refunds,
        orders=int(row[2] or 0),
        active_customers=int(row[3] or 0),
        new_customers=int(row[4] or 0),
        redemptions=redemptions.count(),
    )


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

    @property
    def orders_change(self) -> Decimal | None:
        return change(self.orders, self.prev_orders)


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
    and the previous period's revenue and orders (`compare`). One statement: the period's
    (and the previous period's) transactions summed per customer, joined to the groups."""
    source, source_params, groups = _group_source(scope, group_by, segments)
    previous = period.previous()
    since = previous.since if compare else period.since
    where, where_params = _sales_where(scope, since, period.until)
    txns = Transaction._meta.db_table
    now = "t.occurred_at >= %s"
    sql = f"""
        WITH sales AS (
            SELECT t.customer_id,
                   SUM(CASE WHEN {now} THEN
                       CASE WHEN t.kind = 'purchase' THEN t.total ELSE -t.total END
                       ELSE 0 END) AS revenue,
                   SUM(CASE WHEN {now} AND t.kind = 'purchase' THEN t.total ELSE 0 END) AS gross,
                   SUM(CASE WHEN {now} AND t.kind = 'purchase' THEN 1 ELSE 0 END) AS orders,
                   SUM(CASE WHEN {now} THEN 0 WHEN t.kind = 'purchase' THEN t.total
                       ELSE -t.total END) AS prev_revenue,
                   SUM(CASE WHEN {now} THEN 0 WHEN t.kind = 'purchase' THEN 1
                       ELSE 0 END) AS prev_orders
            FROM {txns} t
            WHERE {where}
            GROUP BY t.customer_id
        )
        SELECT g.grp, COUNT(*), SUM(s.revenue), SUM(s.gross), SUM(s.orders),
               SUM(s.prev_revenue), SUM(s.prev_orders)
        FROM ({source}) g LEFT JOIN sales s ON s.customer_id = g.customer_id
        GROUP BY g.grp
        UNION ALL
        SELECT NULL, COUNT(*), SUM(revenue), SUM(gross), SUM(orders), SUM(prev_revenue),
               SUM(prev_orders)
        FROM sales
    """
    cut = period.since
    params = [cut, cut, cut, cut, cut, *where_params, *source_params]
    found: dict[str, tuple[Any, ...]] = {}
    total: tuple[Any, ...] = (None, 0, None, None, 0, None, 0)
    for fetched in _fetch(sql, params):
        if fetched[0] is None:
            total = fetched
        else:
            found[str(fetched[0])] = fetched
    customers = Customer.objects.filter(merchant=scope.merchant).count()
    revenue = money(total[2])
    rows: list[GroupRow] = []
    for key, label, segment in groups:
        found_row = found.get(key)
        if found_row is None and key == UNPLACED:
            continue  # no unplaced customers: no row
        r = found_row or (key, 0, None, None, 0, None, 0)
        row = GroupRow(
            key=key,
            label=label,
            customers=int(r[1] or 0),
            revenue=money(r[2]),
            gross=money(r[3]),
            orders=int(r[4] or 0),
            prev_revenue=money(r[5]),
            prev_orders=int(r[6] or 0),
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
        prev_revenue=money(total[5]),
        orders=int(total[4] or 0),
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


def _sales_cell(row: dict[str, Any]) -> SalesCell:
    return SalesCell(
        revenue=money(row["revenue"]),
        gross=money(row["gross"]),
        orders=int(row["orders"] or 0),
        customers=int(row["customers"] or 0),
    )


def revenue_by_branch(
    scope: Scope,
    period: Period,
    *,
    granularity: Granularity,
    segment: Segment | None = None,
) -> BranchRevenue:
    """Per branch and bucket (merchant-local day, week from Monday, month or year), for all
    customers or the segment's current members."""
    qs = sales_queryset(scope, period, segment=segment)
    bucket = Trunc("occurred_at", granularity.value, output_field=DateField(), tzinfo=period.tz)
    figures = {"revenue": _REVENUE, "gross": _GROSS, "orders": _ORDERS, "customers": _CUSTOMERS}
    per_cell = qs.annotate(bucket=bucket).values("bucket", "branch_id").annotate(**figures)
    per_bucket = qs.annotate(bucket=bucket).values("bucket").annotate(**figures)
    per_branch = qs.values("branch_id").annotate(**figures)
    total = qs.aggregate(**figures)
    cells = {(r["bucket"], r["branch_id"]): _sales_cell(r) for r in per_cell.order_by()}
    branch_totals = {r["branch_id"]: _sales_cell(r) for r in per_branch.order_by()}
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
        bucket_totals={r["bucket"]: _sales_cell(r) for r in per_bucket.order_by()},
        branch_totals=branch_totals,
        total=_sales_cell(total),
    )


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
    from analytics.periods import local_midnight

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
    regions = {int(mask): int(n) for mask, n in _fetch(sql, [*ids, *ids])}
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
    txns, members = Transaction._meta.db_table, SegmentMembership._meta.db_table
    segments = Segment._meta.db_table
    where, params = _sales_where(scope, period.since, period.until)
    sql = f"""
        WITH sales AS (
            SELECT t.customer_id,
                   SUM(CASE WHEN t.kind = 'purchase' THEN t.total ELSE -t.total END) AS revenue,
                   SUM(CASE WHEN t.kind = 'purchase' THEN 1 ELSE 0 END) AS orders
            FROM {txns} t WHERE {where} GROUP BY t.customer_id
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
        SegmentRevenue(segment=by_id[r[0]], revenue=money(r[1]), buyers=int(r[2] or 0))
        for r in rows
        if r[0] in by_id
    ]
