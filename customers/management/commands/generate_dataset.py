"""`generate_dataset`: a synthetic merchant of any size, into the database or as CSV files.

    python manage.py generate_dataset --merchant bench-1m --customers 1000000 [--seed 7]
    python manage.py generate_dataset --merchant acme --customers 500 --csv /tmp/acme

The process is the one `seed_demo` uses (`customers.synthetic`). Into the database it runs
in one transaction (COPY on PostgreSQL) and refreshes the customers' metrics before commit;
with `--csv` it writes the import contract's files and touches no database rows.
"""

from __future__ import annotations

import resource
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from customers.metrics import vacuum_segment_tables
from customers.models import Merchant, validate_time_zone
from customers.synthetic import PROFILES, SyntheticDataset
from customers.synthetic_writers import (
    Counts,
    MerchantHasCustomers,
    Progress,
    write_csv,
    write_to_database,
)


class Command(BaseCommand):
    help = (
        "Generate a synthetic merchant (branches, products, customers with three years of "
        "purchases, refunds and redemptions) into the database, or as contract CSV files."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", required=True, help="merchant slug (created if missing)")
        parser.add_argument("--customers", type=int, required=True, help="number of customers")
        parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        parser.add_argument("--csv", metavar="DIR", help="write CSV files here instead")
        parser.add_argument("--name", help="merchant name for a new merchant")
        parser.add_argument(
            "--time-zone",
            default="America/Toronto",
            help="time zone of a new merchant, and of the opening hours (default America/Toronto)",
        )
        parser.add_argument("--currency", default="CAD", help="currency of a new merchant")
        parser.add_argument("--profile", choices=sorted(PROFILES), default="dispensary")
        parser.add_argument("--branches", type=int, default=3, help="number of branches (1-5)")
        parser.add_argument(
            "--now", help="end of the history, ISO 8601 with offset (default: the current time)"
        )
        parser.add_argument("--chunk-size", type=int, default=5000, help="customers per chunk")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["customers"] < 0:
            raise CommandError("--customers must be >= 0")
        now: datetime | None = None
        if options["now"]:
            now = parse_datetime(options["now"])
            if now is None or now.tzinfo is None:
                raise CommandError("--now must be an ISO 8601 timestamp with an offset")
        slug: str = options["merchant"]
        merchant = Merchant.objects.filter(slug=slug).first()
        time_zone = merchant.time_zone if merchant else options["time_zone"]
        try:
            validate_time_zone(time_zone)
            dataset = SyntheticDataset(
                customers=options["customers"],
                seed=options["seed"],
                now=now,
                time_zone=time_zone,
                profile=options["profile"],
                branch_count=options["branches"],
            )
        except Exception as exc:  # ValueError, ValidationError: bad options
            raise CommandError(str(exc)) from exc

        started = time.perf_counter()
        progress = self._progress(options["customers"], started, options["verbosity"])
        if options["csv"]:
            directory = Path(options["csv"])
            counts = write_csv(
                dataset, directory, chunk_size=options["chunk_size"], progress=progress
            )
            where = f"CSV files in {directory}"
        else:
            if merchant is None:
                merchant = Merchant(
                    slug=slug,
                    name=options["name"] or slug.replace("-", " ").title(),
                    time_zone=time_zone,
                    currency=options["currency"],
                )
                merchant.full_clean()
                merchant.save()
                self.stdout.write(f'Created merchant "{merchant.name}" ({slug}, {time_zone}).')
            try:
                counts = write_to_database(
                    dataset, merchant, chunk_size=options["chunk_size"], progress=progress
                )
            except MerchantHasCustomers as exc:
                raise CommandError(str(exc)) from exc
            vacuum_segment_tables()
            where = f'merchant "{slug}"'
        elapsed = time.perf_counter() - started
        rows = sum(counts.values())
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {where} in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s):")
        )
        for table, count in counts.items():
            self.stdout.write(f"  {table}: {count}")
        self.stdout.write(f"  peak RSS: {peak_mb:.0f} MB")

    def _progress(self, total: int, started: float, verbosity: int) -> Progress:
        """A callback printing progress every ~10% of customers (verbosity >= 2 every chunk)."""
        step = max(total // 10, 1)
        next_report = [step]

        def report(counts: Counts) -> None:
            done = counts["customers"]
            if verbosity >= 2 or (verbosity >= 1 and done >= next_report[0] and done < total):
                next_report[0] = done + step
                self.stdout.write(
                    f"  {done:,}/{total:,} customers, {time.perf_counter() - started:.0f} s",
                )

        return report
