"""Downloads of a segment's members as CSV or XLSX, streamed with flat memory.

A download is one row per member of one segment, ordered by external id, with the columns
the user chose from `MEMBER_COLUMNS` (customer fields, the member's `since`, the customer's
purchase metrics and tags). Every download reads only the segment's memberships whose
customer belongs to the segment's merchant: the merchant filter is in the SQL itself, not
only in the view that looked the segment up (see `_copy_sql` and `_member_rows`).

Two ways to produce CSV, with the same columns, cells and order:

- On PostgreSQL, `COPY (SELECT ...) TO STDOUT`: the server formats every cell (formula
  neutralisation, merchant-local timestamps, plain decimals) and the rows are passed on in
  chunks as they arrive. Python row by row reaches about half the speed at a million rows.
- Elsewhere (SQLite, the embedded database, holds small merchants), the rows are read with
  a chunked iterator and written with the `csv` module.

XLSX is written row by row by openpyxl in write-only mode into a temporary file, which is
then streamed: a zip archive cannot be sent before it is complete, but memory stays flat.

Cells are text-safe for spreadsheets: text starting with a character a spreadsheet reads as
a formula gets a leading `'`, by the rule of `customers.portal.tables.neutralise_formula`
(a phone number in E.164 form, `+` then digits, is data and is left as it is).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import Aggregate, CharField, F, OuterRef, QuerySet, Subquery, Value
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from customers.models import CustomerTag
from customers.portal.tables import E164_PATTERN, FORMULA_PREFIXES, neutralise_formula
from segments.models import Segment, SegmentMembership

Kind = Literal["text", "tags", "datetime", "date", "money", "number", "bool"]

FORMATS: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
#: Bytes handed to the web server at a time: large enough that per-chunk costs vanish.
CHUNK_BYTES = 128 * 1024
#: Rows fetched at a time by the Python paths (one round trip each).
FETCH_ROWS = 5000
#: PostgreSQL's `work_mem` for a download's COPY (per sort or hash, per process; a hash may
#: use twice this): at a million members, the default 4MB spills both joins and the sort to
#: disk, and the download takes a fifth longer. Paid only while a download's query runs.
COPY_WORK_MEM = "128MB"
#: An XLSX sheet holds at most 1,048,576 rows, the header included.
XLSX_MAX_MEMBERS = 1_048_575
#: Joins tag names before they are sorted in Python; no tag name contains it.
TAG_SEPARATOR = "\x1f"

#: Who a download can be narrowed to (`reachable=`): customers who opted in to the channel
#: and, for email and SMS, have an address or number to send to. Key: (label, opt-in
#: field, contact field or "").
REACHABLE: dict[str, tuple[str, str, str]] = {
    "email": ("by email", "email_opt_in", "email"),
    "sms": ("by SMS", "sms_opt_in", "phone"),
    "push": ("by push", "push_opt_in", ""),
}

UNKNOWN_COLUMN = 'Unknown column "{key}". Choose from: {choices}.'
UNKNOWN_REACHABLE = 'Unknown channel "{key}". Choose email, sms or push (or none for everyone).'
UNKNOWN_FORMAT = 'Unknown download format "{fmt}". Choose csv or xlsx.'
TOO_MANY_FOR_XLSX = (
    "This segment has {count:,} members; an XLSX sheet holds at most {limit:,} rows. "
    "Download CSV instead."
)


@dataclass(frozen=True)
class MemberColumn:
    """One downloadable column.

    `sql` reads the raw value in the COPY query, over the aliases `sm` (membership), `c`
    (customer) and the optional `join` (`m` metrics, `t` tier, `b` home branch); `lookup`
    reads the same value from a `SegmentMembership` through the ORM. `kind` decides how the
    value is written, identically by both paths.
    """

    key: str
    label: str
    kind: Kind
    sql: str
    lookup: str
    join: str = ""

    def header(self, currency: str) -> str:
        # The currency goes in the header, so money cells stay plain numbers.
        return f"{self.label} ({currency})" if self.kind == "money" else self.label


#: The customer's tag names, sorted by code point (as Python sorts them) and joined by ";".
_TAGS_SQL = (
    "(SELECT string_agg(tg.name, ';' ORDER BY tg.name COLLATE \"C\") "
    "FROM customers_customertag ct JOIN customers_tag tg ON tg.id = ct.tag_id "
    "WHERE ct.customer_id = c.id AND tg.merchant_id = c.merchant_id)"
)


_COLUMNS = [
    MemberColumn("external_id", "External id", "text", "c.external_id", "customer__external_id"),
    MemberColumn("first_name", "First name", "text", "c.first_name", "customer__first_name"),
    MemberColumn("last_name", "Last name", "text", "c.last_name", "customer__last_name"),
    MemberColumn("email", "Email", "text", "c.email", "customer__email"),
    MemberColumn("phone", "Phone", "text", "c.phone", "customer__phone"),
    MemberColumn("gender", "Gender", "text", "c.gender", "customer__gender"),
    MemberColumn("birth_date", "Birth date", "date", "c.birth_date", "customer__birth_date"),
    MemberColumn(
        "customer_type", "Customer type", "text", "c.customer_type", "customer__customer_type"
    ),
    MemberColumn("tier", "Tier", "text", "t.name", "customer__tier__name", join="t"),
    MemberColumn(
        "home_branch", "Home branch", "text", "b.code", "customer__home_branch__code", join="b"
    ),
    MemberColumn("tags", "Tags", "tags", _TAGS_SQL, "tag_names"),
    MemberColumn("joined_at", "Joined at", "datetime", "c.joined_at", "customer__joined_at"),
    MemberColumn("since", "Member since", "datetime", "sm.since", "since"),
    MemberColumn(
        "email_opt_in", "Email opt-in", "bool", "c.email_opt_in", "customer__email_opt_in"
    ),
    MemberColumn("sms_opt_in", "SMS opt-in", "bool", "c.sms_opt_in", "customer__sms_opt_in"),
    MemberColumn("push_opt_in", "Push opt-in", "bool", "c.push_opt_in", "customer__push_opt_in"),
    MemberColumn(
        "points_balance", "Points balance", "number", "c.points_balance", "customer__points_balance"
    ),
    MemberColumn(
        "lifetime_points",
        "Lifetime points",
        "number",
        "c.lifetime_points",
        "customer__lifetime_points",
    ),
    MemberColumn(
        "last_contacted_at",
        "Last contacted at",
        "datetime",
        "c.last_contacted_at",
        "customer__last_contacted_at",
    ),
    MemberColumn(
        "orders_count", "Orders", "number", "m.orders_count", "customer__metrics__orders_count", "m"
    ),
    MemberColumn(
        "net_spend", "Net spend", "money", "m.net_spend", "customer__metrics__net_spend", "m"
    ),
    MemberColumn(
        "avg_order_value",
        "Average order",
        "money",
        "m.avg_order_value",
        "customer__metrics__avg_order_value",
        "m",
    ),
    MemberColumn(
        "first_purchase_at",
        "First purchase at",
        "datetime",
        "m.first_purchase_at",
        "customer__metrics__first_purchase_at",
        "m",
    ),
    MemberColumn(
        "last_purchase_at",
        "Last purchase at",
        "datetime",
        "m.last_purchase_at",
        "customer__metrics__last_purchase_at",
        "m",
    ),
]

#: The downloadable columns by key, in the order the column picker lists them.
MEMBER_COLUMNS: dict[str, MemberColumn] = {column.key: column for column in _COLUMNS}
#: What a download has when the user chose nothing.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "tier",
    "joined_at",
    "since",
    "net_spend",
    "orders_count",
    "last_purchase_at",
)

_JOINS = {
    # The merchant condition lets PostgreSQL read only this merchant's metrics rows.
    "m": (
        "LEFT JOIN customers_customermetrics m "
        "ON m.customer_id = c.id AND m.merchant_id = c.merchant_id"
    ),
    "t": "LEFT JOIN customers_tier t ON t.id = c.tier_id",
    "b": "LEFT JOIN customers_branch b ON b.id = c.home_branch_id",
}


def resolve_columns(keys: Iterable[str] | None = None) -> list[MemberColumn]:
    """The columns for the chosen keys, in the order chosen, each once; no keys -> defaults.

    Raises ValueError naming the first unknown key, so a view can show it to the user
    instead of failing halfway through a download.
    """
    chosen = list(dict.fromkeys(keys or ())) or list(DEFAULT_COLUMNS)
    for key in chosen:
        if key not in MEMBER_COLUMNS:
            raise ValueError(UNKNOWN_COLUMN.format(key=key, choices=", ".join(MEMBER_COLUMNS)))
    return [MEMBER_COLUMNS[key] for key in chosen]


def members_filename(segment: Segment, fmt: str, reachable: str | None = None) -> str:
    """`acme-vip-club-members-2026-06-15.csv`: merchant, segment and merchant-local date
    (`...-members-sms-2026-06-15.csv` when narrowed to those reachable by SMS)."""
    _check_format(fmt)
    merchant = segment.merchant
    who = f"members-{reachable}" if reachable else "members"
    return f"{merchant.slug}-{segment.slug}-{who}-{merchant.today().isoformat()}.{fmt}"


def _check_reachable(reachable: str | None) -> None:
    if reachable is not None and reachable not in REACHABLE:
        raise ValueError(UNKNOWN_REACHABLE.format(key=reachable))


def members_download_response(
    *,
    segment: Segment,
    fmt: str,
    columns: Iterable[str] | None = None,
    reachable: str | None = None,
) -> StreamingHttpResponse:
    """The streamed download of the segment's members (only those reachable on a channel
    of `REACHABLE` when given), for a view to return as it is.

    Raises ValueError (unknown format, column or channel, too many members for XLSX) before
    anything is sent, with a message for the user. The caller must have looked the segment
    up among the current merchant's segments.
    """
    _check_format(fmt)
    if fmt == "csv":
        content = stream_members_csv(segment=segment, columns=columns, reachable=reachable)
    else:
        content = stream_members_xlsx(segment=segment, columns=columns, reachable=reachable)
    response = StreamingHttpResponse(content, content_type=FORMATS[fmt])
    filename = members_filename(segment, fmt, reachable)
    response["Content-Disposition"] = (
        content_disposition_header(as_attachment=True, filename=filename) or "attachment"
    )
    # Customer data: never kept by a browser or proxy cache.
    response["Cache-Control"] = "no-store"
    return response


def stream_members_csv(
    *,
    segment: Segment,
    columns: Iterable[str] | None = None,
    reachable: str | None = None,
    use_copy: bool | None = None,
) -> Iterator[bytes]:
    """The segment's members as UTF-8 CSV (header first), in chunks of about CHUNK_BYTES.

    `use_copy` defaults to "on PostgreSQL"; False forces the Python writer (for comparing
    the two). Columns are checked now, so a ValueError comes before the first byte.
    """
    chosen = resolve_columns(columns)
    _check_reachable(reachable)
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    if use_copy:
        sql, params = _copy_sql(segment, chosen, reachable)
        return _copy_chunks(sql, params, segment.merchant.time_zone)
    return _python_csv_chunks(segment, chosen, reachable)


def stream_members_xlsx(
    *, segment: Segment, columns: Iterable[str] | None = None, reachable: str | None = None
) -> Iterator[bytes]:
    """The segment's members as an XLSX workbook of one sheet, in chunks of CHUNK_BYTES.

    Dates and times are spreadsheet dates in the merchant's time zone (spreadsheets have no
    time zones), money and counts are numbers. The workbook is complete before its first
    chunk is sent. Raises ValueError now if a column is unknown or the segment has more
    members than a sheet has rows.
    """
    chosen = resolve_columns(columns)
    _check_reachable(reachable)
    count = _members(segment, reachable).count()
    if count > XLSX_MAX_MEMBERS:
        raise ValueError(TOO_MANY_FOR_XLSX.format(count=count, limit=XLSX_MAX_MEMBERS))
    return _xlsx_chunks(segment, chosen, reachable)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(UNKNOWN_FORMAT.format(fmt=fmt))


# --- PostgreSQL: COPY ------------------------------------------------------------------------

_FORMULA_CODES = ", ".join(str(ord(prefix)) for prefix in FORMULA_PREFIXES)


def _sql_cell(kind: Kind, value: str) -> str:
    """The SQL that writes a raw value as its CSV cell, like `_csv_converter` in Python."""
    if kind in ("text", "tags"):
        # `ascii()` is the code of the first character (0 for ''): a third of the cost of a
        # regular expression at a million rows.
        return (
            f"CASE WHEN ascii({value}) IN ({_FORMULA_CODES}) AND {value} !~ '{E164_PATTERN}'"
            f" THEN '''' || {value} ELSE {value} END"
        )
    if kind == "datetime":
        # PostgreSQL's own ISO output (`2026-01-15 12:30:45-05`) in the session time zone,
        # which `_copy_chunks` sets to the merchant's: a sixth of the cost of `to_char`,
        # which took 1.6 s of a million-row download's CPU for three columns.
        return f"date_trunc('second', {value})::text"
    if kind == "date":
        return f"to_char({value}, 'YYYY-MM-DD')"
    if kind == "bool":
        return f"{value}::text"
    return value  # numbers and money: PostgreSQL writes plain decimals


def _header_sql(header: str) -> str:
    # A quoted identifier: COPY writes it as the header cell. The currency in it is the
    # merchant's setting, so quotes are doubled, and "%" too, which psycopg would read as
    # a placeholder.
    return '"' + header.replace('"', '""').replace("%", "%%") + '"'


def _copy_sql(
    segment: Segment, columns: list[MemberColumn], reachable: str | None = None
) -> tuple[str, list[Any]]:
    """`COPY (SELECT ...) TO STDOUT` of the members, and its parameters."""
    joins = " ".join(_JOINS[join] for join in sorted({c.join for c in columns if c.join}))
    currency = segment.merchant.currency
    cells = ", ".join(
        f"{_sql_cell(column.kind, column.sql)} AS {_header_sql(column.header(currency))}"
        for column in columns
    )
    # The member's customer must be the segment's merchant's: memberships are written only
    # from the merchant's own customers, and this filter keeps it so even if one were not.
    # COLLATE "C" sorts by code point, as SQLite and Python do, and is the fastest sort.
    select = (
        f"SELECT {cells} FROM segments_segmentmembership sm "
        f"JOIN customers_customer c ON c.id = sm.customer_id {joins} "
        f"WHERE sm.segment_id = %s AND c.merchant_id = %s {_reachable_sql(reachable)}"
        'ORDER BY c.external_id COLLATE "C"'
    )
    return (
        f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)",
        [segment.pk, segment.merchant_id],
    )


def _reachable_sql(reachable: str | None) -> str:
    """The COPY query's condition for `reachable` (field names from `REACHABLE` only)."""
    if reachable is None:
        return ""
    _, opt_in, contact = REACHABLE[reachable]
    return f"AND c.{opt_in} AND c.{contact} <> '' " if contact else f"AND c.{opt_in} "


