"""The CSV import of a merchant's data (contract: `shared/spec/import-format.md`, version 1).

One service, `import_files()`, serves both `manage.py import_data` and the upload page.

How it works, and why:

1. Each file is streamed (never read whole), row by row; every cell is validated in Python
   and the typed row is staged, with its physical line number, into a TEMPORARY table in
   batches (PostgreSQL: `COPY ... FROM STDIN`; SQLite: `executemany`). Memory therefore
   does not grow with file size: no Python structure holds one entry per row.
2. Duplicate keys and references (customer, transaction, product, branch) are checked by
   SQL over the staging tables and the merchant's stored rows, so the line numbers of
   offending rows come back without a dictionary of millions of keys in Python.
3. When everything is valid, set-based statements merge staging into the real tables:
   `UPDATE ... FROM` for existing keys, only where `(old) IS DISTINCT FROM (new)` (SQLite:
   `IS NOT` on row values), then `INSERT ... SELECT ... WHERE NOT EXISTS` for new keys. An
   unchanged row is never rewritten, so importing the same files twice changes nothing.
4. Per-customer metrics are recomputed for the customers touched (the whole merchant when
   many), inside the same transaction, so readers never see rows without their metrics.

Everything runs in one `transaction.atomic()`: when any row is bad, or on a dry run, the
block is rolled back and nothing is written (tags and tiers created while reading included).

Rules that the contract leaves open, decided here (and documented in docs/import.md):

- An empty cell in an optional column means "not given": a new row takes the default, an
  existing row keeps its stored value. Booleans: empty is false for a new row.
- Items have no key: the lines of a transaction in the items file REPLACE that transaction's
  stored line items as a set (multiset). A transaction whose lines are the same is left
  alone; a transaction absent from the items file keeps its lines.
- A non-empty `tags` cell replaces the customer's tag set (`;` alone clears it); tags match
  existing ones case-insensitively, new ones are created with the spelling first seen.
  `tier` matches by name case-insensitively and is created (rank 0) when new.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone

from customers.metrics import refresh_merchant_metrics, refresh_metrics
from customers.models import (
    Branch,
    Customer,
    CustomerTag,
    LineItem,
    Merchant,
    Product,
    Redemption,
    Tag,
    Tier,
    Transaction,
)

#: The contract's files, in the order they are imported (each may refer to the earlier ones).
FILE_ORDER: tuple[str, ...] = (
    "branches",
    "products",
    "customers",
    "transactions",
    "items",
    "redemptions",
)
MAX_ERRORS = 50
#: Rows staged per COPY / executemany round trip.
BATCH_SIZE = 10_000
#: Above this many staged customers + transactions + redemptions, the metrics of the whole
#: merchant are recomputed in one statement rather than customer by customer.
MERCHANT_REFRESH_THRESHOLD = 20_000
#: PostgreSQL: a merge of at least this many rows refreshes the planner statistics of the
#: tables it reads and writes first (see `_analyze`).
ANALYZE_THRESHOLD = 5_000

# Error messages (the part after "file line N, column C: ").
MSG_REQUIRED = "is required"
MSG_TOO_LONG = "{value} is longer than {max_length} characters"
MSG_BAD_TIMESTAMP = "{value} is not an ISO 8601 timestamp (e.g. 2024-05-31T14:30:00)"
MSG_TIMESTAMP_RANGE = (
    "{value} is out of range (timestamps lie between 0001-01-02 and 9999-12-30 UTC)"
)
MSG_NUL = "contains a NUL character (\\u0000), which cannot be stored"
MSG_BAD_DATE = "{value} is not an ISO date (e.g. 1990-05-31)"
MSG_BAD_BOOLEAN = "{value} is not a boolean (true/false, 1/0, yes/no)"
MSG_BAD_MONEY = "{value} is not an amount (e.g. 12.50)"
MSG_NEGATIVE_MONEY = "{value} is negative"
MSG_MONEY_DECIMALS = "{value} has more than two decimals"
MSG_MONEY_TOO_LARGE = "{value} is too large"
MSG_BAD_INTEGER = "{value} is not a whole number of {minimum} or more"
MSG_INTEGER_TOO_LARGE = "{value} is too large"
MSG_BAD_GENDER = "{value} is not a gender (female, male, other, or empty)"
MSG_BAD_KIND = "{value} is not a transaction kind (purchase or refund)"
MSG_BAD_EMAIL = "{value} is not a valid email address"
MSG_BAD_PHONE = "{value} is not a valid phone number (7 to 15 digits)"
MSG_TAG_TOO_LONG = "tag {value} is longer than {max_length} characters"
MSG_DUPLICATE_KEY = "{value} appears more than once (first on line {first_line})"
MSG_MISSING_REFERENCE = "{what} {value} does not exist (neither in this import nor stored)"
MSG_UNKNOWN_COLUMN = "unknown column (the {file} file has: {expected})"
MSG_MISSING_COLUMN = "required column is missing"
MSG_REPEATED_COLUMN = "column appears more than once in the header"
MSG_EMPTY_FILE = "the file is empty (a header row is required)"
MSG_FIELD_COUNT = "the row has {found} fields, the header has {expected}"
MSG_NOT_UTF8 = "the file is not UTF-8 text ({reason})"
MSG_BAD_CSV = "the row is not valid CSV ({reason})"
MSG_UNKNOWN_FILE = "unknown import file {name!r} (expected one of: {expected})"

_MONEY_RE = re.compile(r"(-)?(\d+)(?:\.(\d*))?")
_PLAIN_MONEY_RE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{0,2})?")
_PHONE_RE = re.compile(r"\+?[\d\s\-.()]+")
_INT_MAX = 2_147_483_647  # PositiveIntegerField is a 4-byte integer on PostgreSQL.
_MONEY_INTEGER_DIGITS = 12  # DecimalField(max_digits=14, decimal_places=2)
_CENT = Decimal("0.01")
#: Timestamps every time zone can show (years 1 to 9999 with a day to spare at each end).
_FIRST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
_LAST_INSTANT = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
logger = logging.getLogger(__name__)

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_GENDERS = frozenset({"female", "male", "other"})
_KINDS = frozenset({"purchase", "refund"})


# --- The report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportIssue:
    """One error: where it is (file, physical line, column) and what is wrong."""

    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


@dataclass
class FileCounts:
    """What one file did. For `items`: `updated` is the transactions whose lines were
    replaced, `unchanged` the transactions whose lines were already the same, and
    `lines_written` the line items inserted; `created` stays 0."""

    file: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    lines_written: int = 0

    @property
    def is_items(self) -> bool:
        return self.file == "items"

    def summary(self) -> str:
        if self.is_items:
            return (
                f"{self.file}: {self.rows} rows read, {self.updated} transactions replaced, "
                f"{self.unchanged} unchanged, {self.lines_written} lines written"
            )
        return (
            f"{self.file}: {self.rows} rows read, {self.created} created, "
            f"{self.updated} updated, {self.unchanged} unchanged"
        )


@dataclass
class ImportReport:
    """The outcome of `import_files()`. `ok` is False when any error was found, in which
    case nothing was written; `dry_run` imports roll back even when `ok`."""

    dry_run: bool
    counts: dict[str, FileCounts] = field(default_factory=dict)
    errors: list[ImportIssue] = field(default_factory=list)
    #: True when more errors existed than the MAX_ERRORS reported.
    truncated: bool = False
    tags_created: int = 0
    tiers_created: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def written(self) -> bool:
        return self.ok and not self.dry_run


# --- Cell converters -------------------------------------------------------------------------


class _CellError(Exception):
    """A cell's value is invalid; the message is the user-facing reason."""


