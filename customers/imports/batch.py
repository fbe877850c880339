"""`transactions_write()`: a batch of transactions with their line items, written the
import's way (the API's `POST /transactions`).

The batch is not a file, but every step after reading is the import's own: each row's
cells go through `convert_cells` with the contract's converters and are staged in the
import's temporary tables, then `check_references` and `merge.merge_all` run as for an
import of a transactions file and an items file. So the rules are the import's: an
existing external id with other content is updated, items given for a transaction replace
its stored lines as a set, and the customers touched get one `customer_metrics_refresh`
(one announcement) in the same durable transaction; a batch of only new transactions gets
`customer_metrics_add` instead, which adds them to the stored rows by delta (PostgreSQL).
All or nothing: any error and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from customers.imports import merge
from customers.imports.cells import quoted
from customers.imports.checks import check_references
from customers.imports.reading import Context, Rollback, convert_cells
from customers.imports.report import FileCounts, ImportIssue, ImportReport
from customers.imports.specs import SPECS, FileSpec
from customers.imports.staging import Staging
from customers.models import LineItem, Merchant, Transaction

MSG_REPEATED_IN_BATCH = "{value} appears more than once in the batch (first at {first})"
#: The import's reference message names the import; a batch has only stored rows to name.
_IN_IMPORT = " (neither in this import nor stored)"

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"

Cells = Mapping[str, str | None]


@dataclass(frozen=True)
class BatchTransaction:
    """One transaction as the contract's cells (text; None: not given), and its line items
    (the items file's cells without `transaction_external_id`); None or empty keeps the
    stored lines, as a transaction absent from the items file does."""

    cells: Cells
    items: Sequence[Cells] | None = None


@dataclass
class BatchResult:
    """Per transaction, in batch order: `created`, `updated` or `unchanged` (empty when
    there are errors). `errors`: (transaction index, item index or None, column, message)."""

    statuses: list[str] = field(default_factory=list)
    errors: list[tuple[int, int | None, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class _BatchContext(Context):
    """The import's context without its error limit: a batch reports every error."""

    def error(self, file: str, line: int, column: str, message: str) -> None:
        self.report.errors.append(ImportIssue(file, line, column, message))

    def remaining_errors(self) -> int:
        return 1_000_000


def _stage(ctx: Context, spec: FileSpec, rows: Sequence[tuple[int, Cells]]) -> None:
    """Validate and stage rows as `reading.stage_file` stages a file's (`line`: the row's
    number, which errors carry); a bad row keeps only its key, so references to it do not
    fail as well."""
    staged_columns = [("line", "int")] + [(c.name, c.sql_type) for c in spec.columns]
    ctx.staging.create(spec.table, staged_columns)
    columns = [(column, i, column.converter(ctx)) for i, column in enumerate(spec.columns)]
    key = next((i for i, c in enumerate(spec.columns) if c.name == spec.key), None)
    batch: list[tuple[Any, ...]] = []
    for line, cells in rows:
        values, errors = convert_cells(columns, [cells.get(c.name) or "" for c in spec.columns])
        for column_name, message in errors:
            ctx.error(spec.name, line, column_name, message)
        if errors:
            if key is None or values[key] is None:
                continue
            values = [value if i == key else None for i, value in enumerate(values)]
        batch.append((line, *values))
    ctx.staging.load(spec.table, staged_columns, batch)
    if spec.key:
        ctx.staging.index(spec.table, spec.key)
    ctx.report.counts[spec.name] = FileCounts(spec.name, rows=len(rows))
    ctx.staged.add(spec.name)


def _snapshot(ctx: Context) -> dict[str, tuple[Any, ...]]:
    """The stored content of the batch's transactions (with their lines, as a multiset) by
    external id: compared before and after the merge, it says what the merge changed."""
    staged = f"SELECT external_id FROM {SPECS['transactions'].table}"
    where = f"t.merchant_id = {ctx.mid} AND t.external_id IN ({staged})"
    lines: dict[str, list[tuple[Any, ...]]] = {}
    for external_id, *line in ctx.staging.fetchall(
        f"SELECT t.external_id, l.product_id, l.quantity, l.amount "
        f"FROM {LineItem._meta.db_table} l JOIN {Transaction._meta.db_table} t "
        f"ON t.id = l.transaction_id WHERE {where}"
    ):
        lines.setdefault(external_id, []).append(tuple(line))
    return {
        external_id: (*row, tuple(sorted(lines.get(external_id, []))))
        for external_id, *row in ctx.staging.fetchall(
            f"SELECT t.external_id, t.customer_id, t.occurred_at, t.kind, t.total, t.branch_id, "
            f"t.points_earned, t.points_redeemed FROM {Transaction._meta.db_table} t "
            f"WHERE {where}"
        )
    }


def transactions_write(
    *, merchant: Merchant, transactions: Sequence[BatchTransaction]
) -> BatchResult:
    """Write a batch of the merchant's transactions and line items, all or nothing.

    Rows are validated by the import's converters and checks (customers, branches and
    products must be the merchant's stored ones); an external id twice in the batch is an
    error. Idempotent by external id: a stored transaction with the same content (and the
    same lines, when items are given) is `unchanged`, one with other content is `updated`
    (as the import updates a changed row), a new one `created`. When nothing would change,
    nothing is written (not even the metrics). Returns the statuses, or the errors.
    """
    result = BatchResult()
    first_at: dict[str, int] = {}
    for i, row in enumerate(transactions):
        external_id = (row.cells.get("external_id") or "").strip()
        if external_id and external_id in first_at:
            result.errors.append(
                (
                    i,
                    None,
                    "external_id",
                    MSG_REPEATED_IN_BATCH.format(
                        value=quoted(external_id), first=f"transactions.{first_at[external_id]}"
                    ),
                )
            )
        first_at.setdefault(external_id, i)
    item_rows: list[tuple[int, Cells]] = []
    item_at: list[tuple[int, int]] = []  # item row number -> (transaction, item)
    for i, row in enumerate(transactions):
        for j, item in enumerate(row.items or ()):
            item_at.append((i, j))
            cells = {**item, "transaction_external_id": row.cells.get("external_id")}
            item_rows.append((len(item_rows), cells))
    try:
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            ctx = _BatchContext(merchant, Staging(cursor), ImportReport(dry_run=False))
            _stage(ctx, SPECS["transactions"], list(enumerate(r.cells for r in transactions)))
            if item_rows:
                _stage(ctx, SPECS["items"], item_rows)
            check_references(ctx, {name: name for name in ctx.staged})
            for issue in ctx.report.errors:
                if issue.column == "transaction_external_id":
                    continue  # the item's transaction: its own external id's error says it
                at: tuple[int, int | None] = (
                    item_at[issue.line] if issue.file == "items" else (issue.line, None)
                )
                message = issue.message.replace(_IN_IMPORT, "")
                result.errors.append((*at, issue.column, message))
            if result.errors:
                raise Rollback
            # One import (or batch) at a time per merchant: two would race on the same keys.
            # Taken only now: the rows are staged (in this session's temporary tables) and
            # checked against stored rows no write removes, so batches of one merchant
            # overlap in that part and wait only for the merge and what follows it.
            Merchant.objects.select_for_update().filter(pk=merchant.pk).exists()
            before = _snapshot(ctx)
            # Only new transactions (the usual batch): their customers' rows follow by
            # delta instead of recomputing every buyer's history.
            merge.merge_all(ctx, dry_run=False, only_new_transactions=not before)
            after = _snapshot(ctx) if before else {}  # all new: all created
            for row in transactions:
                external_id = str(row.cells["external_id"]).strip()
                stored = before.get(external_id)
                status = CREATED if stored is None else UNCHANGED
                if stored is not None and stored != after[external_id]:
                    status = UPDATED
                result.statuses.append(status)
            if all(status == UNCHANGED for status in result.statuses):
                # A repeated batch: the merge wrote nothing, so the metrics refresh and its
                # announcement are undone too.
                raise Rollback
            ctx.staging.drop_all()
    except Rollback:
        pass
    result.errors.sort(key=lambda e: (e[0], -1 if e[1] is None else e[1]))
    return result
