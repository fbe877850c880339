"""The report pages and the dashboard. Thin: the figures come from `analytics.selectors`,
the period from `analytics.periods`, the tables (page and export) from `analytics.tables`.

Tenancy: every report reads `Scope(merchant=current merchant)`, and segments are looked up
among the current merchant's (`segment_queryset`), so another merchant's ids answer 404. A
user whose staff membership is limited to branches gets a scope with those branches: every
sales figure is limited to them, and the page says so.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views import View

from analytics import selectors
from analytics.periods import (
    Granularity,
    Period,
    PeriodError,
    Preset,
    granularity_from,
    parse_date,
    period_from_params,
    preset_period,
)
from analytics.selectors import GROUP_BY_CHOICES, GROUP_BY_LABELS, ReportError, Scope
from analytics.tables import Column, Linked, ReportTable, export_response
from customers.models import Merchant
from customers.portal.formatting import format_count, format_percent
from customers.portal.permissions import Action
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant
from customers.scores.definitions import STAGE_DISPLAY_ORDER, STAGE_LABELS
from customers.scores.selectors import NO_STAGE
from segments.models import Segment
from segments.selectors import segment_queryset

#: Series colours of the charts, in order (Bootstrap's palette, readable on white).
PALETTE = (
    "#0d6efd",
    "#198754",
    "#fd7e14",
    "#6f42c1",
    "#d63384",
    "#20c997",
    "#ffc107",
    "#0dcaf0",
    "#6c757d",
    "#dc3545",
    "#6610f2",
    "#adb5bd",
)
GROWTH_DEFAULT_SEGMENTS = 5
UNKNOWN_SEGMENT_ERROR = "No segment of this merchant has the id {value!r}."
CHANGES_PER_PAGE = 50
_ID = re.compile(r"[0-9]{1,18}")
EMPTY_CELL = selectors.SalesCell()


def report_scope(request: HttpRequest) -> Scope:
    """The current merchant, limited to the user's branches when their membership is."""
    merchant = current_merchant(request)
    membership = getattr(request, "membership", None)
    branch_ids: tuple[int, ...] | None = None
    if membership is not None:
        limits = list(membership.branches.order_by("pk").values_list("pk", "merchant_id"))
        if limits:
            # Limited: to the merchant's own branches among them (none left: no sales at all).
            branch_ids = tuple(pk for pk, owner in limits if owner == merchant.pk)
    return Scope(merchant=merchant, branch_ids=branch_ids)


def _segments_from(merchant: Merchant, values: Sequence[str]) -> list[Segment]:
    """The merchant's segments with these ids, in the order given; an id of another merchant
    (or of nothing) answers 404, like any other page."""
    wanted: list[int] = []
    for value in values:
        if not value.strip():
            continue
        if not _ID.fullmatch(value.strip()):  # ASCII digits a database id can hold
            raise Http404(UNKNOWN_SEGMENT_ERROR.format(value=value))
        if int(value) not in wanted:
            wanted.append(int(value))
    found = segment_queryset(merchant=merchant).in_bulk(wanted)
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise Http404(UNKNOWN_SEGMENT_ERROR.format(value=missing[0]))
    return [found[pk] for pk in wanted]


