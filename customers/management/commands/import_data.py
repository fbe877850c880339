"""`manage.py import_data --merchant SLUG [--customers F ...] [--dry-run]`.

Imports contract CSV files (docs/import.md). Exit status: 0 when imported (or when a dry run
found no error), 2 on bad input (the errors go to stderr) or an unknown merchant, 75 when the
database stayed busy with another writer past the wait (nothing written: run it again).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError

from customers.imports import FILE_ORDER, MAX_ERRORS, import_files
from customers.metrics import vacuum_segment_tables
from customers.models import Merchant
from customers.portal.middleware import is_database_busy

MSG_UNKNOWN_MERCHANT = 'No merchant with the slug "{slug}".'
MSG_NO_FILES = "Give at least one file, e.g. --customers customers.csv."
MSG_MISSING_FILE = "{option}: no such file: {path}"
MSG_BUSY = (
    "The database is busy with another writer (an import or a refresh) and stayed so past "
    "the wait: nothing was written. Run the import again."
)
#: EX_TEMPFAIL: a temporary failure, the same command may succeed when run again.
EXIT_BUSY = 75


class Command(BaseCommand):
    help = "Import merchant data from the contract's CSV files, all or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", required=True, help="The merchant's slug.")
        for kind in FILE_ORDER:
            parser.add_argument(f"--{kind}", metavar="FILE", help=f"The {kind} CSV file.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate and count, then roll back: nothing is written.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = Merchant.objects.filter(slug=options["merchant"]).first()
        if merchant is None:
            raise CommandError(MSG_UNKNOWN_MERCHANT.format(slug=options["merchant"]), returncode=2)
        files: dict[str, Path] = {}
        for kind in FILE_ORDER:
            if options.get(kind):
                path = Path(options[kind])
                if not path.is_file():
                    raise CommandError(
                        MSG_MISSING_FILE.format(option=f"--{kind}", path=path), returncode=2
                    )
                files[kind] = path
        if not files:
            raise CommandError(MSG_NO_FILES, returncode=2)

        if options["verbosity"] >= 2:
            # The wall time of each phase (read, check, merge, metrics, commit).
            logging.getLogger("customers.imports").setLevel(logging.DEBUG)
        started = time.monotonic()
        try:
            report = import_files(merchant=merchant, files=files, dry_run=options["dry_run"])
        except OperationalError as exc:
            if not is_database_busy(exc):
                raise
            raise CommandError(MSG_BUSY, returncode=EXIT_BUSY) from None
        elapsed = time.monotonic() - started

        for counts in report.counts.values():
            self.stdout.write(counts.summary())
        if not report.ok:
            for issue in report.errors:
                self.stderr.write(str(issue))
            more = f" (showing the first {MAX_ERRORS})" if report.truncated else ""
            self.stderr.write(f"Import failed{more}: nothing was written.")
            sys.exit(2)
        if report.tags_created or report.tiers_created:
            self.stdout.write(
                f"tags created: {report.tags_created}, tiers created: {report.tiers_created}"
            )
        if not report.dry_run:
            vacuum_segment_tables()
        verb = "Dry run OK, nothing written" if report.dry_run else "Imported"
        self.stdout.write(self.style.SUCCESS(f"{verb} for {merchant.slug} in {elapsed:.1f} s."))
