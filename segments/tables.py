"""The segment list's table: display (`render_*`), export (`value_*`) and sorting.

Every column sorts on a stored field (the statistics are stored at refresh), empty values
last in both directions and the primary key as the final tie-breaker (`SortColumn`).
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Collection
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import django_tables2 as tables
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import localize
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django_tables2.columns import BoundColumn

from customers.models import Merchant
from customers.portal.formatting import EMPTY, format_money
from customers.portal.tables import NumColumn, SortColumn
from segments.models import Segment


class SelectColumn(tables.Column):
    """A checkbox per row for the bulk actions (belongs to the bulk form by `form=`)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("exclude_from_export", True)
        kwargs.setdefault("empty_values", ())
        super().__init__(**kwargs)

    @property
    def header(self) -> str:
        return mark_safe(
            '<input type="checkbox" class="form-check-input" id="select-all" '
            'data-select-all="#segments .row-select" aria-label="Select all on this page">'
        )

    def render(self, record: Segment) -> str:
        return format_html(
            '<input type="checkbox" class="form-check-input row-select" name="ids" '
            'value="{}" form="bulk-form" aria-label="Select {}">',
            record.pk,
            record.name,
        )


class RowActions:
    """One segment's actions menu in the list (edit, duplicate, activate or deactivate,
    refresh, download, remove), from URLs reversed once per page. Each POST carries the
    CSRF token and the list's query string, so the list comes back as it was. `allowed`
    holds the menu entries the user's role may use (the view decides, from
    `customers.portal.permissions`); the others are not offered."""

    PK = 999_999_999  # stands for the segment's id in the reversed URLs

    def __init__(self, request: HttpRequest | None, allowed: Collection[str]) -> None:
        self.allowed = frozenset(allowed)
        self.token = get_token(request) if request is not None else ""
        self.query = request.GET.urlencode() if request is not None else ""
        self.urls = {
            name: reverse(f"segments:{name}", args=[self.PK, *extra])
            for name, extra in (
                ("edit", ()),
                ("detail", ()),
                ("action", ()),
                ("remove", ()),
                ("download", ("csv",)),
            )
        }
        self.urls["download_xlsx"] = reverse("segments:download", args=[self.PK, "xlsx"])

    def url(self, name: str, segment: Segment) -> str:
        return self.urls[name].replace(str(self.PK), str(segment.pk))

    def _post(self, segment: Segment, action: str, label: str) -> str:
        return format_html(
            '<li><form method="post" action="{}" hx-boost="false">'
            '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
            '<input type="hidden" name="next_query" value="{}">'
            '<input type="hidden" name="action" value="{}">'
            '<button type="submit" class="dropdown-item">{}</button></form></li>',
            self.url("action", segment),
            self.token,
            self.query,
            action,
            label,
        )

    def render(self, segment: Segment) -> str:
        allowed = self.allowed
        items: list[str] = []
        if "edit" in allowed:
            edit = self.url("edit" if segment.is_dynamic else "detail", segment)
            items.append(
                format_html(
                    '<li><a class="dropdown-item" hx-boost="false" href="{}">Edit</a></li>', edit
                )
            )
        else:
            items.append(
                format_html(
                    '<li><a class="dropdown-item" hx-boost="false" href="{}">Open</a></li>',
                    self.url("detail", segment),
                )
            )
        if "duplicate" in allowed:
            items.append(self._post(segment, "duplicate", "Duplicate"))
        if segment.is_active and "deactivate" in allowed:
            items.append(self._post(segment, "deactivate", "Deactivate"))
        if not segment.is_active and "activate" in allowed:
            items.append(self._post(segment, "activate", "Activate"))
        if segment.is_dynamic and segment.is_active and "refresh" in allowed:
            items.append(self._post(segment, "refresh", "Refresh now"))
        if "download" in allowed:
            items.append(
                format_html(
                    '<li><hr class="dropdown-divider"></li>'
                    '<li><a class="dropdown-item" hx-boost="false" href="{}">'
                    "Download members (CSV)</a></li>"
                    '<li><a class="dropdown-item" hx-boost="false" href="{}">'
                    "Download members (XLSX)</a></li>",
                    self.url("download", segment),
                    self.url("download_xlsx", segment),
                )
            )
        if "remove" in allowed:
            items.append(
                format_html(
                    '<li><hr class="dropdown-divider"></li><li><a class="dropdown-item '
                    'text-danger" hx-boost="false" href="{}?{}">Remove…</a></li>',
                    self.url("remove", segment),
                    urlencode({"next_query": self.query}),
                )
            )
        return format_html(
            '<div class="dropdown"><button class="btn btn-outline-secondary btn-sm py-0 '
            'dropdown-toggle" type="button" data-bs-toggle="dropdown" aria-expanded="false" '
            'aria-label="Actions for {}">Actions</button>'
            '<ul class="dropdown-menu dropdown-menu-end">{}</ul></div>',
            segment.name,
            mark_safe("".join(items)),  # noqa: S308 - each item was escaped by format_html
        )


