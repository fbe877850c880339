"""`manage.py compute_scores --merchant SLUG [--as-of ISO-8601] [--json]`

Computes every score of every customer of the merchant as of `as_of` (default: now) and
stores them (`shared/spec/customer-scores.md`, "Computing them"). Exit status 0, or 2 with
the reason on an unknown merchant or a bad date. With `--json`, prints one JSON object: the
run's summary (customers, scored, lifecycle and RFM group counts, tiers, seconds; the
prediction fields are null with `prediction_error` saying why).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from customers.models import Merchant
from customers.scores.service import scores_compute

USAGE_ERROR = 2
#: The instants a computation accepts (the rule contract's `as_of` range).
AS_OF_MIN = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
AS_OF_MAX = dt.datetime(9998, 12, 31, tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Compute and store the lifecycle stage, RFM scores and tier of every customer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", required=True, help="merchant slug")
        parser.add_argument(
            "--as-of",
            dest="as_of",
            help="compute as of this instant (ISO 8601; without an offset: merchant time)",
        )
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = Merchant.objects.filter(slug=options["merchant"]).first()
        if merchant is None:
            raise CommandError(f'unknown merchant "{options["merchant"]}"', returncode=USAGE_ERROR)
        as_of = parse_as_of(options["as_of"], merchant) if options["as_of"] else None
        summary = scores_compute(merchant=merchant, as_of=as_of)
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        stages = ", ".join(f"{name} {count}" for name, count in summary["lifecycle"].items())
        self.stdout.write(
            f"{summary['scored']} of {summary['customers']} customers scored as of "
            f"{summary['as_of']} in {summary['seconds']} s; stages: {stages}"
        )


def parse_as_of(text: str, merchant: Merchant) -> dt.datetime:
    """An ISO 8601 instant within the accepted range; without an offset, merchant time."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f'--as-of: "{text}" is not an ISO 8601 date-time', returncode=USAGE_ERROR
        ) from None
    if timezone.is_naive(value):
        value = value.replace(tzinfo=merchant.tzinfo)
    try:
        in_range = AS_OF_MIN <= value <= AS_OF_MAX
    except OverflowError:
        in_range = False
    if not in_range:
        raise CommandError(
            "--as-of: must lie between 1900-01-01 and 9998-12-31", returncode=USAGE_ERROR
        )
    return value
