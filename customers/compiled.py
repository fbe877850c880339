"""Hot reads compiled once and run as prepared statements.

A member app's most frequent request, `GET /api/v1/customers/{id}`, made five small reads
(the token, the customer, its tags, its segments, what it sees). Most of its time went to
Django compiling the same querysets on every call (about 2 ms) and PostgreSQL parsing and
planning them again (a millisecond for the offers' UNION alone, which runs in 0.1 ms).
Their shape never changes, only a few values (an id, a day), so:

- `CompiledQuery` builds the queryset once per database vendor with stand-in values where
  the real ones go, keeps its SQL, and swaps the real values into the parameters on each
  call. A stand-in that does not appear among the compiled parameters fails loudly at the
  first call, so a queryset that stops using a value cannot silently answer for another
  customer. `statement()` gives the SQL to run inside a larger statement instead: an
  `Inline` value is written into it (a column of the enclosing statement), a `Slot` names
  a value `bind()` gives on each run. The customer read runs its four parts, each its own
  app's compiled query, as one statement that way (`campaigns.selectors.customer_read`).
- `fetch` runs SQL on PostgreSQL through a server-side-binding cursor, which psycopg
  prepares on its first run on a connection (`prepare_threshold` 0 in the settings;
  Django's own cursors bind on the client and are never prepared); with persistent
  connections (`CONN_MAX_AGE`) the statement is parsed and planned once per connection.
  `DATABASE_PREPARED_STATEMENTS=0` turns preparing off (a pooler that cannot keep prepared
  statements). Django's cursor wrapper is kept, so query logging and execute wrappers see
  these statements as any other. A migration that changes the columns these statements
  return makes PostgreSQL refuse their prepared plans until the connections are renewed:
  restart the web processes after migrating, as a deployment does anyway.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import QuerySet

from customers.sql import adapt


@dataclass(frozen=True)
class Slot:
    """A value named, not given, in a statement built once from compiled parts and run many
    times: `CompiledQuery.statement` leaves it among the parameters as it is, and `bind`
    puts each run's value in its place."""

    name: str


def bind(params: Sequence[Any], **values: Any) -> list[Any]:
    """`params` with each `Slot` replaced by its value in `values` (adapted as parameters
    are, `customers.sql.adapt`)."""
    real = {name: adapt([value])[0] for name, value in values.items()}
    return [real[param.name] if isinstance(param, Slot) else param for param in params]


#: A parameter's placeholder in compiled SQL, or an escaped percent sign (`%%`).
_PLACEHOLDER = re.compile(r"%[%s]")


def fetch(sql: str, params: Sequence[Any], *, binary: bool = False) -> list[tuple[Any, ...]]:
    """The rows of `sql` (with `%s` placeholders), prepared on PostgreSQL (see above).

    `binary`: PostgreSQL sends the results in binary, which psycopg reads in C; in text,
    every instant goes through Django's timestamp loader, written in Python (a read of
    12,000 line items with their order's time: 50 ms instead of 90). Not for JSON or
    network-address columns, which Django reads as text and decodes itself."""
    # The connection itself, not the `connection` proxy, which looks it up again on every
    # attribute (Django's cursor wrapper reads a dozen per statement).
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    import psycopg
    from psycopg.pq import Format

    db.ensure_connection()
    db.validate_thread_sharing()
    # A raw cursor takes PostgreSQL's own `$1` placeholders: the SQL is rewritten once
    # (`_numbered`), where psycopg's own cursor would split it again on every call (it keeps
    # the split only of statements under 4 KB, and the customer read is longer).
    raw = psycopg.RawCursor(db.connection)
    if binary:
        raw.format = Format.BINARY
    # Django's own wrapper (what `connection.cursor()` returns around its client cursor).
    wrapper = CursorDebugWrapper if db.queries_logged else CursorWrapper
    cursor = wrapper(raw, db)
    with cursor:
        cursor.execute(_numbered(sql), params)
        return cursor.fetchall()


@lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """`sql` with its `%s` placeholders numbered as PostgreSQL's `$1, $2, ...` and its
    escaped percent signs (`%%`) plain."""
    count = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(count)}", sql)


@contextmanager
def serial_reads() -> Iterator[None]:
    """Run the reads inside without PostgreSQL's parallel workers.

    A few customers' histories (a batch's 500 buyers: some thousand rows) were planned as
    parallel reads, because ANALYZE's sample of a table of ten million transactions sees
    a tenth of its million customers and so expects ten times the rows per customer:
    starting two workers and merging their sorted halves cost more than the read, and took
    the cores other requests were using (`POST /transactions` on two cores: 1,290 -> 1,400
    purchases a second). `SET LOCAL` needs a transaction of its own, so inside a caller's
    transaction (and on SQLite) this does nothing."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        yield


def _convert(
    rows: list[tuple[Any, ...]], converters: dict[int, tuple[list[Any], Any]]
) -> list[tuple[Any, ...]]:
    """Apply Django's column converters (`SQLCompiler.get_converters`) to raw rows."""
    if not converters:
        return rows
    converted = []
    for row in rows:
        cells = list(row)
        for position, (functions, expression) in converters.items():
            cell = cells[position]
            for function in functions:
                cell = function(cell, expression, connection)
            cells[position] = cell
        converted.append(tuple(cells))
    return converted


