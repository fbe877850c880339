"""Staging: temporary tables the typed rows are loaded into (COPY on PostgreSQL,
executemany on SQLite), so checks and merges run as SQL over them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection

from customers.imports.specs import SQL_TYPES


class Staging:
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
        """A temporary table; `columns` are (name, key of SQL_TYPES)."""
        which = 0 if self.postgres else 1
        cols = ", ".join(f"{name} {SQL_TYPES[kind][which]}" for name, kind in columns)
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
        adapters = [sqlite_adapter(kind) for _, kind in columns]
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


def sqlite_adapter(kind: str) -> Callable[[Any], Any]:
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