class SegmentTable(tables.Table):
    """The merchant's segments. Pass `merchant=` (currency and time zone) and `allowed=`
    (the entries of the actions menu the user may use, see `RowActions`)."""

    select = SelectColumn(accessor="pk", verbose_name="")
    name = SortColumn(verbose_name="Name", attrs={"td": {"class": "cell-wrap"}})
    members = NumColumn(accessor="member_count", verbose_name="Members")
    avg_transaction_value = NumColumn(verbose_name="Avg. transaction value")
    avg_transactions = NumColumn(verbose_name="Avg. number of transactions")
    avg_spending = NumColumn(verbose_name="Avg. spending")
    avg_clv = NumColumn(verbose_name="Avg. CLV")
    active = SortColumn(accessor="is_active", verbose_name="Active")
    kind = SortColumn(verbose_name="Kind")
    last_refreshed = SortColumn(accessor="last_refreshed_at", verbose_name="Last refreshed")
    created = SortColumn(accessor="created_at", verbose_name="Created on")
    actions = tables.Column(
        accessor="pk",
        # Named for screen readers; the menu buttons say "Actions" on screen.
        verbose_name=mark_safe('<span class="visually-hidden">Actions</span>'),
        orderable=False,
        exclude_from_export=True,
        empty_values=(),
    )

    class Meta:
        model = Segment
        fields = ()
        template_name = "segments/partials/segment_rows.html"
        attrs = {"class": "table table-sm table-hover align-middle text-nowrap", "id": "segments"}
        row_attrs = {"data-segment": lambda record: record.slug}
        empty_text = "No segments match."
        order_by_field = "sort"
        default = EMPTY

    def __init__(
        self, *args: Any, merchant: Merchant, allowed: Collection[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.merchant = merchant
        self.tz = merchant.tzinfo
        self.allowed = allowed
        # The currency goes in the money headers, so exported numbers stay plain numbers.
        for name in ("avg_transaction_value", "avg_spending", "avg_clv"):
            if name in self.columns:  # (not when hidden)
                column = self.columns[name].column
                column.verbose_name = f"{column.verbose_name} ({merchant.currency})"

    # Display -------------------------------------------------------------------------------

    def body_html(self) -> SafeString:
        """The page's rows, as django-tables2's template writes them, but built here.

        django-tables2 renders each cell through the template engine and inspects its render
        method's signature for every cell: a page of 100 segments took 190 ms, four fifths
        of it in those two. Here each column's renderer and cell attributes are worked out
        once per page; `tests/segments/test_list.py` checks the output matches.
        """
        cells = [
            (format_html("<td {}>", column.attrs["td"].as_html()), self._cell_renderer(column))
            for column in self.columns
        ]
        rows = [
            format_html(
                "<tr {}>{}</tr>",
                row.attrs.as_html(),
                mark_safe("".join(f"{td}{render(row.record)}</td>" for td, render in cells)),  # noqa: S308 - escaped by the renderers
            )
            for row in self.paginated_rows
        ]
        if not rows and self.empty_text:
            rows.append(
                format_html('<tr><td colspan="{}">{}</td></tr>', len(cells), self.empty_text)
            )
        return mark_safe("".join(rows))  # noqa: S308 - each row was escaped by format_html

    def _cell_renderer(self, bound: BoundColumn) -> Callable[[Segment], str]:
        """A function of the record that writes the column's cell, escaped, as tables2 does:
        the default for an empty value, else `render_<name>` (or the column's `render`)
        with the arguments it names, else the value localised."""
        column = bound.column
        method = getattr(self, f"render_{bound.name}", None)
        if method is None and type(column).render is not tables.Column.render:
            method = column.render
        wants = set(inspect.signature(method).parameters) if method else set()
        default = conditional_escape(bound.default)

        def render(record: Segment) -> str:
            value = bound.accessor.resolve(record, quiet=True)
            if value in column.empty_values:
                return default
            if method is None:
                return conditional_escape(localize(value))
            arguments = {"record": record, "value": value}
            return conditional_escape(method(**{k: v for k, v in arguments.items() if k in wants}))

        return render

    def render_name(self, record: Segment) -> str:
        return format_html(
            '<a href="{}" hx-boost="false">{}</a>',
            reverse("segments:detail", args=[record.pk]),
            record.name,
        )

    def render_members(self, value: int) -> str:
        return f"{value:,}"

    def _money(self, value: Decimal) -> str:
        return format_money(value, self.merchant.currency)

    render_avg_transaction_value = _money
    render_avg_spending = _money
    render_avg_clv = _money

    def render_active(self, value: bool) -> str:
        if value:
            return format_html('<span class="badge text-bg-success">{}</span>', "active")
        return format_html('<span class="badge text-bg-warning">{}</span>', "inactive")

    def render_kind(self, record: Segment) -> str:
        return "dynamic" if record.is_dynamic else "manual"

    def render_last_refreshed(self, value: dt.datetime) -> str:
        return timezone.localtime(value, self.tz).strftime("%Y-%m-%d %H:%M")

    def render_created(self, value: dt.datetime) -> str:
        return timezone.localtime(value, self.tz).date().isoformat()

    def render_actions(self, record: Segment) -> str:
        # Built here rather than from a template per row: a page of 100 rows spent most of
        # its time reversing URLs and rendering the same menu (see bench/list_bench.py).
        if not hasattr(self, "_actions"):
            self._actions = RowActions(getattr(self, "request", None), self.allowed)
        return self._actions.render(record)

    # Export --------------------------------------------------------------------------------

    def value_members(self, value: int) -> int:
        return value

    def value_name(self, record: Segment) -> str:
        return record.name

    def value_active(self, value: bool) -> str:
        return "yes" if value else "no"

    def value_kind(self, record: Segment) -> str:
        return self.render_kind(record)

    def value_last_refreshed(self, value: dt.datetime) -> dt.datetime:
        # Spreadsheets have no time zones: the merchant-local wall time, naive.
        return timezone.localtime(value, self.tz).replace(tzinfo=None, microsecond=0)

    def value_created(self, value: dt.datetime) -> dt.date:
        return timezone.localtime(value, self.tz).date()

    def _plain(self, value: Decimal) -> Decimal:
        return value

    value_avg_transaction_value = _plain
    value_avg_spending = _plain
    value_avg_clv = _plain


class MemberTable(tables.Table):
    """A segment's members on its detail page: sortable, paged, linked to each customer.
    Pass `merchant=` (currency and time zone)."""

    external_id = SortColumn(accessor="customer__external_id", verbose_name="External id")
    name = SortColumn(
        accessor="customer__last_name",
        verbose_name="Name",
        order_by=("customer__last_name", "customer__first_name"),
        empty_values=(),
    )
    email = SortColumn(accessor="customer__email", verbose_name="Email")
    since = SortColumn(verbose_name="Member since")
    orders = NumColumn(accessor="customer__metrics__orders_count", verbose_name="Orders")
    net_spend = NumColumn(accessor="customer__metrics__net_spend", verbose_name="Net spend")
    last_purchase = SortColumn(
        accessor="customer__metrics__last_purchase_at", verbose_name="Last purchase"
    )
    remove = tables.Column(accessor="pk", verbose_name="", orderable=False, empty_values=())

    class Meta:
        template_name = "customers/partials/table.html"
        attrs = {"class": "table table-sm table-hover align-middle text-nowrap", "id": "members"}
        empty_text = "No members match."
        default = EMPTY

    def __init__(self, *args: Any, merchant: Merchant, manual: bool = False, **kwargs: Any) -> None:
        # Members of a manual segment are removed by hand; a dynamic segment's follow rules.
        if not manual:
            kwargs["exclude"] = (*kwargs.get("exclude", ()), "remove")
        super().__init__(*args, **kwargs)
        self.merchant = merchant
        self.tz = merchant.tzinfo

    def render_remove(self, record: Any) -> str:
        return render_to_string(
            "segments/partials/member_remove.html",
            {"membership": record},
            request=getattr(self, "request", None),
        )

    def render_external_id(self, record: Any) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("customers:detail", args=[record.customer_id]),
            record.customer.external_id,
        )

    def render_name(self, record: Any) -> str:
        return record.customer.full_name or EMPTY

    def render_since(self, value: dt.datetime) -> str:
        return timezone.localtime(value, self.tz).strftime("%Y-%m-%d %H:%M")

    def render_net_spend(self, value: Decimal) -> str:
        return format_money(value, self.merchant.currency)

    def render_last_purchase(self, value: dt.datetime) -> str:
        return timezone.localtime(value, self.tz).strftime("%Y-%m-%d %H:%M")