class ReportView(MerchantRequiredMixin, View):
    """A report page: the period picker, the report's own controls, charts and tables, and
    `?export=csv|xlsx&table=<name>` to download one of its tables (a permission of its own).

    Subclasses set `template_name`, `report_name` (the export files' prefix) and implement
    `build(period) -> context` with `tables`; a `ReportError` or `PeriodError` is shown on
    the page, never a 500.
    """

    template_name: str
    report_name: str
    default_preset: Preset = Preset.LAST_30
    uses_period = True
    has_controls = True

    def get_permission(self, request: HttpRequest) -> Action:
        return Action.EXPORT_DATA if "export" in request.GET else Action.VIEW

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.merchant = current_merchant(request)
        self.scope = report_scope(request)
        errors: list[str] = []
        today = self.merchant.today()
        period = preset_period(self.default_preset, today, self.merchant.tzinfo)
        if self.uses_period:
            try:
                period = period_from_params(
                    request.GET, today=today, tz=self.merchant.tzinfo, default=self.default_preset
                )
            except PeriodError as exc:
                errors.append(str(exc))  # shown on the page; the default period stands
        context: dict[str, Any] = {
            "period": period,
            "previous": period.previous(),
            "presets": list(Preset),
            "scope": self.scope,
            "branch_names": self.scope.branch_names(),
            "uses_period": self.uses_period,
            "has_controls": self.has_controls,
            "tables": [],
            "charts": [],
        }
        try:
            context.update(self.build(period))
        except (ReportError, PeriodError) as exc:
            errors.append(str(exc))
        context["errors"] = errors
        fmt = request.GET.get("export")
        if fmt is not None:
            # The period the report used (the dashboard's is always the last 30 days).
            return self.export(context["tables"], fmt, context["period"])
        response = render(request, self.template_name, context)
        patch_vary_headers(response, ("HX-Request",))
        return response

    def build(self, period: Period) -> dict[str, Any]:
        raise NotImplementedError

    def export(self, tables: list[ReportTable], fmt: str, period: Period) -> HttpResponse:
        if fmt not in ("csv", "xlsx"):
            raise Http404(f"Unknown export format {fmt!r}: use csv or xlsx.")
        name = self.request.GET.get("table", "")
        table = next((t for t in tables if t.name == name), None)
        if table is None:
            raise Http404(f"This report has no table {name!r}.")
        filename = (
            f"{self.report_name}-{table.name}-{self.merchant.slug}"
            f"-{period.start.isoformat()}-{period.end.isoformat()}"
        )
        return export_response(table, fmt, filename)

    def _one_segment(self) -> Segment | None:
        """The `segment` a report is limited to (blank: all customers)."""
        value = self.request.GET.get("segment", "").strip()
        return _segments_from(self.merchant, [value])[0] if value else None

    def segment_choices(self) -> list[Segment]:
        return list(segment_queryset(merchant=self.merchant).order_by("name"))

    def customers_url(self, **filters: str) -> str:
        return f"{reverse('customers:list')}?{urlencode(filters)}"


def _chart(
    chart_id: str,
    kind: str,
    labels: list[str],
    datasets: list[dict[str, Any]],
    *,
    title: str,
    stacked: bool = False,
    percent: bool = False,
    money: str = "",
) -> dict[str, Any]:
    """A chart's data for `static/js/report-charts.js` (JSON in the canvas's data-chart)."""
    for i, dataset in enumerate(datasets):
        dataset.setdefault("color", PALETTE[i % len(PALETTE)])
    data = {
        "type": kind,
        "labels": labels,
        "datasets": datasets,
        "stacked": stacked,
        "percent": percent,
        "money": money,
    }
    # In an attribute, not a json_script: htmx drops <script> elements from swapped content.
    return {"id": chart_id, "data": data, "json": json.dumps(data), "title": title}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- Segment analysis ----------------------------------------------------------------------


