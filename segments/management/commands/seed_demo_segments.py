"""`manage.py seed_demo_segments [--merchant demo] [--if-empty] [--weeks 12]`

Gives a demo merchant the template segments and a hand-picked call list, filled, with a
weekly size history for their charts (`segments/demo.py`). `make run` calls it after
`seed_demo`. Refuses a merchant that has segments already, unless `--if-empty`, which then
does nothing.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.models import Merchant
from segments.demo import seed_segments
from segments.models import Segment

DEMO_MERCHANT = "demo"
DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Give a demo merchant its segments, filled, with a size history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", default=DEMO_MERCHANT, help="merchant slug")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing if it has segments already"
        )
        parser.add_argument("--weeks", type=int, default=12, help="weeks of size history")

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = Merchant.objects.filter(slug=options["merchant"]).first()
        if merchant is None:
            raise CommandError(f'unknown merchant "{options["merchant"]}" (run seed_demo first)')
        if options["weeks"] < 0:
            raise CommandError("--weeks must be >= 0")
        if Segment.objects.filter(merchant=merchant).exists():
            if options["if_empty"]:
                self.stdout.write(f'"{merchant.name}" has segments already; nothing to do.')
                return
            raise CommandError(
                f'"{merchant.name}" has segments already; use --if-empty to keep them.'
            )
        user = get_user_model().objects.filter(username=DEMO_USERNAME).first()
        started = time.perf_counter()
        segments = seed_segments(merchant=merchant, user=user, weeks=options["weeks"])
        self.stdout.write(
            self.style.SUCCESS(
                f'{len(segments)} segments for "{merchant.name}" in '
                f"{time.perf_counter() - started:.1f} s:"
            )
        )
        for segment in segments:
            segment.refresh_from_db(fields=["member_count"])
            self.stdout.write(f"  {segment.name}: {segment.member_count:,} members")