def _q(raw: str) -> str:
    """The value quoted for an error message (long values shortened, control characters
    escaped)."""
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    shown = "".join(f"\\u{ord(c):04x}" if ord(c) < 32 else c for c in shown)
    return '"' + shown.replace('"', '\\"') + '"'


Converter = Callable[[str], Any]


def _text(max_length: int) -> Converter:
    def convert(raw: str) -> str:
        if len(raw) > max_length:
            raise _CellError(MSG_TOO_LONG.format(value=_q(raw), max_length=max_length))
        return raw

    return convert


def _timestamp(tz: ZoneInfo) -> Converter:
    def convert(raw: str) -> datetime:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise _CellError(MSG_BAD_TIMESTAMP.format(value=_q(raw))) from None
        if value.tzinfo is None:
            # The contract: a timestamp without an offset is merchant-local time.
            value = value.replace(tzinfo=tz)
        try:
            utc = value.astimezone(UTC)
        except OverflowError:  # its UTC instant falls outside years 1 to 9999
            raise _CellError(MSG_TIMESTAMP_RANGE.format(value=_q(raw))) from None
        # A day to spare at each end: every page shows it in some time zone.
        if not _FIRST_INSTANT <= utc <= _LAST_INSTANT:
            raise _CellError(MSG_TIMESTAMP_RANGE.format(value=_q(raw)))
        return value

    return convert


def _date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _CellError(MSG_BAD_DATE.format(value=_q(raw))) from None


def _boolean(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.lower()]
    except KeyError:
        raise _CellError(MSG_BAD_BOOLEAN.format(value=_q(raw))) from None


def _money(raw: str) -> str:
    """A valid amount, as the text of a Decimal with two places (staged as numeric)."""
    if _PLAIN_MONEY_RE.fullmatch(raw):
        return raw  # the common case, on millions of rows: no Decimal round trip
    # A strict pattern instead of Decimal() alone, which would also take "1e3", "1_000", "NaN".
    match = _MONEY_RE.fullmatch(raw)
    if match is None:
        raise _CellError(MSG_BAD_MONEY.format(value=_q(raw)))
    sign, whole, fraction = match.groups()
    if sign and (whole.strip("0") or (fraction or "").strip("0")):
        raise _CellError(MSG_NEGATIVE_MONEY.format(value=_q(raw)))
    if fraction and len(fraction.rstrip("0")) > 2:
        raise _CellError(MSG_MONEY_DECIMALS.format(value=_q(raw)))
    if len(whole.lstrip("0")) > _MONEY_INTEGER_DIGITS:
        raise _CellError(MSG_MONEY_TOO_LARGE.format(value=_q(raw)))
    return str(Decimal(f"{whole}.{(fraction or '')[:2]}").quantize(_CENT))


def _integer(minimum: int) -> Converter:
    def convert(raw: str) -> int:
        if not raw.isdigit() or not raw.isascii() or (value := int(raw)) < minimum:
            raise _CellError(MSG_BAD_INTEGER.format(value=_q(raw), minimum=minimum))
        if value > _INT_MAX:
            raise _CellError(MSG_INTEGER_TOO_LARGE.format(value=_q(raw)))
        return value

    return convert


def _gender(raw: str) -> str:
    value = raw.lower()
    if value not in _GENDERS:
        raise _CellError(MSG_BAD_GENDER.format(value=_q(raw)))
    return value


def _kind(raw: str) -> str:
    value = raw.lower()
    if value not in _KINDS:
        raise _CellError(MSG_BAD_KIND.format(value=_q(raw)))
    return value


def _email(raw: str) -> str:
    try:
        validate_email(raw)
    except ValidationError:
        raise _CellError(MSG_BAD_EMAIL.format(value=_q(raw))) from None
    return raw


def _phone(raw: str) -> str:
    digits = sum(ch.isdigit() for ch in raw)
    if len(raw) > 32 or _PHONE_RE.fullmatch(raw) is None or not 7 <= digits <= 15:
        raise _CellError(MSG_BAD_PHONE.format(value=_q(raw)))
    return raw