class SegmentAnalysisView(ReportView):
    """Report 1: per group (lifecycle stages, RFM groups, smart segments or chosen segments)
    customers, revenue and their shares, orders, average order value, change."""

    template_name = "analytics/segment_analysis.html"
    report_name = "segment-analysis"

    def build(self, period: Period) -> dict[str, Any]:
        group_by = self.request.GET.get("group_by") or "lifecycle_stage"
        chosen = _segments_from(self.merchant, self.request.GET.getlist("segments"))
        context: dict[str, Any] = {
            "group_by": group_by,
            "group_label": GROUP_BY_LABELS.get(group_by, group_by),
            "group_by_choices": [(g, GROUP_BY_LABELS[g]) for g in GROUP_BY_CHOICES],
            "segment_choices": self.segment_choices(),
            "chosen_ids": [s.pk for s in chosen],
        }
        if group_by == "segment" and not chosen:
            context["needs_segments"] = True
            return context
        analysis = selectors.segment_analysis(
            self.scope, period, group_by=group_by, segments=chosen
        )
        table = ReportTable(
            name="groups",
            title=f"Segment analysis by {GROUP_BY_LABELS[group_by].lower()}",
            columns=[
                Column("Group"),
                Column("Customers", "count"),
                Column("Share of customers", "share"),
                Column("Revenue", "money"),
                Column("Share of revenue", "share"),
                Column("Orders", "count"),
                Column("Average order value", "money"),
                Column("Revenue, previous period", "money"),
                Column("Change in revenue", "change"),
            ],
        )
        for row in analysis.rows:
            table.rows.append(
                [
                    Linked(row.label, self._group_url(group_by, row)),
                    row.customers,
                    row.customers_share,
                    row.revenue,
                    row.revenue_share,
                    row.orders,
                    row.avg_order_value,
                    row.prev_revenue,
                    row.revenue_change,
                ]
            )
        total_aov = selectors.average(
            sum((r.gross for r in analysis.rows), selectors.ZERO), analysis.orders
        )
        if group_by != "segment":
            # The groups partition the customers: the last row is the merchant's total.
            table.total = [
                "All customers",
                analysis.customers,
                selectors.ratio(analysis.customers, analysis.customers),
                analysis.revenue,
                selectors.ratio(analysis.revenue, analysis.revenue),
                analysis.orders,
                total_aov,
                analysis.prev_revenue,
                analysis.revenue_change,
            ]
        chart = _chart(
            "revenue-shares",
            "bar",
            [r.label for r in analysis.rows],
            [
                {
                    "label": "Share of revenue",
                    "data": [_float(r.revenue_share) for r in analysis.rows],
                }
            ],
            title="Share of the merchant's revenue in the period",
            percent=True,
        )
        context.update({"analysis": analysis, "tables": [table], "charts": [chart], "table": table})
        return context

    def _group_url(self, group_by: str, row: selectors.GroupRow) -> str | None:
        if row.segment is not None:
            return reverse("segments:detail", args=[row.segment.pk])
        if group_by == "lifecycle_stage":
            return self.customers_url(lifecycle_stage=row.key or NO_STAGE)
        if row.key and group_by in ("rfm_group", "smart_segment"):
            return self.customers_url(**{group_by: row.key})
        return None


# --- Revenue by segment and branch ---------------------------------------------------------


