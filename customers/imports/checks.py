"""Checks over the staged rows, in SQL: duplicate keys, and references to rows that exist
neither in the import nor stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from customers.imports.cells import MSG_DUPLICATE_KEY, MSG_MISSING_REFERENCE, quoted
from customers.imports.specs import REFERENCES, SPECS, FileSpec

if TYPE_CHECKING:
    from customers.imports.reading import Context


def check_duplicates(ctx: Context, spec: FileSpec, fname: str) -> None:
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
            fname,
            line,
            spec.key,
            MSG_DUPLICATE_KEY.format(value=quoted(key), first_line=first_line),
        )


def check_references(ctx: Context, fnames: dict[str, str]) -> None:
    """Every reference must name a row of this import or a stored row of the merchant."""
    for file, column, target_file, model, target_column, what in REFERENCES:
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
                fnames[file],
                line,
                column,
                MSG_MISSING_REFERENCE.format(what=what, value=quoted(value)),
            )
