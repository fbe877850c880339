"""`manage.py segment_preview --merchant SLUG --rules FILE [--as-of ISO-8601] [--ids]`

Validates a rule tree (FILE, or `-` for standard input) for a merchant and prints the
number of matching customers, or with `--ids` their external ids, one per line, ascending.
Exit status 0 on success, 2 on a validation error, unreadable JSON or an unknown merchant.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from customers.models import Merchant
from segments.engine import RuleValidationError, matching_customers, validate_rules

USAGE_ERROR = 2


class Command(BaseCommand):
    help = "Count (or list) the merchant's customers matching a rule tree."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", required=True, help="merchant slug")
        parser.add_argument("--rules", required=True, help="rule JSON file, or - for stdin")
        parser.add_argument(
            "--as-of",
            dest="as_of",
            help="evaluate at this instant (ISO 8601; without an offset: merchant time)",
        )
        parser.add_argument("--ids", action="store_true", help="print external ids instead")

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = Merchant.objects.filter(slug=options["merchant"]).first()
        if merchant is None:
            raise CommandError(f'unknown merchant "{options["merchant"]}"', returncode=USAGE_ERROR)
        data = self.read_rules(options["rules"])
        as_of = self.parse_as_of(options["as_of"], merchant) if options["as_of"] else None
        try:
            tree = validate_rules(data, merchant=merchant)
            customers = matching_customers(merchant=merchant, rules=tree, as_of=as_of)
        except RuleValidationError as exc:
            raise CommandError("\n".join(exc.errors), returncode=USAGE_ERROR) from None
        if options["ids"]:
            for external_id in customers.order_by("external_id").values_list(
                "external_id", flat=True
            ):
                self.stdout.write(external_id)
        else:
            self.stdout.write(str(customers.count()))

    def read_rules(self, name: str) -> object:
        try:
            if name == "-":
                text = sys.stdin.read()
            else:
                with open(name, encoding="utf-8") as handle:
                    text = handle.read()
            return json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(
                f"cannot read rules from {name}: {exc}", returncode=USAGE_ERROR
            ) from None

    @staticmethod
    def parse_as_of(text: str, merchant: Merchant) -> dt.datetime:
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise CommandError(
                f'--as-of: "{text}" is not an ISO 8601 date-time', returncode=USAGE_ERROR
            ) from None
        if timezone.is_naive(value):
            value = value.replace(tzinfo=merchant.tzinfo)
        return value