class BranchRevenueView(ReportView):
    """Report 2: revenue, orders, customers and average order value per branch per day,
    week, month or year, for a segment or all customers."""

    template_name = "analytics/branch_revenue.html"
    report_name = "revenue-by-branch"
    default_preset = Preset.LAST_365

    def build(self, period: Period) -> dict[str, Any]:
        segment = self._one_segment()
        interval = self.request.GET.get("interval") or "auto"
        granularity = granularity_from(interval, period)
        report = selectors.revenue_by_branch(
            self.scope, period, granularity=granularity, segment=segment
        )
        currency = self.merchant.currency
        wide = ReportTable(
            name="revenue",
            title="Revenue by branch",
            columns=[
                Column(granularity.value.capitalize()),
                *[Column(name, "money") for _, name in report.branches],
                Column("All branches", "money"),
            ],
        )
        for bucket in report.buckets:
            wide.rows.append(
                [
                    report.bucket_label(bucket),
                    *[report.cell(bucket, pk).revenue for pk, _ in report.branches],
                    report.bucket_totals.get(bucket, EMPTY_CELL).revenue,
                ]
            )
        wide.total = [
            "Total",
            *[report.branch_totals.get(pk, EMPTY_CELL).revenue for pk, _ in report.branches],
            report.total.revenue,
        ]
        detail = ReportTable(
            name="details",
            title="Orders, customers and average order value",
            columns=[
                Column(granularity.value.capitalize()),
                Column("Branch"),
                Column("Revenue", "money"),
                Column("Orders", "count"),
                Column("Customers", "count"),
                Column("Average order value", "money"),
            ],
        )
        for bucket in report.buckets:
            for pk, name in [*report.branches, (-1, "All branches")]:
                cell = (
                    report.bucket_totals.get(bucket, EMPTY_CELL)
                    if pk == -1
                    else report.cell(bucket, pk)
                )
                detail.rows.append(
                    [
                        report.bucket_label(bucket),
                        name,
                        cell.revenue,
                        cell.orders,
                        cell.customers,
                        cell.avg_order_value,
                    ]
                )
        branches = ReportTable(
            name="branches",
            title="Branch totals for the period",
            columns=[
                Column("Branch"),
                Column("Revenue", "money"),
                Column("Share of revenue", "share"),
                Column("Orders", "count"),
                Column("Customers", "count"),
                Column("Average order value", "money"),
            ],
        )
        for pk, name in report.branches:
            cell = report.branch_totals.get(pk, EMPTY_CELL)
            branches.rows.append(
                [
                    name,
                    cell.revenue,
                    selectors.ratio(cell.revenue, report.total.revenue),
                    cell.orders,
                    cell.customers,
                    cell.avg_order_value,
                ]
            )
        branches.total = [
            "All branches",
            report.total.revenue,
            selectors.ratio(report.total.revenue, report.total.revenue),
            report.total.orders,
            report.total.customers,
            report.total.avg_order_value,
        ]
        chart = _chart(
            "branch-revenue",
            "bar",
            [report.bucket_label(b) for b in report.buckets],
            [
                {
                    "label": name,
                    "data": [_float(report.cell(b, pk).revenue) for b in report.buckets],
                }
                for pk, name in report.branches
            ],
            title=f"Revenue per {granularity.value} and branch",
            stacked=True,
            money=currency,
        )
        return {
            "report": report,
            "segment": segment,
            "segment_choices": self.segment_choices(),
            "interval": interval,
            "granularity": granularity,
            "intervals": [("auto", f"Automatic ({period.auto_granularity().value})")]
            + [(g.value, g.value.capitalize()) for g in Granularity],
            "tables": [wide, branches, detail],
            "charts": [chart],
        }


# --- Segment growth ------------------------------------------------------------------------


class GrowthView(ReportView):
    """Report 3: several segments' sizes per day (daily snapshots) in one chart, and their
    entries and exits per week with links to who entered and left."""

    template_name = "analytics/growth.html"
    report_name = "segment-growth"
    default_preset = Preset.LAST_90

    def build(self, period: Period) -> dict[str, Any]:
        chosen = _segments_from(self.merchant, self.request.GET.getlist("segments"))
        if not chosen:
            chosen = list(
                segment_queryset(merchant=self.merchant)
                .filter(is_active=True)
                .order_by("-member_count", "name")[:GROWTH_DEFAULT_SEGMENTS]
            )
        growth = selectors.segment_growth(self.scope, period, segments=chosen)
        sizes = ReportTable(
            name="sizes",
            title="Members per day",
            columns=[Column("Day", "date"), *[Column(s.name, "count") for s in chosen]],
        )
        for i, day in enumerate(growth.days):
            sizes.rows.append([day.isoformat(), *[g.sizes[i] for g in growth.series]])
        summary = ReportTable(
            name="summary",
            title="Size at the start and end of the period",
            columns=[
                Column("Segment"),
                Column("Members at the start", "count"),
                Column("Members at the end", "count"),
                Column("Change", "change"),
                Column("Entries", "count"),
                Column("Exits", "count"),
            ],
        )
        for series in growth.series:
            pk = series.segment.pk
            first, last = series.sizes[0], series.sizes[-1]
            summary.rows.append(
                [
                    Linked(series.segment.name, reverse("segments:detail", args=[pk])),
                    first,
                    last,
                    selectors.change(last, first),
                    sum(w.entries.get(pk, 0) for w in growth.weeks),
                    sum(w.exits.get(pk, 0) for w in growth.weeks),
                ]
            )
        weeks = ReportTable(
            name="weeks",
            title="Entries and exits per week (weeks with moves)",
            columns=[
                Column("Week"),
                Column("Segment"),
                Column("Entries", "count"),
                Column("Exits", "count"),
                Column("Net", "count"),
            ],
        )
        for week in growth.weeks:
            for segment in chosen:
                entries = week.entries.get(segment.pk, 0)
                exits = week.exits.get(segment.pk, 0)
                if not entries and not exits:
                    continue  # a quiet week is left out (the summary has the totals)
                weeks.rows.append(
                    [
                        f"Week of {week.week.day} {week.week.strftime('%b %Y')}",
                        segment.name,
                        Linked(entries, self._changes_url(segment, week.week, "entry"))
                        if entries
                        else 0,
                        Linked(exits, self._changes_url(segment, week.week, "exit"))
                        if exits
                        else 0,
                        entries - exits,
                    ]
                )
        chart = _chart(
            "segment-sizes",
            "line",
            [d.isoformat() for d in growth.days],
            [{"label": g.segment.name, "data": g.sizes} for g in growth.series],
            title="Members per day",
        )
        return {
            "growth": growth,
            "segment_choices": self.segment_choices(),
            "chosen_ids": [s.pk for s in chosen],
            "tables": [summary, weeks, sizes],
            "charts": [chart],
        }

    def _changes_url(self, segment: Segment, week: dt.date, kind: str) -> str:
        url = reverse("analytics:growth_changes", args=[segment.pk])
        return f"{url}?{urlencode({'week': week.isoformat(), 'kind': kind})}"