def _copy_chunks(sql: str, params: list[Any], time_zone: str) -> Iterator[bytes]:
    """Run the COPY and pass its output on in chunks of about CHUNK_BYTES.

    PostgreSQL sends one message per row; they are gathered into larger chunks, so the web
    server writes to the socket a few times per megabyte rather than once per row.
    """
    buffer = bytearray()
    with transaction.atomic(), connection.cursor() as cursor:
        # Timestamps are written in the session's time zone, set for this transaction only.
        # TRICKY: without Memoize, PostgreSQL joins the tier and branch names in the parallel
        # workers, which then format the cells too; with it, it looks the names up above
        # the workers and the leader formats a million rows alone (20% slower).
        # JIT compiling the cell expressions costs more than it saves (0.1 s at 1M rows).
        # COPY_WORK_MEM keeps the joins' hash tables and the sort in memory.
        cursor.execute(
            "SELECT set_config('TimeZone', %s, true), set_config('DateStyle', 'ISO, YMD', true),"
            " set_config('enable_memoize', 'off', true), set_config('jit', 'off', true),"
            " set_config('work_mem', %s, true)",
            [time_zone, COPY_WORK_MEM],
        )
        # The psycopg 3 cursor under Django's wrapper. A COPY is one statement, so its rows
        # are one consistent snapshot.
        with cursor.cursor.copy(sql, params) as copy:
            while data := copy.read():
                buffer += data
                if len(buffer) >= CHUNK_BYTES:
                    yield bytes(buffer)
                    buffer.clear()
        # TRICKY: the COPY only read, so its transaction (or savepoint, inside another
        # transaction) is rolled back, which is what undoes the settings: left set, Django
        # would read every later timestamp on this connection wrong, as it takes the
        # session's time zone to be UTC. An error or an abandoned download rolls back too.
        transaction.set_rollback(True)
    if buffer:
        yield bytes(buffer)


