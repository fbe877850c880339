"""`import_files()`: one import, all or nothing, in one durable transaction."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from django.db import connection, transaction

from customers.imports import merge
from customers.imports.cells import MSG_UNKNOWN_FILE
from customers.imports.checks import check_references
from customers.imports.reading import (
    Context,
    ErrorLimitReached,
    Rollback,
    Source,
    display_name,
    phase,
    stage_file,
)
from customers.imports.report import ImportReport
from customers.imports.specs import FILE_ORDER, SPECS
from customers.imports.staging import Staging
from customers.models import (
    Merchant,
)
from customers.signals import import_completed

logger = logging.getLogger(__name__)


def import_files(
    *, merchant: Merchant, files: Mapping[str, Source], dry_run: bool = False
) -> ImportReport:
    """Import contract CSV files for `merchant`, all or nothing.

    `files` maps contract names (`branches`, `products`, `customers`, `transactions`,
    `items`, `redemptions`) to a path or a binary file object; any subset may be given.
    Returns the report: counts per file, and up to MAX_ERRORS errors. When there is any
    error nothing is written; with `dry_run` the import is validated and counted, then
    rolled back. Raises ValueError for a file name outside the contract.
    """
    unknown = sorted(set(files) - set(FILE_ORDER))
    if unknown:
        raise ValueError(MSG_UNKNOWN_FILE.format(name=unknown[0], expected=", ".join(FILE_ORDER)))
    report = ImportReport(dry_run=dry_run)
    commit_started = None
    fnames = {kind: display_name(kind, files[kind]) for kind in FILE_ORDER if kind in files}
    try:
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            # One import at a time per merchant: two would race on the same keys.
            Merchant.objects.select_for_update().filter(pk=merchant.pk).exists()
            staging = Staging(cursor)
            if staging.postgres:
                # Hash joins and aggregates over millions of staged rows stay in memory.
                staging.execute("SET LOCAL work_mem = '256MB'")
            ctx = Context(merchant, staging, report)
            try:
                for kind in FILE_ORDER:
                    if kind in files:
                        with phase(f"read {kind}"):
                            report.counts[kind] = stage_file(ctx, SPECS[kind], files[kind])
                with phase("check references"):
                    check_references(ctx, fnames)
            except ErrorLimitReached:
                pass
            report.tags_created = ctx.tags.created
            report.tiers_created = ctx.tiers.created
            if not report.ok:
                raise Rollback
            merge.merge_all(ctx, dry_run)
            if dry_run:
                raise Rollback
            staging.drop_all()
            # In the import's transaction: its webhook message commits with it or not at all.
            import_completed.send(sender=ImportReport, merchant_id=merchant.pk, report=report)
            # Deferred foreign-key checks run at commit: time it as a phase of its own.
            commit_started = time.monotonic()
    except Rollback:
        pass
    if commit_started is not None:
        logger.debug("import phase commit: %.2f s", time.monotonic() - commit_started)
    order = {kind: i for i, kind in enumerate(FILE_ORDER)}
    by_name = {name: order[kind] for kind, name in fnames.items()}
    report.errors.sort(key=lambda e: (by_name.get(e.file, 0), e.line))
    return report