class GrowthChangesView(MerchantRequiredMixin, View):
    """Who entered (or left) a segment in a merchant-local week."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        segment = get_object_or_404(segment_queryset(merchant=merchant), pk=pk)
        kind = request.GET.get("kind", "entry")
        if kind not in ("entry", "exit"):
            raise Http404("kind must be entry or exit.")
        try:
            week = parse_date(request.GET.get("week", ""), "week")
        except PeriodError as exc:
            raise Http404(str(exc)) from None
        week -= dt.timedelta(days=week.weekday())
        scope = report_scope(request)
        events = selectors.week_changes(scope, segment, week=week, kind=kind, tz=merchant.tzinfo)
        page = Paginator(events, CHANGES_PER_PAGE).get_page(request.GET.get("page"))
        return render(
            request,
            "analytics/growth_changes.html",
            {
                "scope": scope,
                "branch_names": scope.branch_names(),
                "segment": segment,
                "week": week,
                "week_end": week + dt.timedelta(days=6),
                "kind": kind,
                "page": page,
                "back": f"{reverse('analytics:growth')}?"
                + urlencode(
                    {
                        "segments": segment.pk,
                        "period": "custom",
                        "from": week.isoformat(),
                        "to": (week + dt.timedelta(days=6)).isoformat(),
                    }
                ),
            },
        )


# --- Overlap -------------------------------------------------------------------------------


class OverlapView(ReportView):
    """Report 4: pairwise shared members of 2 to 12 segments, with a diagram for 2 or 3."""

    template_name = "analytics/overlap.html"
    report_name = "segment-overlap"
    uses_period = False

    def build(self, period: Period) -> dict[str, Any]:
        chosen = _segments_from(self.merchant, self.request.GET.getlist("segments"))
        context: dict[str, Any] = {
            "segment_choices": self.segment_choices(),
            "chosen_ids": [s.pk for s in chosen],
            "limits": (selectors.OVERLAP_MIN, selectors.OVERLAP_MAX),
        }
        if not chosen:
            context["needs_segments"] = True
            return context
        result = selectors.overlap(self.scope, segments=chosen)
        matrix = result.matrix()
        names = [s.name for s in chosen]
        table = ReportTable(
            name="matrix",
            title="Shared members",
            columns=[
                Column("Segment"),
                Column("Members", "count"),
                *[
                    column
                    for name in names
                    for column in (
                        Column(f"Also in {name}", "count"),
                        Column(f"% in {name}", "share"),
                    )
                ],
            ],
        )
        for i, segment in enumerate(chosen):
            table.rows.append(
                [
                    Linked(segment.name, reverse("segments:detail", args=[segment.pk])),
                    result.size(i),
                    *[value for cell in matrix[i] for value in cell],
                ]
            )
        grid = [
            {
                "segment": segment,
                "size": format_count(result.size(i)),
                "cells": [
                    {
                        "count": format_count(count),
                        "share": format_percent(share),
                        "self": i == j,
                        "heat": 0 if i == j else _heat(share),
                    }
                    for j, (count, share) in enumerate(matrix[i])
                ],
            }
            for i, segment in enumerate(chosen)
        ]
        return {
            **context,
            "overlap": result,
            "grid": grid,
            "venn": _venn(result) if len(chosen) in (2, 3) else None,
            "tables": [table],
        }


def _heat(share: Any) -> int:
    """A cell's shade, 0 to 5, by its share."""
    return 0 if share is None else min(5, int(float(share) * 5 + 0.5))