# --- Python: CSV and XLSX --------------------------------------------------------------------


class _JoinedNames(Aggregate):
    """Names joined with TAG_SEPARATOR: GROUP_CONCAT on SQLite, STRING_AGG on PostgreSQL."""

    function = "GROUP_CONCAT"
    output_field = CharField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, function="STRING_AGG", **extra_context)


def _members(segment: Segment, reachable: str | None = None) -> QuerySet[SegmentMembership]:
    # Scoped like the COPY query: this segment, and customers of its merchant only.
    members = SegmentMembership.objects.filter(
        segment=segment, customer__merchant_id=segment.merchant_id
    )
    if reachable is not None:
        _, opt_in, contact = REACHABLE[reachable]
        members = members.filter(**{f"customer__{opt_in}": True})
        if contact:
            members = members.exclude(**{f"customer__{contact}": ""})
    return members


def _member_rows(
    segment: Segment, columns: list[MemberColumn], reachable: str | None = None
) -> Iterator[tuple[Any, ...]]:
    """The raw values of the columns for each member, by external id, one query."""
    members = _members(segment, reachable).order_by("customer__external_id")
    if any(column.kind == "tags" for column in columns):
        members = members.annotate(
            tag_names=Subquery(
                CustomerTag.objects.filter(
                    customer_id=OuterRef("customer_id"),
                    tag__merchant_id=OuterRef("customer__merchant_id"),
                )
                .values("customer_id")
                .annotate(names=_JoinedNames(F("tag__name"), Value(TAG_SEPARATOR)))
                .values("names")
            )
        )
    # One statement, so one snapshot. In a transaction because on PostgreSQL the iterator's
    # server-side cursor would otherwise be declared WITH HOLD, which makes the server
    # materialise the whole result before the first row.
    with transaction.atomic():
        yield from members.values_list(*(column.lookup for column in columns)).iterator(
            chunk_size=FETCH_ROWS
        )