class _Names:
    """Tags or tiers of the merchant, by lower-cased name, created on first use.

    The vocabulary of names is small (not one entry per row), so it lives in Python; matching
    with `str.lower()` is Unicode-aware, unlike SQLite's `lower()`.
    """

    def __init__(self, model: type[Tag] | type[Tier], merchant: Merchant) -> None:
        self.model = model
        self.merchant = merchant
        self.ids: dict[str, int] = {
            name.lower(): pk
            for pk, name in model._default_manager.filter(merchant=merchant).values_list(
                "pk", "name"
            )
        }
        self.created = 0

    def resolve(self, name: str) -> int:
        key = name.lower()
        pk = self.ids.get(key)
        if pk is None:
            pk = self.model._default_manager.create(merchant=self.merchant, name=name).pk
            self.ids[key] = pk
            self.created += 1
        return pk


# --- The files of the contract ---------------------------------------------------------------

# Staged column types: converter output -> (PostgreSQL type, SQLite type). The SQLite types
# give staging columns the same affinity as Django's columns, so values compare equal.
_SQL_TYPES: dict[str, tuple[str, str]] = {
    "text": ("text", "text"),
    "int": ("bigint", "integer"),
    "money": ("numeric(14,2)", "decimal"),
    "ts": ("timestamptz", "datetime"),
    "date": ("date", "date"),
    "bool": ("boolean", "bool"),
}


@dataclass(frozen=True)
class _Column:
    name: str
    sql_type: str  # a key of _SQL_TYPES
    required: bool = False
    #: Builds the converter; gets the import context for merchant-dependent converters.
    converter: Callable[[_Context], Converter] = lambda ctx: _text(100)


def _fixed(converter: Converter) -> Callable[[_Context], Converter]:
    return lambda ctx: converter


def _text_col(name: str, max_length: int, required: bool = False) -> _Column:
    return _Column(name, "text", required, _fixed(_text(max_length)))


def _ts_col(name: str, required: bool = False) -> _Column:
    return _Column(name, "ts", required, lambda ctx: _timestamp(ctx.merchant.tzinfo))


def _int_col(name: str, required: bool = False, minimum: int = 0) -> _Column:
    return _Column(name, "int", required, _fixed(_integer(minimum)))


@dataclass(frozen=True)
class _FileSpec:
    name: str
    columns: tuple[_Column, ...]
    key: str | None

    @property
    def table(self) -> str:
        return f"sp_imp_{self.name}"

    def column(self, name: str) -> _Column:
        return next(c for c in self.columns if c.name == name)


SPECS: dict[str, _FileSpec] = {
    spec.name: spec
    for spec in (
        _FileSpec(
            "branches",
            (_text_col("code", 64, required=True), _text_col("name", 200, required=True)),
            key="code",
        ),
        _FileSpec(
            "products",
            (
                _text_col("sku", 100, required=True),
                _text_col("name", 200, required=True),
                _text_col("product_type", 100),
                _text_col("brand", 100),
                _text_col("category", 100),
                _Column("price", "money", False, _fixed(_money)),
            ),
            key="sku",
        ),
        _FileSpec(
            "customers",
            (
                _text_col("external_id", 100, required=True),
                _text_col("first_name", 100),
                _text_col("last_name", 100),
                _Column("email", "text", False, _fixed(_email)),
                _Column("phone", "text", False, _fixed(_phone)),
                _Column("gender", "text", False, _fixed(_gender)),
                _Column("birth_date", "date", False, _fixed(_date)),
                _text_col("customer_type", 100),
                # Staged as "a tags cell was given"; the tag ids go to a side table.
                _Column("tags", "bool", False, lambda ctx: ctx.convert_tags),
                # Staged as the tier's id (tiers are created while reading).
                _Column("tier", "int", False, lambda ctx: ctx.convert_tier),
                _ts_col("joined_at", required=True),
                _text_col("home_branch", 64),
                _Column("email_opt_in", "bool", False, _fixed(_boolean)),
                _Column("sms_opt_in", "bool", False, _fixed(_boolean)),
                _Column("push_opt_in", "bool", False, _fixed(_boolean)),
                _int_col("points_balance"),
                _int_col("lifetime_points"),
                _ts_col("last_contacted_at"),
            ),
            key="external_id",
        ),
        _FileSpec(
            "transactions",
            (
                _text_col("external_id", 100, required=True),
                _text_col("customer_external_id", 100, required=True),
                _ts_col("occurred_at", required=True),
                _Column("kind", "text", False, _fixed(_kind)),
                _Column("total", "money", True, _fixed(_money)),
                _text_col("branch", 64),
                _int_col("points_earned"),
                _int_col("points_redeemed"),
            ),
            key="external_id",
        ),
        _FileSpec(
            "items",
            (
                _text_col("transaction_external_id", 100, required=True),
                _text_col("sku", 100, required=True),
                _int_col("quantity", required=True, minimum=1),
                _Column("amount", "money", True, _fixed(_money)),
            ),
            key=None,
        ),
        _FileSpec(
            "redemptions",
            (
                _text_col("external_id", 100, required=True),
                _text_col("customer_external_id", 100, required=True),
                _text_col("reward", 200, required=True),
                _int_col("points"),
                _ts_col("redeemed_at", required=True),
            ),
            key="external_id",
        ),
    )
}

#: The contract's column names per file, in contract order (the generator writes these).
CONTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(column.name for column in spec.columns) for name, spec in SPECS.items()
}

# (file, column, referenced file, referenced model, its key column, what it is called)
_REFERENCES: tuple[tuple[str, str, str, type[Any], str, str], ...] = (
    ("customers", "home_branch", "branches", Branch, "code", "branch"),
    ("transactions", "customer_external_id", "customers", Customer, "external_id", "customer"),
    ("transactions", "branch", "branches", Branch, "code", "branch"),
    ("items", "transaction_external_id", "transactions", Transaction, "external_id", "transaction"),
    ("items", "sku", "products", Product, "sku", "product"),
    ("redemptions", "customer_external_id", "customers", Customer, "external_id", "customer"),
)

