"""`manage.py segment_preview --merchant SLUG --rules FILE [--as-of ISO-8601] [--ids]`

Validates a rule tree (FILE, or `-` for standard input) for a merchant and prints the
number of matching customers, or with `--ids` their external ids, one per line, ascending.
Exit status 0 on success, 2 on a validation error, unreadable JSON (too large, nested too
deep, not UTF-8: see the input limits in docs/segment-rules.md) or an unknown merchant, 1 if
valid rules still cannot be evaluated (the error is printed; never a traceback).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from customers.as_of import parse_as_of
from customers.models import Merchant
from segments.engine import (
    RuleValidationError,
    matching_customers,
    validate_rules,
)
from segments.rules import MAX_RULES_BYTES, load_rules_json

USAGE_ERROR = 2
EVALUATION_ERROR = 1
logger = logging.getLogger(__name__)


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
        try:
            as_of = parse_as_of(options["as_of"], merchant) if options["as_of"] else None
        except ValueError as exc:
            raise CommandError(f"--as-of: {exc}", returncode=USAGE_ERROR) from None
        try:
            data = load_rules_json(self.read_rules(options["rules"]))
            tree = validate_rules(data, merchant=merchant)
        except RuleValidationError as exc:
            raise CommandError("\n".join(exc.errors), returncode=USAGE_ERROR) from None
        try:
            customers = matching_customers(merchant=merchant, rules=tree, as_of=as_of)
            if options["ids"]:
                ids = customers.order_by("external_id").values_list("external_id", flat=True)
                for external_id in ids.iterator():
                    self.stdout.write(external_id)
            else:
                self.stdout.write(str(customers.count()))
        except (DatabaseError, ArithmeticError, ValueError, RecursionError) as exc:
            logger.warning("segment_preview could not evaluate the rules", exc_info=True)
            raise CommandError(
                f"the rules are valid but cannot be evaluated: {type(exc).__name__}: {exc}",
                returncode=EVALUATION_ERROR,
            ) from None

    def read_rules(self, name: str) -> bytes | str:
        """The rule text, read no further than the size limit (load_rules_json refuses it
        when that is reached)."""
        try:
            if name == "-":
                stream = getattr(sys.stdin, "buffer", sys.stdin)
                return stream.read(MAX_RULES_BYTES + 1)
            with open(name, "rb") as handle:
                return handle.read(MAX_RULES_BYTES + 1)
        except OSError as exc:
            raise CommandError(
                f"cannot read rules from {name}: {exc.strerror or exc}", returncode=USAGE_ERROR
            ) from None
