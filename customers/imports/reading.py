"""Reading a file: streamed line by line, each row validated cell by cell and staged in
batches, with its physical line number; errors collected up to the limit."""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from customers.imports.cells import (
    MSG_BAD_CSV,
    MSG_EMPTY_FILE,
    MSG_FIELD_COUNT,
    MSG_MISSING_COLUMN,
    MSG_NOT_UTF8,
    MSG_NUL,
    MSG_REPEATED_COLUMN,
    MSG_REQUIRED,
    MSG_TAG_TOO_LONG,
    MSG_TOO_LONG,
    MSG_UNKNOWN_COLUMN,
    CellError,
    Converter,
    Names,
    quoted,
)
from customers.imports.checks import check_duplicates
from customers.imports.report import MAX_ERRORS, FileCounts, ImportIssue, ImportReport
from customers.imports.specs import TAGS_TABLE, Column, FileSpec
from customers.imports.staging import Staging
from customers.models import (
    Merchant,
    Tag,
    Tier,
)

logger = logging.getLogger(__name__)

#: Rows staged per COPY / executemany round trip.
BATCH_SIZE = 10_000


Source = str | os.PathLike[str] | IO[bytes]


class ErrorLimitReached(Exception):
    """More than MAX_ERRORS errors: stop reading."""


class Rollback(Exception):
    """Raised inside the atomic block to undo everything (errors or dry run)."""


class RowConverters:
    """What the columns' converters need of a merchant: its time zone and its tag and tier
    names (created on first use). The import's `Context` is one; a single row written
    elsewhere (the API's customer upsert) makes its own."""

    def __init__(self, merchant: Merchant) -> None:
        self.merchant = merchant
        self.tags = Names(Tag, merchant)
        self.tiers = Names(Tier, merchant)

    def convert_tags(self, raw: str) -> tuple[int, ...]:
        seen: dict[str, int] = {}
        for part in raw.split(";"):
            name = part.strip()
            if not name or name.lower() in seen:
                continue
            if len(name) > 100:
                raise CellError(MSG_TAG_TOO_LONG.format(value=quoted(name), max_length=100))
            seen[name.lower()] = self.tags.resolve(name)
        return tuple(seen.values())

    def convert_tier(self, raw: str) -> int:
        if len(raw) > 100:
            raise CellError(MSG_TOO_LONG.format(value=quoted(raw), max_length=100))
        return self.tiers.resolve(raw)


def convert_cells(
    columns: Sequence[tuple[Column, int, Converter]], cells: Sequence[str]
) -> tuple[list[Any], list[tuple[str, str]]]:
    """One row's cells, validated and converted the contract's way: each column's cell
    (at its position in `cells`; -1: the column is absent, as if empty) stripped, empty
    means "not given" (None; an error when the column is required), NUL refused, then the
    column's converter. Returns the values in column order (None where not given or bad)
    and the errors as (column, message). Runs once per imported row: kept lean."""
    values: list[Any] = []
    errors: list[tuple[str, str]] = []
    append = values.append
    for column, position, convert in columns:
        raw = cells[position].strip() if position >= 0 else ""
        if not raw:
            if column.required:
                errors.append((column.name, MSG_REQUIRED))
            append(None)
        elif "\x00" in raw:
            # PostgreSQL's text cannot hold NUL: refused here, with its place.
            errors.append((column.name, MSG_NUL))
            append(None)
        else:
            try:
                append(convert(raw))
            except CellError as exc:
                errors.append((column.name, str(exc)))
                append(None)
    return values, errors


class Context(RowConverters):
    """The state of one import run."""

    def __init__(self, merchant: Merchant, staging: Staging, report: ImportReport) -> None:
        super().__init__(merchant)
        self.mid = int(merchant.pk)  # inlined in SQL: an integer from the database
        self.staging = staging
        self.report = report
        self.staged: set[str] = set()  # files staged without header errors
        self.pending_tags: list[tuple[str, int]] = []

    def error(self, file: str, line: int, column: str, message: str) -> None:
        if len(self.report.errors) >= MAX_ERRORS:
            self.report.truncated = True
            raise ErrorLimitReached
        self.report.errors.append(ImportIssue(file, line, column, message))

    def remaining_errors(self) -> int:
        """How many more errors to fetch (one more than room left, to detect truncation)."""
        return MAX_ERRORS - len(self.report.errors) + 1


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Log the wall time of one phase (the benchmark reads these lines)."""
    started = time.monotonic()
    yield
    logger.debug("import phase %s: %.2f s", name, time.monotonic() - started)


@contextmanager
def _open_text(source: Source) -> Iterator[Iterator[str]]:
    """The source's lines as text: UTF-8, an optional BOM dropped.

    Each line is decoded on its own (rather than through a TextIOWrapper, which decodes
    blocks), so a byte that is not UTF-8 is reported on the line that holds it.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as binary:
            yield _decoded_lines(binary)
        return
    yield _decoded_lines(source)  # the caller owns the file and closes it


