"""`manage.py compute_scores --merchant SLUG [--as-of ISO-8601] [--json]`

Computes every score of every customer of the merchant as of `as_of` (default: now) and
stores them (`shared/spec/customer-scores.md`, "Computing them"). Exit status 0, or 2 with
the reason on an unknown merchant or a bad date. With `--json`, prints one JSON object: the
run's summary (customers, scored, lifecycle and RFM group counts, tiers, seconds; the
prediction fields are null with `prediction_error` saying why).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.as_of import parse_as_of
from customers.models import Merchant
from customers.scores.service import scores_compute

USAGE_ERROR = 2


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
        try:
            as_of = parse_as_of(options["as_of"], merchant) if options["as_of"] else None
        except ValueError as exc:
            raise CommandError(f"--as-of: {exc}", returncode=USAGE_ERROR) from None
        summary = scores_compute(merchant=merchant, as_of=as_of)
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        stages = ", ".join(f"{name} {count}" for name, count in summary["lifecycle"].items())
        self.stdout.write(
            f"{summary['scored']} of {summary['customers']} customers scored as of "
            f"{summary['as_of']} in {summary['seconds']} s; stages: {stages}"
        )
        fit = summary["bgnbd"]
        if fit is None:
            self.stdout.write(f"no predictions: {summary['prediction_error']}")
        else:
            self.stdout.write(
                f"BG/NBD on {fit['customers']} customers: r {fit['r']}, alpha {fit['alpha']}, "
                f"a {fit['a']}, b {fit['b']}"
                + (f"; {summary['prediction_error']}" if summary["prediction_error"] else "")
            )
        smart = ", ".join(f"{name} {n}" for name, n in summary["smart_segments"].items())
        self.stdout.write(f"smart segments: {smart}")
