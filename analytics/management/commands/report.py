"""`manage.py report REPORT ...`: the reports of the portal's Reports pages on the command line.

    report segment-analysis --merchant SLUG --from DATE --to DATE
        --group-by lifecycle_stage|rfm_group|smart_segment|segment
        [--segments SLUG,...] [--format csv|json]

prints the segment analysis (`analytics.selectors.segment_analysis`) of the merchant-local
dates `--from` to `--to`, both included, by the groups' current members, one row per group
with the columns of `COLUMNS`. Exit status 0, or 2 with the reason on an unknown merchant,
a bad date or period, an unknown grouping or segment (`docs/reports.md`, "On the command
line"). A report is a subcommand, so more reports can join `segment-analysis`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.periods import Period, PeriodError, parse_date
from analytics.selectors import (
    GROUP_BY_CHOICES,
    GROUP_BY_ERROR,
    UNPLACED,
    GroupRow,
    ReportError,
    Scope,
    segment_analysis,
)
from customers.models import Merchant
from segments.models import Segment

USAGE_ERROR = 2
FORMATS = ("csv", "json")
COLUMNS = (
    "group",
    "customers",
    "customers_share",
    "revenue",
    "revenue_share",
    "orders",
    "avg_order_value",
)
#: The key written for the customers a score has not placed (the selector's empty key): a
#: word, so that an empty CSV cell only ever means "no value". No stage, RFM group or smart
#: segment is called this, and the segment grouping has no such group.
UNPLACED_KEY = "none"

MERCHANT_ERROR = "Unknown merchant {slug!r}."
FORMAT_ERROR = "--format: {value!r} is not a format: use csv or json."
SEGMENTS_REQUIRED_ERROR = (
    "--segments is required with --group-by segment (segment slugs, comma-separated)."
)
SEGMENTS_UNUSED_ERROR = "--segments applies to --group-by segment only, not to {group_by}."
UNKNOWN_SEGMENTS_ERROR = "--segments: merchant {merchant!r} has no segment {slugs}."


def _share(value: Decimal | None) -> str | None:
    """A fraction from 0 to 1 to six decimals; None where the whole is zero."""
    return None if value is None else f"{value:.6f}"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _row(row: GroupRow) -> dict[str, Any]:
    """One group as the command prints it: counts as ints, money and shares as fixed-decimal
    strings (exact, unlike JSON numbers), None where there is no value."""
    if row.segment is not None:
        key = row.segment.slug
    else:
        key = UNPLACED_KEY if row.key == UNPLACED else row.key
    return {
        "group": key,
        "customers": row.customers,
        "customers_share": _share(row.customers_share),
        "revenue": _money(row.revenue),
        "revenue_share": _share(row.revenue_share),
        "orders": row.orders,
        "avg_order_value": _money(row.avg_order_value),
    }


def _usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=USAGE_ERROR)


class Command(BaseCommand):
    help = "Print a report (segment-analysis) as CSV or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        reports = parser.add_subparsers(dest="report", metavar="REPORT", required=True)
        analysis = reports.add_parser(
            "segment-analysis",
            help="customers, revenue and orders per group of current members",
            description=(
                "Customers, revenue and orders per lifecycle stage, RFM group, smart segment "
                "or chosen segment (their current members) in the merchant-local dates "
                "--from to --to, both included."
            ),
        )
        analysis.add_argument("--merchant", required=True, help="merchant slug")
        analysis.add_argument(
            "--from", dest="start", required=True, metavar="DATE", help="first day, YYYY-MM-DD"
        )
        analysis.add_argument(
            "--to", dest="end", required=True, metavar="DATE", help="last day (included)"
        )
        analysis.add_argument(
            "--group-by",
            dest="group_by",
            required=True,
            metavar="GROUPING",
            help=" | ".join(GROUP_BY_CHOICES),
        )
        analysis.add_argument(
            "--segments",
            metavar="SLUG,...",
            help="the segments to compare (with --group-by segment), in this order",
        )
        analysis.add_argument(
            "--format", default="csv", metavar="FORMAT", help="csv (default) or json"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reports: dict[str, Callable[[dict[str, Any]], None]] = {
            "segment-analysis": self.segment_analysis,
        }
        reports[options["report"]](options)

    def segment_analysis(self, options: dict[str, Any]) -> None:
        merchant = Merchant.objects.filter(slug=options["merchant"]).first()
        if merchant is None:
            raise _usage_error(MERCHANT_ERROR.format(slug=options["merchant"]))
        try:
            start = parse_date(options["start"], "--from")
            end = parse_date(options["end"], "--to")
            period = Period(start, end, tz=merchant.tzinfo)
        except PeriodError as exc:
            raise _usage_error(str(exc)) from None
        # Checked here rather than with argparse `choices`, whose refusal through
        # call_command is a CommandError with status 1, not the 2 of every other mistake.
        group_by = options["group_by"]
        if group_by not in GROUP_BY_CHOICES:
            choices = ", ".join(GROUP_BY_CHOICES)
            raise _usage_error(
                "--group-by: " + GROUP_BY_ERROR.format(value=group_by, choices=choices)
            )
        if options["format"] not in FORMATS:
            raise _usage_error(FORMAT_ERROR.format(value=options["format"]))
        segments = self._segments(merchant, group_by, options["segments"])
        try:
            # The merchant's whole: no branch limit, as for an owner in the portal.
            analysis = segment_analysis(
                Scope(merchant=merchant),
                period,
                group_by=group_by,
                segments=segments,
                compare=False,
            )
        except ReportError as exc:
            raise _usage_error(str(exc)) from None
        rows = [_row(row) for row in analysis.rows]
        if options["format"] == "json":
            document = {
                "merchant": merchant.slug,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "group_by": group_by,
                "rows": rows,
            }
            self.stdout.write(json.dumps(document, indent=2))
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)  # None is written as an empty cell
        self.stdout.write(out.getvalue(), ending="")

    def _segments(self, merchant: Merchant, group_by: str, raw: str | None) -> list[Segment]:
        """The merchant's segments named by `--segments`, in the order given (a slug named
        twice counts once). Scoping happens here: the selector sums the memberships of
        whatever segments it is given, so only the merchant's own are looked up."""
        slugs = list(dict.fromkeys(s.strip() for s in (raw or "").split(",") if s.strip()))
        if group_by != "segment":
            if raw is not None:
                raise _usage_error(SEGMENTS_UNUSED_ERROR.format(group_by=group_by))
            return []
        if not slugs:
            raise _usage_error(SEGMENTS_REQUIRED_ERROR)
        found = {s.slug: s for s in Segment.objects.filter(merchant=merchant, slug__in=slugs)}
        missing = [slug for slug in slugs if slug not in found]
        if missing:
            names = " or ".join(repr(slug) for slug in missing)
            raise _usage_error(UNKNOWN_SEGMENTS_ERROR.format(merchant=merchant.slug, slugs=names))
        return [found[slug] for slug in slugs]