def iso_local(value: dt.datetime, tz: Any) -> str:
    """`value` in `tz`, to the second, as PostgreSQL writes a timestamp with time zone in
    the ISO style: `2026-01-15 12:30:45-05`, `2026-07-01 18:00:00+05:30` (the offset's
    minutes only when it has some). ISO 8601, and what Python's `fromisoformat` reads."""
    text = value.astimezone(tz).isoformat(sep=" ", timespec="seconds")
    # The offset ends the text: "-05:00" is written "-05"; "+05:30" stays.
    return text[:-3] if text.endswith(":00") else text


def _sorted_tags(value: str) -> str:
    return ";".join(sorted(value.split(TAG_SEPARATOR)))


def _csv_converter(kind: Kind, tz: Any) -> Callable[[Any], Any]:
    """How a raw value of `kind` becomes its CSV cell, as `_sql_cell` does in SQL."""
    if kind == "text":
        return neutralise_formula
    if kind == "tags":
        return lambda value: neutralise_formula(_sorted_tags(value))
    if kind == "datetime":
        return lambda value: iso_local(value, tz)
    if kind == "date":
        return lambda value: value.isoformat()
    if kind == "money":
        return lambda value: f"{Decimal(value):f}"
    if kind == "bool":
        return lambda value: "true" if value else "false"
    return str