_TAGS_TABLE = "sp_imp_customer_tags"


# --- The database side -----------------------------------------------------------------------


class _Staging:
    """Temporary tables and the statements over them, for PostgreSQL or SQLite."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.postgres = connection.vendor == "postgresql"
        self.distinct = "IS DISTINCT FROM" if self.postgres else "IS NOT"
        self.tables: list[str] = []

    def execute(self, sql: str, params: list[Any] | None = None) -> int:
        self.cursor.execute(sql, params)
        return max(self.cursor.rowcount, 0)

    def fetchall(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        self.cursor.execute(sql, params)
        return list(self.cursor.fetchall())

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        self.cursor.execute(sql, params)
        row = self.cursor.fetchone()
        return row[0] if row else None

    def create(self, table: str, columns: list[tuple[str, str]]) -> None:
        """A temporary table; `columns` are (name, key of _SQL_TYPES)."""
        which = 0 if self.postgres else 1
        cols = ", ".join(f"{name} {_SQL_TYPES[kind][which]}" for name, kind in columns)
        self.execute(f"DROP TABLE IF EXISTS {table}")
        self.execute(f"CREATE TEMPORARY TABLE {table} ({cols})")
        self.tables.append(table)

    def load(self, table: str, columns: list[tuple[str, str]], rows: list[tuple[Any, ...]]) -> None:
        """Append a batch of rows (values as the converters return them)."""
        if not rows:
            return
        names = ", ".join(name for name, _ in columns)
        if self.postgres:
            # TRICKY: the Django cursor wraps psycopg's; COPY is only on the raw cursor.
            with self.cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        adapters = [_sqlite_adapter(kind) for _, kind in columns]
        adapted = [
            tuple(v if v is None else a(v) for a, v in zip(adapters, row, strict=True))
            for row in rows
        ]
        placeholders = ", ".join(["%s"] * len(columns))
        # The wrapped cursor, not Django's: no per-batch query logging under DEBUG.
        self.cursor.cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders})", adapted
        )

    def index(self, table: str, columns: str) -> None:
        name = f"{table}_{columns.replace(', ', '_')}_idx"
        self.execute(f"CREATE INDEX {name} ON {table} ({columns})")

    def analyze(self, table: str) -> None:
        # Autovacuum never analyzes temporary tables; without statistics the planner would
        # guess a tiny table and pick nested loops over millions of rows.
        self.execute(f"ANALYZE {table}")

    def drop_all(self) -> None:
        for table in reversed(self.tables):
            self.execute(f"DROP TABLE IF EXISTS {table}")
        self.tables.clear()


def _sqlite_adapter(kind: str) -> Callable[[Any], Any]:
    """How Django stores a value of this kind in SQLite, so staged values compare equal."""
    if kind == "ts":
        return lambda v: connection.ops.adapt_datetimefield_value(v)
    if kind == "date":
        return lambda v: v.isoformat()
    if kind == "money":
        return str
    if kind == "bool":
        return int
    return lambda v: v


# --- Reading ---------------------------------------------------------------------------------


Source = str | os.PathLike[str] | IO[bytes]


class _ErrorLimitReached(Exception):
    """More than MAX_ERRORS errors: stop reading."""


class _Rollback(Exception):
    """Raised inside the atomic block to undo everything (errors or dry run)."""


class _Context:
    """The state of one import run."""

    def __init__(self, merchant: Merchant, staging: _Staging, report: ImportReport) -> None:
        self.merchant = merchant
        self.mid = int(merchant.pk)  # inlined in SQL: an integer from the database
        self.staging = staging
        self.report = report
        self.tags = _Names(Tag, merchant)
        self.tiers = _Names(Tier, merchant)
        self.staged: set[str] = set()  # files staged without header errors
        self.pending_tags: list[tuple[str, int]] = []

    def error(self, file: str, line: int, column: str, message: str) -> None:
        if len(self.report.errors) >= MAX_ERRORS:
            self.report.truncated = True
            raise _ErrorLimitReached
        self.report.errors.append(ImportIssue(file, line, column, message))

    def remaining_errors(self) -> int:
        """How many more errors to fetch (one more than room left, to detect truncation)."""
        return MAX_ERRORS - len(self.report.errors) + 1

    def convert_tags(self, raw: str) -> tuple[int, ...]:
        seen: dict[str, int] = {}
        for part in raw.split(";"):
            name = part.strip()
            if not name or name.lower() in seen:
                continue
            if len(name) > 100:
                raise _CellError(MSG_TAG_TOO_LONG.format(value=_q(name), max_length=100))
            seen[name.lower()] = self.tags.resolve(name)
        return tuple(seen.values())

    def convert_tier(self, raw: str) -> int:
        if len(raw) > 100:
            raise _CellError(MSG_TOO_LONG.format(value=_q(raw), max_length=100))
        return self.tiers.resolve(raw)


@contextmanager
def _phase(name: str) -> Iterator[None]:
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


def _display_name(kind: str, source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    name = getattr(source, "name", None)
    return Path(name).name if isinstance(name, str) and name else f"{kind}.csv"


def _read_header(ctx: _Context, spec: _FileSpec, fname: str, header: list[str]) -> list[int]:
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


def _stage_file(ctx: _Context, spec: _FileSpec, source: Source) -> FileCounts:
    """Read, validate and stage one file; returns its counts (rows read so far)."""
    counts = FileCounts(spec.name)
    fname = _display_name(spec.name, source)
    staging = ctx.staging
    staged_columns = [("line", "int")] + [(c.name, c.sql_type) for c in spec.columns]
    staging.create(spec.table, staged_columns)
    if spec.name == "customers":
        staging.create(_TAGS_TABLE, [("external_id", "text"), ("tag_id", "int")])
    converters = [c.converter(ctx) for c in spec.columns]
    key_position = next((i for i, c in enumerate(spec.columns) if c.name == spec.key), None)
    tags_position = next((i for i, c in enumerate(spec.columns) if c.name == "tags"), None)
    batch: list[tuple[Any, ...]] = []
    tag_rows: list[tuple[Any, ...]] = []

    def flush() -> None:
        staging.load(spec.table, staged_columns, batch)
        batch.clear()
        if tag_rows:
            staging.load(_TAGS_TABLE, [("external_id", "text"), ("tag_id", "int")], tag_rows)
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
            row: list[Any] = [line]
            bad = False
            for column, position, convert in columns:
                raw = cells[position].strip() if position >= 0 else ""
                if "\x00" in raw:
                    # PostgreSQL's text cannot hold NUL: refused here, with its place.
                    ctx.error(fname, line, column.name, MSG_NUL)
                    bad = True
                    row.append(None)
                    continue
                if not raw:
                    if column.required:
                        ctx.error(fname, line, column.name, MSG_REQUIRED)
                        bad = True
                    row.append(None)
                    continue
                try:
                    row.append(convert(raw))
                except _CellError as exc:
                    ctx.error(fname, line, column.name, str(exc))
                    bad = True
                    row.append(None)
            if bad:
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
        staging.index(_TAGS_TABLE, "external_id, tag_id")
    if staging.postgres:
        staging.analyze(spec.table)
        if spec.name == "customers":
            staging.analyze(_TAGS_TABLE)
    ctx.staged.add(spec.name)
    _check_duplicates(ctx, spec, fname)
    return counts


def _read_failure(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return MSG_NOT_UTF8.format(reason=exc.reason)
    return MSG_BAD_CSV.format(reason=exc)


def _check_duplicates(ctx: _Context, spec: _FileSpec, fname: str) -> None:
    if spec.key is None:
        return
    rows = ctx.staging.fetchall(
        f"""
        SELECT line, k, first_line FROM (
            SELECT line, {spec.key} AS k, MIN(line) OVER (PARTITION BY {spec.key}) AS first_line
            FROM {spec.table} WHERE {spec.key} IS NOT NULL
        ) x WHERE line > first_line ORDER BY line LIMIT {ctx.remaining_errors()}
        """
    )
    for line, key, first_line in rows:
        ctx.error(
            fname, line, spec.key, MSG_DUPLICATE_KEY.format(value=_q(key), first_line=first_line)
        )


def _check_references(ctx: _Context, fnames: dict[str, str]) -> None:
    """Every reference must name a row of this import or a stored row of the merchant."""
    for file, column, target_file, model, target_column, what in _REFERENCES:
        if file not in ctx.staged:
            continue
        if target_file in fnames and target_file not in ctx.staged:
            continue  # the referenced file was unreadable: its errors are already reported
        in_import = ""
        if target_file in ctx.staged:
            in_import = (
                f"AND NOT EXISTS (SELECT 1 FROM {SPECS[target_file].table} x "
                f"WHERE x.{target_column} = s.{column})"
            )
        rows = ctx.staging.fetchall(
            f"""
            SELECT s.line, s.{column} FROM {SPECS[file].table} s
            WHERE s.{column} IS NOT NULL
              AND NOT EXISTS (
                SELECT 1 FROM {model._meta.db_table} t
                WHERE t.merchant_id = {ctx.mid} AND t.{target_column} = s.{column})
              {in_import}
            ORDER BY s.line LIMIT {ctx.remaining_errors()}
            """
        )
        for line, value in rows:
            ctx.error(
                fnames[file], line, column, MSG_MISSING_REFERENCE.format(what=what, value=_q(value))
            )


# --- Merging ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Merge:
    """How staged rows of one file become rows of one table.

    `columns` are (target column, value for an existing row, value for a new row); the
    expressions may use `t` (the stored row), `s` (the staged row) and the `joins`' aliases.
    Optional columns use `COALESCE(s.col, t.col)`: not given keeps the stored value.
    """

    spec: str
    model: type[Any]
    key: str
    columns: tuple[tuple[str, str, str], ...]
    joins: str = ""


def _keep(column: str, default: str, staged: str | None = None) -> tuple[str, str, str]:
    """An optional column: not given keeps the stored value, or takes `default` when new."""
    source = f"s.{staged or column}"
    return (column, f"COALESCE({source}, t.{column})", f"COALESCE({source}, {default})")


def _merges(mid: int) -> dict[str, _Merge]:
    branch_join = "LEFT JOIN {table} b ON b.merchant_id = {mid} AND b.code = s.{column}"
    customer_join = (
        f"JOIN {Customer._meta.db_table} c "
        f"ON c.merchant_id = {mid} AND c.external_id = s.customer_external_id"
    )
    branches = Branch._meta.db_table
    return {
        "branches": _Merge("branches", Branch, "code", (("name", "s.name", "s.name"),)),
        "products": _Merge(
            "products",
            Product,
            "sku",
            (
                ("name", "s.name", "s.name"),
                _keep("product_type", "''"),
                _keep("brand", "''"),
                _keep("category", "''"),
                _keep("price", "NULL"),
            ),
        ),
        "customers": _Merge(
            "customers",
            Customer,
            "external_id",
            (
                _keep("first_name", "''"),
                _keep("last_name", "''"),
                _keep("email", "''"),
                _keep("phone", "''"),
                _keep("gender", "'unspecified'"),
                _keep("birth_date", "NULL"),
                _keep("customer_type", "''"),
                _keep("tier_id", "NULL", staged="tier"),
                ("joined_at", "s.joined_at", "s.joined_at"),
                ("home_branch_id", "COALESCE(b.id, t.home_branch_id)", "b.id"),
                _keep("email_opt_in", "false"),
                _keep("sms_opt_in", "false"),
                _keep("push_opt_in", "false"),
                _keep("points_balance", "0"),
                _keep("lifetime_points", "0"),
                _keep("last_contacted_at", "NULL"),
            ),
            joins=branch_join.format(table=branches, mid=mid, column="home_branch"),
        ),
        "transactions": _Merge(
            "transactions",
            Transaction,
            "external_id",
            (
                ("customer_id", "c.id", "c.id"),
                ("occurred_at", "s.occurred_at", "s.occurred_at"),
                _keep("kind", "'purchase'"),
                ("total", "s.total", "s.total"),
                ("branch_id", "COALESCE(b.id, t.branch_id)", "b.id"),
                _keep("points_earned", "0"),
                _keep("points_redeemed", "0"),
            ),
            joins=customer_join
            + " "
            + branch_join.format(table=branches, mid=mid, column="branch"),
        ),
        "redemptions": _Merge(
            "redemptions",
            Redemption,
            "external_id",
            (
                ("customer_id", "c.id", "c.id"),
                ("reward", "s.reward", "s.reward"),
                _keep("points", "0"),
                ("redeemed_at", "s.redeemed_at", "s.redeemed_at"),
            ),
            joins=customer_join,
        ),
    }


def _changed_condition(ctx: _Context, merge: _Merge) -> str:
    current = ", ".join(f"t.{col}" for col, _, _ in merge.columns)
    incoming = ", ".join(update for _, update, _ in merge.columns)
    return f"({current}) {ctx.staging.distinct} ({incoming})"


def _merge_rows(ctx: _Context, merge: _Merge, counts: FileCounts, now: datetime) -> None:
    """Update the changed existing rows, then insert the new ones; fills the counts."""
    table = merge.model._meta.db_table
    stg = SPECS[merge.spec].table
    has_updated_at = any(f.name == "updated_at" for f in merge.model._meta.concrete_fields)
    sets = ", ".join(f"{col} = {update}" for col, update, _ in merge.columns)
    params: list[Any] = []
    if has_updated_at:
        sets += ", updated_at = %s"
        params.append(now)
    updated = ctx.staging.execute(
        f"""
        UPDATE {table} AS t SET {sets}
        FROM {stg} s {merge.joins}
        WHERE t.merchant_id = {ctx.mid} AND t.{merge.key} = s.{merge.key}
          AND {_changed_condition(ctx, merge)}
        """,
        params,
    )
    names = ["merchant_id", merge.key] + [col for col, _, _ in merge.columns]
    values = [str(ctx.mid), f"s.{merge.key}"] + [insert for _, _, insert in merge.columns]
    params = []
    for stamp in ("created_at", "updated_at"):
        if any(f.name == stamp for f in merge.model._meta.concrete_fields):
            names.append(stamp)
            values.append("%s")
            params.append(now)
    # ON CONFLICT DO NOTHING rather than NOT EXISTS: the unique index answers per row,
    # where an anti-join planned on stale statistics rescans the table being filled.
    # TRICKY: "WHERE true" lets SQLite tell the upsert's ON from a join's ON.
    created = ctx.staging.execute(
        f"""
        INSERT INTO {table} ({", ".join(names)})
        SELECT {", ".join(values)} FROM {stg} s {merge.joins}
        WHERE true ORDER BY s.line
        ON CONFLICT (merchant_id, {merge.key}) DO NOTHING
        """,
        params,
    )
    counts.created = created
    counts.updated = updated
    counts.unchanged = counts.rows - created - updated


def _merge_customers(ctx: _Context, merge: _Merge, counts: FileCounts, now: datetime) -> None:
    """Customers: rows as any file, plus the tag sets (which count as an update too)."""
    stg = SPECS["customers"].table
    customer_tags = CustomerTag._meta.db_table
    # A non-empty tags cell whose set differs from the stored one (either direction).
    tags_differ = f"""
        s.tags IS NOT NULL AND (
          EXISTS (SELECT 1 FROM {_TAGS_TABLE} st
                  WHERE st.external_id = s.external_id AND NOT EXISTS (
                      SELECT 1 FROM {customer_tags} ct
                      WHERE ct.customer_id = t.id AND ct.tag_id = st.tag_id))
          OR EXISTS (SELECT 1 FROM {customer_tags} ct
                     WHERE ct.customer_id = t.id AND NOT EXISTS (
                         SELECT 1 FROM {_TAGS_TABLE} st
                         WHERE st.external_id = s.external_id AND st.tag_id = ct.tag_id)))
    """
    # Counted before writing: a customer whose only change is its tags is "updated" too.
    existing, changed = ctx.staging.fetchall(
        f"""
        SELECT COUNT(t.id),
               SUM(CASE WHEN t.id IS NOT NULL
                         AND ({_changed_condition(ctx, merge)} OR {tags_differ})
                        THEN 1 ELSE 0 END)
        FROM {stg} s
        LEFT JOIN {Customer._meta.db_table} t
          ON t.merchant_id = {ctx.mid} AND t.external_id = s.external_id
        {merge.joins}
        """
    )[0]
    _merge_rows(ctx, merge, counts, now)
    if ctx.staging.postgres and counts.created >= ANALYZE_THRESHOLD:
        ctx.staging.analyze(Customer._meta.db_table)  # the tag statements join the new rows
    counts.created = counts.rows - (existing or 0)
    counts.updated = changed or 0
    counts.unchanged = counts.rows - counts.created - counts.updated

    given = f"""
        SELECT c.id FROM {stg} s JOIN {Customer._meta.db_table} c
          ON c.merchant_id = {ctx.mid} AND c.external_id = s.external_id
        WHERE s.tags IS NOT NULL
    """
    ctx.staging.execute(
        f"""
        DELETE FROM {customer_tags}
        WHERE customer_id IN ({given})
          AND NOT EXISTS (
            SELECT 1 FROM {_TAGS_TABLE} st JOIN {Customer._meta.db_table} c
              ON c.merchant_id = {ctx.mid} AND c.external_id = st.external_id
            WHERE c.id = {customer_tags}.customer_id AND st.tag_id = {customer_tags}.tag_id)
        """
    )
    ctx.staging.execute(
        f"""
        INSERT INTO {customer_tags} (customer_id, tag_id)
        SELECT c.id, st.tag_id FROM {_TAGS_TABLE} st JOIN {Customer._meta.db_table} c
          ON c.merchant_id = {ctx.mid} AND c.external_id = st.external_id
        WHERE true ON CONFLICT (customer_id, tag_id) DO NOTHING
        """
    )


def _merge_items(ctx: _Context, counts: FileCounts) -> None:
    """Replace the line items of each transaction named in the items file, when they differ.

    The comparison is of multisets of (product, quantity, amount), so the same lines in
    another order leave the transaction alone.
    """
    staging = ctx.staging
    line_items = LineItem._meta.db_table
    items = SPECS["items"].table
    resolved, txns, changed = "sp_imp_items_resolved", "sp_imp_item_txns", "sp_imp_item_changed"
    resolve = f"""
        FROM {items} s
        JOIN {Transaction._meta.db_table} t
          ON t.merchant_id = {ctx.mid} AND t.external_id = s.transaction_external_id
        JOIN {Product._meta.db_table} p ON p.merchant_id = {ctx.mid} AND p.sku = s.sku
    """
    columns = "transaction_id, product_id, quantity, amount"
    stored = staging.scalar(
        f"""
        SELECT 1 FROM {line_items} l JOIN {Transaction._meta.db_table} t ON t.id = l.transaction_id
        WHERE t.merchant_id = {ctx.mid}
          AND t.external_id IN (SELECT transaction_external_id FROM {items})
        LIMIT 1
        """
    )
    if not stored:
        # The common first import: no stored lines to compare with, so every transaction
        # gets its lines, straight from staging (no intermediate table of millions of rows).
        total = staging.scalar(f"SELECT COUNT(DISTINCT transaction_external_id) FROM {items}")
        written = staging.execute(
            f"INSERT INTO {line_items} ({columns}) "
            f"SELECT t.id, p.id, s.quantity, s.amount {resolve}"
        )
        counts.updated = total or 0
        counts.unchanged = 0
        counts.lines_written = written
        return

    staging.create(
        resolved,
        [
            ("line", "int"),
            ("txn_id", "int"),
            ("product_id", "int"),
            ("quantity", "int"),
            ("amount", "money"),
        ],
    )
    staging.execute(
        f"INSERT INTO {resolved} (line, txn_id, product_id, quantity, amount) "
        f"SELECT s.line, t.id, p.id, s.quantity, s.amount {resolve}"
    )
    staging.create(txns, [("txn_id", "int")])
    total = staging.execute(f"INSERT INTO {txns} (txn_id) SELECT DISTINCT txn_id FROM {resolved}")
    staging.index(txns, "txn_id")
    if staging.postgres:
        staging.analyze(resolved)
        staging.analyze(txns)
    incoming = (
        f"SELECT txn_id, product_id, quantity, amount, COUNT(*) AS n FROM {resolved} "
        "GROUP BY txn_id, product_id, quantity, amount"
    )
    current = (
        f"SELECT transaction_id, product_id, quantity, amount, COUNT(*) AS n "
        f"FROM {line_items} WHERE transaction_id IN (SELECT txn_id FROM {txns}) "
        "GROUP BY transaction_id, product_id, quantity, amount"
    )
    staging.create(changed, [("txn_id", "int")])
    # TRICKY: SQLite has no parenthesised compound SELECTs, hence the derived tables.
    replaced = staging.execute(
        f"""
        INSERT INTO {changed} (txn_id)
        SELECT DISTINCT txn_id FROM (
            SELECT txn_id FROM (
                SELECT * FROM ({incoming}) a EXCEPT SELECT * FROM ({current}) b) d1
            UNION ALL
            SELECT transaction_id FROM (
                SELECT * FROM ({current}) c EXCEPT SELECT * FROM ({incoming}) e) d2
        ) d
        """
    )
    staging.index(changed, "txn_id")
    staging.execute(
        f"DELETE FROM {line_items} WHERE transaction_id IN (SELECT txn_id FROM {changed})"
    )
    written = staging.execute(
        f"INSERT INTO {line_items} ({columns}) "
        f"SELECT txn_id, product_id, quantity, amount FROM {resolved} "
        f"WHERE txn_id IN (SELECT txn_id FROM {changed}) ORDER BY line"
    )
    counts.updated = replaced
    counts.unchanged = total - replaced
    counts.lines_written = written


def _touched_customers(ctx: _Context, before: bool) -> None:
    """Collect the customers whose metrics may change into a temporary table.

    Before the merge: the stored owners of the transactions and redemptions being imported
    (a transaction may move to another customer). After: their new owners, the owners of
    the transactions whose line items are imported, and every imported customer (new ones
    need a row; the others' profile is copied to it).
    """
    staging = ctx.staging
    touched = "sp_imp_touched"
    if before:
        staging.create(touched, [("customer_id", "int")])
    for file, model in (("transactions", Transaction), ("redemptions", Redemption)):
        if file not in ctx.staged:
            continue
        stg = SPECS[file].table
        if before:
            staging.execute(
                f"INSERT INTO {touched} SELECT t.customer_id FROM {model._meta.db_table} t "
                f"JOIN {stg} s ON t.merchant_id = {ctx.mid} AND t.external_id = s.external_id"
            )
        else:
            staging.execute(
                f"INSERT INTO {touched} SELECT c.id FROM {stg} s "
                f"JOIN {Customer._meta.db_table} c "
                f"ON c.merchant_id = {ctx.mid} AND c.external_id = s.customer_external_id"
            )
    if not before and "items" in ctx.staged:
        # Line items change their customer's product stats.
        staging.execute(
            f"INSERT INTO {touched} SELECT t.customer_id FROM {SPECS['items'].table} s "
            f"JOIN {Transaction._meta.db_table} t "
            f"ON t.merchant_id = {ctx.mid} AND t.external_id = s.transaction_external_id"
        )
    if not before and "customers" in ctx.staged:
        staging.execute(
            f"INSERT INTO {touched} SELECT c.id FROM {SPECS['customers'].table} s "
            f"JOIN {Customer._meta.db_table} c "
            f"ON c.merchant_id = {ctx.mid} AND c.external_id = s.external_id"
        )


#: The stored tables each merge reads (joins, anti-joins) besides its own.
_MERGE_READS: dict[str, tuple[type[Any], ...]] = {
    "branches": (Branch,),
    "products": (Product,),
    "customers": (Customer, CustomerTag),
    "transactions": (Transaction, Customer),
    "items": (LineItem, Transaction),
    "redemptions": (Redemption, Customer),
}


def _analyze(ctx: _Context, file: str) -> None:
    """Refresh the statistics of the tables a big merge reads.

    TRICKY: a table just filled (by this import, or by one a minute ago that autovacuum has
    not analyzed yet) still looks empty to the planner, which then picks nested loops over
    sequential scans: a re-import of 100,000 transactions took minutes instead of seconds.
    ANALYZE counts the rows this transaction inserted, and samples only 30,000 rows.
    """
    if not ctx.staging.postgres or ctx.report.counts[file].rows < ANALYZE_THRESHOLD:
        return
    for model in _MERGE_READS[file]:
        ctx.staging.analyze(model._meta.db_table)


def _merge_all(ctx: _Context, dry_run: bool) -> None:
    now = timezone.now()
    merges = _merges(ctx.mid)
    counts = ctx.report.counts
    many = sum(
        counts[f].rows for f in ("customers", "transactions", "items", "redemptions") if f in counts
    )
    per_customer = not dry_run and many <= MERCHANT_REFRESH_THRESHOLD
    if per_customer:
        _touched_customers(ctx, before=True)
    for file in FILE_ORDER:
        if file not in ctx.staged:
            continue
        with _phase(f"merge {file}"):
            _analyze(ctx, file)
            if file == "items":
                _merge_items(ctx, counts[file])
            elif file == "customers":
                _merge_customers(ctx, merges[file], counts[file], now)
            else:
                _merge_rows(ctx, merges[file], counts[file], now)
    if dry_run:
        return  # rolled back: the metrics would be thrown away
    with _phase("metrics"):
        if per_customer:
            _touched_customers(ctx, before=False)
            ids = [
                row[0]
                for row in ctx.staging.fetchall("SELECT DISTINCT customer_id FROM sp_imp_touched")
            ]
            refresh_metrics(ids)
        else:
            refresh_merchant_metrics(ctx.mid)


# --- The service -----------------------------------------------------------------------------


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
    fnames = {kind: _display_name(kind, files[kind]) for kind in FILE_ORDER if kind in files}
    try:
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            # One import at a time per merchant: two would race on the same keys.
            Merchant.objects.select_for_update().filter(pk=merchant.pk).exists()
            staging = _Staging(cursor)
            if staging.postgres:
                # Hash joins and aggregates over millions of staged rows stay in memory.
                staging.execute("SET LOCAL work_mem = '256MB'")
            ctx = _Context(merchant, staging, report)
            try:
                for kind in FILE_ORDER:
                    if kind in files:
                        with _phase(f"read {kind}"):
                            report.counts[kind] = _stage_file(ctx, SPECS[kind], files[kind])
                with _phase("check references"):
                    _check_references(ctx, fnames)
            except _ErrorLimitReached:
                pass
            report.tags_created = ctx.tags.created
            report.tiers_created = ctx.tiers.created
            if not report.ok:
                raise _Rollback
            _merge_all(ctx, dry_run)
            if dry_run:
                raise _Rollback
            staging.drop_all()
            # Deferred foreign-key checks run at commit: time it as a phase of its own.
            commit_started = time.monotonic()
    except _Rollback:
        pass
    if commit_started is not None:
        logger.debug("import phase commit: %.2f s", time.monotonic() - commit_started)
    order = {kind: i for i, kind in enumerate(FILE_ORDER)}
    by_name = {name: order[kind] for kind, name in fnames.items()}
    report.errors.sort(key=lambda e: (by_name.get(e.file, 0), e.line))
    return report


# --- Uploaded files awaiting confirmation ----------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def upload_root() -> Path:
    """Where uploads wait between the preview and the confirmation (`var/imports/`)."""
    root = getattr(settings, "IMPORT_UPLOAD_ROOT", None)
    return Path(root) if root else Path(settings.BASE_DIR) / "var" / "imports"


def upload_store(files: Mapping[str, IO[bytes]]) -> str:
    """Save uploaded contract files under a new random token; returns the token."""
    token = secrets.token_urlsafe(24)
    directory = upload_root() / token
    directory.mkdir(parents=True)
    for kind, upload in files.items():
        if kind not in FILE_ORDER:
            raise ValueError(MSG_UNKNOWN_FILE.format(name=kind, expected=", ".join(FILE_ORDER)))
        with open(directory / f"{kind}.csv", "wb") as out:
            chunks = getattr(upload, "chunks", None)
            if chunks is not None:
                for chunk in chunks():
                    out.write(chunk)
            else:
                shutil.copyfileobj(upload, out)
    return token


def upload_paths(token: str) -> dict[str, Path]:
    """The stored files of an upload, by contract name (empty when the token is unknown)."""
    if not _TOKEN_RE.fullmatch(token):
        return {}
    directory = upload_root() / token
    return {
        kind: directory / f"{kind}.csv"
        for kind in FILE_ORDER
        if (directory / f"{kind}.csv").is_file()
    }


def upload_discard(token: str) -> None:
    """Delete an upload's files (after the import, or when it is cancelled)."""
    if _TOKEN_RE.fullmatch(token):
        shutil.rmtree(upload_root() / token, ignore_errors=True)
