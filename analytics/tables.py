"""The reports' tables: one object per table that the page shows and the export writes, so a
CSV or XLSX file holds exactly the numbers on the screen (as plain numbers: money to the
cent, shares and changes as fractions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponse
from tablib import Dataset

from customers.portal.formatting import EMPTY, format_count, format_money, format_percent
from customers.portal.tables import neutralise_formula
from customers.templatetags.portal_format import change as format_change

#: How a column's values read on the page (exports keep the raw value); "figure" columns
#: take each row's kind from `ReportTable.row_kinds` (a table of money and counts).
KINDS = ("text", "count", "money", "share", "change", "date", "figure")
EXPORT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@dataclass(frozen=True)
class Column:
    title: str
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown column kind {self.kind!r}; use one of {KINDS}.")

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


@dataclass(frozen=True)
class Linked:
    """A cell that links somewhere on the page (the export writes the value only)."""

    value: Any
    href: str | None


@dataclass
class ReportTable:
    """A table of a report: `name` (its export's key), a title, columns, and rows of raw
    values (a `Linked` value is shown as a link), `total` an optional last row."""

    name: str
    title: str
    columns: Sequence[Column]
    rows: list[list[Any]] = field(default_factory=list)
    total: list[Any] | None = None
    row_kinds: list[str] = field(default_factory=list)

    def display(self, value: Any, column: Column, row_kind: str = "text") -> str:
        if value is None or value == "":
            return EMPTY
        kind = row_kind if column.kind == "figure" else column.kind
        if kind == "count":
            return format_count(value)
        if kind == "money":
            return format_money(value)
        if kind == "share":
            return format_percent(value)
        if kind == "change":
            return format_change(value)
        return str(value)

    def display_rows(self) -> list[dict[str, Any]]:
        """The rows as the template shows them: cells with their text and alignment."""
        rows = []
        for i, row in enumerate(self.rows):
            row_kind = self.row_kinds[i] if i < len(self.row_kinds) else "text"
            cells = []
            for value, column in zip(row, self.columns, strict=True):
                href = value.href if isinstance(value, Linked) else None
                raw = value.value if isinstance(value, Linked) else value
                cells.append(
                    {
                        "text": self.display(raw, column, row_kind),
                        "numeric": column.numeric,
                        "href": href,
                    }
                )
            rows.append({"cells": cells})
        return rows

    def display_total(self) -> list[dict[str, Any]] | None:
        if self.total is None:
            return None
        return [
            {"text": self.display(v, c) if v is not None else "", "numeric": c.numeric}
            for v, c in zip(self.total, self.columns, strict=True)
        ]

    def dataset(self) -> Dataset:
        data = Dataset(title=self.title[:31])
        data.headers = [c.title for c in self.columns]
        for row in [*self.rows, *([self.total] if self.total else [])]:
            data.append([_export_value(v) for v in row])
        return data


def _export_value(value: Any) -> Any:
    if isinstance(value, Linked):
        value = value.value
    if value is None:
        return ""
    return neutralise_formula(value)


def export_response(table: ReportTable, fmt: str, filename: str) -> HttpResponse:
    """The table as a CSV or XLSX download."""
    data = table.dataset()
    content = data.export(fmt)
    response = HttpResponse(content, content_type=EXPORT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    # Customers' revenue is the merchant's business: no cache keeps a copy.
    response["Cache-Control"] = "no-store"
    return response