# Region label positions of the diagrams (viewBox 0 0 400 300), by bitmask of segments.
_VENN_2 = {
    "circles": [(150, 150, 100), (250, 150, 100)],
    "labels": {1: (95, 155), 2: (305, 155), 3: (200, 155)},
    "names": [(10, 30, "start"), (390, 30, "end")],
}
_VENN_3 = {
    "circles": [(160, 120, 90), (240, 120, 90), (200, 190, 90)],
    "labels": {
        1: (115, 100),
        2: (285, 100),
        4: (200, 250),
        3: (200, 85),
        5: (150, 185),
        6: (250, 185),
        7: (200, 145),
    },
    "names": [(10, 16, "start"), (390, 16, "end"), (200, 296, "middle")],
}


def _venn(result: selectors.Overlap) -> dict[str, Any]:
    layout: dict[str, Any] = _VENN_2 if len(result.segments) == 2 else _VENN_3
    return {
        "circles": [
            {"cx": cx, "cy": cy, "r": r, "color": PALETTE[i], "name": result.segments[i].name}
            for i, (cx, cy, r) in enumerate(layout["circles"])
        ],
        "names": [
            {"x": x, "y": y, "anchor": anchor, "text": result.segments[i].name, "color": PALETTE[i]}
            for i, (x, y, anchor) in enumerate(layout["names"])
        ],
        "labels": [
            {"x": x, "y": y, "count": format_count(result.regions.get(mask, 0))}
            for mask, (x, y) in layout["labels"].items()
        ],
        "union": format_count(result.union()),
    }


# --- Key figures ---------------------------------------------------------------------------


class KeyFiguresView(ReportView):
    """Report 5: the period's key figures for all customers beside a chosen segment's, each
    with the previous period and the change."""

    template_name = "analytics/key_figures.html"
    report_name = "key-figures"

    def build(self, period: Period) -> dict[str, Any]:
        segment = self._one_segment()
        previous = period.previous()
        everyone, everyone_before = selectors.key_figures_of(self.scope, [period, previous])
        columns = [
            Column("Figure"),
            Column("All customers", "figure"),
            Column("All customers, previous period", "figure"),
            Column("Change", "change"),
        ]
        pairs = [(everyone, everyone_before)]
        if segment is not None:
            members_now, members_before = selectors.key_figures_of(
                self.scope, [period, previous], segment=segment
            )
            pairs.append((members_now, members_before))
            columns += [
                Column(segment.name, "figure"),
                Column(f"{segment.name}, previous period", "figure"),
                Column(f"Change, {segment.name}", "change"),
            ]
        # Money and counts share the columns: each row says which it holds.
        table = ReportTable(
            name="figures",
            title="Key figures",
            columns=columns,
            row_kinds=[kind for _, _, kind in selectors.KEY_FIGURES],
        )
        for attribute, label, _kind in selectors.KEY_FIGURES:
            row: list[Any] = [label]
            for now, before in pairs:
                current, past = getattr(now, attribute), getattr(before, attribute)
                row += [current, past, selectors.change(current, past)]
            table.rows.append(row)
        names = ["All customers"] + ([segment.name] if segment is not None else [])
        chart = _chart(
            "figure-changes",
            "bar",
            [label for _, label, _ in selectors.KEY_FIGURES],
            [
                {
                    "label": name,
                    "data": [
                        _float(selectors.change(getattr(now, a), getattr(before, a)))
                        for a, _, _ in selectors.KEY_FIGURES
                    ],
                }
                for name, (now, before) in zip(names, pairs, strict=True)
            ],
            title="Change against the previous period",
            percent=True,
        )
        return {
            "charts": [chart],
            "segment": segment,
            "segment_choices": self.segment_choices(),
            "figures": everyone,
            "tables": [table],
        }