def _python_csv_chunks(
    segment: Segment, columns: list[MemberColumn], reachable: str | None = None
) -> Iterator[bytes]:
    merchant = segment.merchant
    converters = [_csv_converter(column.kind, merchant.tzinfo) for column in columns]
    text = io.StringIO()
    # Lines end with CRLF (RFC 4180; COPY ends them with LF): with LF alone, the csv module
    # would not quote a field holding a CR, which spreadsheets read as a line break.
    writer = csv.writer(text)
    writer.writerow(column.header(merchant.currency) for column in columns)
    for row in _member_rows(segment, columns, reachable):
        writer.writerow(
            None if value is None else convert(value)
            for convert, value in zip(converters, row, strict=True)
        )
        if text.tell() >= CHUNK_BYTES:
            yield text.getvalue().encode()
            text.seek(0)
            text.truncate()
    yield text.getvalue().encode()


def _xlsx_text(value: str) -> str:
    # openpyxl refuses control characters a sheet cannot hold; it would also store text
    # starting with "=" as a formula, which neutralising prevents.
    return str(neutralise_formula(ILLEGAL_CHARACTERS_RE.sub("", value)))


def _xlsx_converter(kind: Kind, tz: Any) -> Callable[[Any], Any]:
    if kind == "text":
        return _xlsx_text
    if kind == "tags":
        return lambda value: _xlsx_text(_sorted_tags(value))
    if kind == "datetime":
        # Spreadsheets have no time zones: the merchant-local wall time.
        return lambda value: timezone.localtime(value, tz).replace(tzinfo=None)
    return lambda value: value  # dates, numbers, money (Decimal) and booleans as they are


def _xlsx_chunks(
    segment: Segment, columns: list[MemberColumn], reachable: str | None = None
) -> Iterator[bytes]:
    merchant = segment.merchant
    converters = [_xlsx_converter(column.kind, merchant.tzinfo) for column in columns]
    # Write-only: each row goes straight to openpyxl's own temporary file for the sheet.
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title="Members")
    sheet.append([column.header(merchant.currency) for column in columns])
    for row in _member_rows(segment, columns, reachable):
        sheet.append(
            [
                None if value is None else convert(value)
                for convert, value in zip(converters, row, strict=True)
            ]
        )
    with tempfile.TemporaryFile() as file:
        workbook.save(file)
        file.seek(0)
        while chunk := file.read(CHUNK_BYTES):
            yield chunk