def _decoded_lines(binary: IO[bytes]) -> Iterator[str]:
    first = True
    for raw in binary:
        if first:
            first = False
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        yield raw.decode("utf-8")


def display_name(kind: str, source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    name = getattr(source, "name", None)
    return Path(name).name if isinstance(name, str) and name else f"{kind}.csv"


def _read_header(ctx: Context, spec: FileSpec, fname: str, header: list[str]) -> list[int]:
    """Check the header; returns, per column of the spec, its index in the row (-1: absent)."""
    names = [h.strip() for h in header]
    known = {c.name for c in spec.columns}
    ok = True
    for i, name in enumerate(names):
        if name not in known:
            expected = ", ".join(c.name for c in spec.columns)
            ctx.error(fname, 1, name, MSG_UNKNOWN_COLUMN.format(file=spec.name, expected=expected))
            ok = False
        elif name in names[:i]:
            ctx.error(fname, 1, name, MSG_REPEATED_COLUMN)
            ok = False
    for column in spec.columns:
        if column.required and column.name not in names:
            ctx.error(fname, 1, column.name, MSG_MISSING_COLUMN)
            ok = False
    if not ok:
        return []
    return [names.index(c.name) if c.name in names else -1 for c in spec.columns]


def stage_file(ctx: Context, spec: FileSpec, source: Source) -> FileCounts:
    """Read, validate and stage one file; returns its counts (rows read so far)."""
    counts = FileCounts(spec.name)
    fname = display_name(spec.name, source)
    staging = ctx.staging
    staged_columns = [("line", "int")] + [(c.name, c.sql_type) for c in spec.columns]
    staging.create(spec.table, staged_columns)
    if spec.name == "customers":
        staging.create(TAGS_TABLE, [("external_id", "text"), ("tag_id", "int")])
    converters = [c.converter(ctx) for c in spec.columns]
    key_position = next((i for i, c in enumerate(spec.columns) if c.name == spec.key), None)
    tags_position = next((i for i, c in enumerate(spec.columns) if c.name == "tags"), None)
    batch: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[Any, ...]] = []

    def flush() -> None:
        staging.load(spec.table, staged_columns, batch)
        batch.clear()
        if tag_rows:
            staging.load(TAGS_TABLE, [("external_id", "text"), ("tag_id", "int")], tag_rows)
            tag_rows.clear()

    line = 1
    with _open_text(source) as text:
        reader = csv.reader(text)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            ctx.error(fname, 1, "", _read_failure(exc))
            return counts
        if header is None or not any(cell.strip() for cell in header):
            ctx.error(fname, 1, "", MSG_EMPTY_FILE)
            return counts
        positions = _read_header(ctx, spec, fname, header)
        if not positions:
            return counts
        width = len(header)
        columns = list(zip(spec.columns, positions, converters, strict=True))
        previous = reader.line_num
        while True:
            try:
                cells = next(reader, None)
            except (UnicodeDecodeError, csv.Error) as exc:
                ctx.error(fname, previous + 1, "", _read_failure(exc))
                break
            if cells is None:
                break
            # A row may span several physical lines (quoted newlines): report its first.
            line = previous + 1
            previous = reader.line_num
            if not "".join(cells).strip():
                continue  # blank lines are not rows
            counts.rows += 1
            if len(cells) != width:
                ctx.error(fname, line, "", MSG_FIELD_COUNT.format(found=len(cells), expected=width))
                continue
            values, errors = convert_cells(columns, cells)
            row: list[Any] = [line, *values]
            for column_name, message in errors:
                ctx.error(fname, line, column_name, message)
            if errors:
                # Keep the key of a bad row, so references to it do not fail as well; the
                # import is rolled back anyway.
                if key_position is None or row[key_position + 1] is None:
                    continue
                row = [line] + [
                    row[i + 1] if i == key_position else None for i in range(len(spec.columns))
                ]
            elif tags_position is not None and row[tags_position + 1] is not None:
                external_id = row[key_position + 1] if key_position is not None else None
                tag_rows.extend((external_id, tag_id) for tag_id in row[tags_position + 1])
                row[tags_position + 1] = True
            batch.append(tuple(row))
            if len(batch) >= BATCH_SIZE:
                flush()
    flush()
    if spec.key:
        staging.index(spec.table, spec.key)
    if spec.name == "customers":
        staging.index(TAGS_TABLE, "external_id, tag_id")
    if staging.postgres:
        staging.analyze(spec.table)
        if spec.name == "customers":
            staging.analyze(TAGS_TABLE)
    ctx.staged.add(spec.name)
    check_duplicates(ctx, spec, fname)
    return counts


def _read_failure(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return MSG_NOT_UTF8.format(reason=exc.reason)
    return MSG_BAD_CSV.format(reason=exc)