# --- Dashboard -----------------------------------------------------------------------------


class DashboardView(ReportView):
    """The home page: the last 30 days against the 30 before, the lifecycle distribution, the
    five segments with the most revenue, and the way into each report."""

    template_name = "analytics/dashboard.html"
    report_name = "dashboard"
    uses_period = False
    has_controls = False

    def build(self, period: Period) -> dict[str, Any]:
        period = preset_period(Preset.LAST_30, self.merchant.today(), self.merchant.tzinfo)
        previous = period.previous()
        now, before = selectors.key_figures_of(self.scope, [period, previous])
        cards = [
            {
                "label": label,
                "kind": kind,
                "value": getattr(now, attribute),
                "previous": getattr(before, attribute),
                "change": selectors.change(getattr(now, attribute), getattr(before, attribute)),
            }
            for attribute, label, kind in selectors.KEY_FIGURES
        ]
        counts = selectors.group_sizes(self.scope, "lifecycle_stage")
        total = sum(counts.values())
        stages = ReportTable(
            name="lifecycle",
            title="Customers by lifecycle stage",
            columns=[Column("Stage"), Column("Customers", "count"), Column("Share", "share")],
        )
        for name in (*STAGE_DISPLAY_ORDER, NO_STAGE):
            stages.rows.append(
                [
                    Linked(
                        STAGE_LABELS.get(name, "No order yet"),
                        self.customers_url(lifecycle_stage=name),
                    ),
                    counts.get(name, 0),
                    selectors.ratio(counts.get(name, 0), total),
                ]
            )
        # Every branch: the revenue each segment's statistics stored at its last refresh
        # (no membership read); limited to branches: those branches' sales, counted now.
        stored = not self.scope.limited
        top = (
            selectors.top_segments_stored(self.merchant)
            if stored
            else selectors.top_segments(self.scope, period)
        )
        segments = ReportTable(
            name="top-segments",
            title="Segments with the most revenue, last 30 days",
            columns=[
                Column("Segment"),
                Column("Members", "count"),
                Column("Revenue", "money"),
                Column("Share of revenue", "share"),
                Column("Members who ordered", "count"),
            ],
        )
        for item in top:
            segments.rows.append(
                [
                    Linked(item.segment.name, reverse("segments:detail", args=[item.segment.pk])),
                    item.segment.member_count,
                    item.revenue,
                    selectors.ratio(item.revenue, now.revenue),
                    item.buyers,
                ]
            )
        chart = _chart(
            "lifecycle",
            "doughnut",
            [STAGE_LABELS.get(n, "No order yet") for n in (*STAGE_DISPLAY_ORDER, NO_STAGE)],
            [
                {
                    "label": "Customers",
                    "data": [counts.get(n, 0) for n in (*STAGE_DISPLAY_ORDER, NO_STAGE)],
                }
            ],
            title="Customers by lifecycle stage",
        )
        return {
            "period": period,
            "previous": previous,
            "cards": cards,
            "currency": self.merchant.currency,
            "tables": [stages, segments],
            "stages": stages,
            "segments_table": segments,
            "top_stored": stored,
            "has_customers": total > 0,
            "charts": [chart],
        }