def queryset_rows(queryset: QuerySet[Any], *, binary: bool = False) -> list[tuple[Any, ...]]:
    """The rows of a `values_list` queryset, as Django would return them, read through
    `fetch` (prepared, and in binary when asked: see `fetch`)."""
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    rows = fetch(sql, params, binary=binary)
    return _convert(rows, compiler.get_converters([s[0] for s in compiler.select]))


@dataclass(frozen=True)
class Inline:
    """SQL written in a stand-in's place instead of a parameter (`CompiledQuery.statement`):
    a column of the statement the query is part of, such as `card.id`."""

    sql: str


class CompiledQuery:
    """A queryset compiled to SQL once per database vendor.

    `build(**values)` returns the queryset (a `values_list`, so rows come back as tuples);
    it is called once with `stand_ins`, values no real row has (negative ids, dates long
    past), and `rows(**values)` runs the SQL with the real values in their places.
    `statement(**values)` gives that SQL and its parameters instead, to run as part of a
    larger statement (see `Inline`), and `convert` reads its rows as `rows` does.
    """

    def __init__(self, build: Callable[..., QuerySet[Any]], **stand_ins: Any) -> None:
        self.build = build
        self.stand_ins = stand_ins
        self._compiled: dict[str, _Compiled] = {}
        # The SQL with given `Inline` values written in, and which parameters remain.
        self._inlined: dict[tuple[Any, ...], tuple[str, list[int]]] = {}

    def _compile(self) -> _Compiled:
        vendor = connection.vendor
        if vendor not in self._compiled:
            compiler = self.build(**self.stand_ins).query.get_compiler(connection=connection)
            sql, params = compiler.as_sql()
            # The conversions Django applies to these columns when it reads them itself
            # (SQLite's text instants and 0/1 booleans, JSON, ...).
            converters = compiler.get_converters([s[0] for s in compiler.select])
            forms = {
                name: {repr(value), repr(adapt([value])[0])}
                for name, value in self.stand_ins.items()
            }
            slots = tuple(
                next((name for name, seen in forms.items() if repr(param) in seen), None)
                for param in params
            )
            missing = set(self.stand_ins) - set(slots)
            if missing:
                raise ValueError(
                    f"The compiled query does not use the stand-ins {sorted(missing)}: "
                    "pick values that appear among its parameters as they are."
                )
            width = len(compiler.select)
            self._compiled[vendor] = _Compiled(sql, tuple(params), slots, converters, width)
        return self._compiled[vendor]

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """The rows with `values` (one for each stand-in) in the stand-ins' places."""
        return self.convert(fetch(*self.statement(**values)))

    def statement(self, **values: Any) -> tuple[str, list[Any]]:
        """The SQL and its parameters with `values` in the stand-ins' places. An `Inline`
        value is written into the SQL in its stand-in's place (every place it has) rather
        than sent as a parameter: so the query can be a subquery of a larger statement
        that supplies the value, e.g. a customer's id from a preceding part."""
        compiled = self._compile()
        real = {
            name: value if isinstance(value, Inline) else adapt([value])[0]
            for name, value in values.items()
        }
        merged = [
            param if slot is None else real[slot]
            for param, slot in zip(compiled.params, compiled.slots, strict=True)
        ]
        inlined = tuple(sorted((k, v) for k, v in real.items() if isinstance(v, Inline)))
        if not inlined:
            return compiled.sql, merged
        key = (connection.vendor, inlined)
        if key not in self._inlined:
            self._inlined[key] = _inline(compiled.sql, merged)
        sql, kept = self._inlined[key]
        return sql, [merged[i] for i in kept]

    def convert(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Rows of this query's SQL read as Django reads its columns (SQLite's text
        instants, JSON, ...): its first `width` columns; any after them are left as read."""
        return _convert(rows, self._compile().converters)

    @property
    def width(self) -> int:
        """The number of columns the query selects."""
        return self._compile().width


def _inline(sql: str, params: list[Any]) -> tuple[str, list[int]]:
    """`sql` with each of `params` that is an `Inline` written in its placeholder's place
    (parenthesized); and the positions of the parameters left."""
    kept: list[int] = []
    at = iter(enumerate(params))

    def place(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%%"
        i, value = next(at)
        if isinstance(value, Inline):
            return f"({value.sql})"
        kept.append(i)
        return "%s"

    return _PLACEHOLDER.sub(place, sql), kept


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[str | None, ...]  # which stand-in each parameter is (None: a constant)
    converters: dict[int, tuple[list[Any], Any]]
    width: int
