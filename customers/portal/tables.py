"""The portal's table pieces every list page uses: page sizes, sortable columns with empty
values last, money and empty cells as shown, and exports (CSV, XLSX) safe to open in a
spreadsheet."""

from __future__ import annotations

import re
from typing import Any

import django_tables2 as tables
from django.db.models import F, OrderBy, QuerySet
from django.utils.html import format_html
from django_tables2.export import TableExport
from django_tables2.utils import OrderByTuple
from tablib import Dataset

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
EXPORT_FORMATS = (TableExport.CSV, TableExport.XLSX)
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# ...except a phone number in E.164 form: "+" then digits only. With no letter it can name no
# function and no cell, so it is data (SMS tools need the "+"), and it is written as it is.
E164_PATTERN = r"^\+[0-9]+$"  # (PostgreSQL's `$` is the end of the text; Python's is not)
_E164 = re.compile(r"\+[0-9]+")


def _nulls_last(keys: OrderByTuple, descending: bool) -> list[OrderBy]:
    ordering = []
    for key in keys:
        expression = F(key.bare.for_queryset())
        if key.is_descending != descending:
            ordering.append(expression.desc(nulls_last=True))
        else:
            ordering.append(expression.asc(nulls_last=True))
    return ordering


class SortColumn(tables.Column):
    """A column that sorts on its `order_by` fields (default: its accessor), NULLs last in
    both directions, then by primary key.

    TRICKY: tables2 lets a custom `order()` replace the whole ordering, so sorting by several
    columns at once (`?sort=tier,name`) keeps only the last one; the page links sort by one.
    """

    def order(self, queryset: QuerySet[Any], is_descending: bool) -> tuple[QuerySet[Any], bool]:
        keys = self.order_by or OrderByTuple((str(self.accessor),))
        return (
            queryset.order_by(*_nulls_last(keys, is_descending), "-pk" if is_descending else "pk"),
            True,
        )


class ClippedColumn(SortColumn):
    """Text cut to its column's width on screen (CSS `cell-clip`), whole in the cell's title
    on hover; exported as it is. `attrs` may add classes (`cell-narrow`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("attrs", {"td": {"class": "cell-clip"}})
        super().__init__(*args, **kwargs)

    def render(self, value: Any) -> str:
        return format_html('<span title="{}">{}</span>', value, value)

    def value(self, value: Any) -> Any:
        return value


class NumColumn(SortColumn):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("attrs", {"th": {"class": "num"}, "td": {"class": "num"}})
        super().__init__(*args, **kwargs)


def neutralise_formula(value: Any) -> Any:
    """Prefix text that a spreadsheet would run as a formula with `'`, so it stays text.

    Only strings are touched: numbers (a negative amount) and dates are exported as they are,
    and so is a phone number in E.164 form (`+16475550100`).
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _E164.fullmatch(value):
        return "'" + value
    return value


class SafeTableExport(TableExport):
    """CSV and XLSX only, with every text cell neutralised against formula injection."""

    @classmethod
    def is_valid_format(cls, export_format: str | None) -> bool:
        return export_format in EXPORT_FORMATS

    def table_to_dataset(
        self,
        table: tables.Table,
        exclude_columns: Any,
        dataset_kwargs: dict[str, Any] | None = None,
    ) -> Dataset:
        dataset = Dataset(**{"title": "Customers", **(dataset_kwargs or {})})
        for i, row in enumerate(table.as_values(exclude_columns=exclude_columns)):
            if i == 0:
                dataset.headers = row
            else:
                dataset.append([neutralise_formula(cell) for cell in row])
        return dataset
