"""The base of the portal's list pages (customers, segments): one merchant's rows as a
filtered, sorted, paged django-tables2 table with CSV/XLSX export, where an htmx request
(the filter form, search as you type, sort and page links) gets only the table partial."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.cache import patch_vary_headers
from django.utils.text import slugify
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export import ExportMixin

from customers.portal.permissions import Action
from customers.portal.tables import (
    DEFAULT_PAGE_SIZE,
    EXPORT_FORMATS,
    PAGE_SIZES,
    SafeTableExport,
)
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant

#: The longest filter description an export's file name carries.
FILTER_NAME_MAX = 60
#: How long a list remembers the columns the user chose to show (a cookie per list).
COLUMNS_COOKIE_AGE = 365 * 24 * 60 * 60
#: The column chooser's parameters: `columns=set&show=a&show=b`.
COLUMNS_PARAM, SHOW_PARAM = "columns", "show"


def _filter_value_text(value: Any) -> str:
    if isinstance(value, Model):
        return str(value)
    if isinstance(value, Iterable) and not isinstance(value, str):
        return "-".join(_filter_value_text(item) for item in value)
    return str(value)


def _in_use(value: Any) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, list | tuple | QuerySet):
        return len(value) > 0
    return True


def _no_choices(field: Any) -> bool:
    """Whether a form field offers choices and has none (a model list asks the database
    whether any row exists; the panel reads the rows themselves once, when it renders)."""
    queryset = getattr(field, "queryset", None)
    if queryset is not None:
        return not queryset.exists()
    return hasattr(field, "choices") and not list(field.choices)


def filter_description(cleaned: dict[str, Any]) -> str:
    """A slug of the filters in use (by label), for a file name: `search-zhang-tier-gold`
    (empty when nothing filters), cut at FILTER_NAME_MAX characters on a whole word."""
    parts = [
        slugify(f"{name} {_filter_value_text(value)}")
        for name, value in cleaned.items()
        if _in_use(value)
    ]
    text = "-".join(part for part in parts if part)
    if len(text) > FILTER_NAME_MAX:
        text = text[:FILTER_NAME_MAX].rsplit("-", 1)[0]
    return text


class MerchantTableListView(MerchantRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    """Set `template_name`, `partial_template_name`, `filterset_class`, `table_class`,
    `export_name` (the exported file is `<export_name>-<merchant>-<local date>.<format>`,
    or `<export_name>-<filters>-<merchant>-<local date>.<format>` when filters narrow it)
    and `get_queryset` (the current merchant's rows).

    `optional_columns` (column name: shown by default) are the columns the user may show or
    hide with the list's column chooser; the choice is remembered in a cookie per list. The
    other columns are always shown, and exports have every column.
    """

    partial_template_name: str
    export_name: str
    optional_columns: dict[str, bool] = {}
    _remember_columns: list[str] | None = None
    table_pagination = {"per_page": DEFAULT_PAGE_SIZE}
    export_class = SafeTableExport
    export_formats = EXPORT_FORMATS

    def get_permission(self, request: HttpRequest) -> Action:
        # Seeing the list is viewing; taking it away as a file is exporting.
        if self.export_trigger_param in request.GET:
            return Action.EXPORT_DATA
        return self.permission

    # Columns ------------------------------------------------------------------------------

    @property
    def columns_cookie(self) -> str:
        return f"{self.export_name}_columns"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.GET.get(COLUMNS_PARAM) == "set":
            # The chooser sent the columns to show: remember them, and take its parameters
            # out of the query, so the table's sort and page links do not carry them.
            shown = set(request.GET.getlist(SHOW_PARAM))
            self._remember_columns = [name for name in self.optional_columns if name in shown]
            query = request.GET.copy()
            for param in (COLUMNS_PARAM, SHOW_PARAM):
                query.pop(param, None)
            request.GET = QueryDict(query.urlencode())
        response: HttpResponse = super().get(request, *args, **kwargs)
        if self._remember_columns is not None:
            response.set_cookie(
                self.columns_cookie,
                ".".join(self._remember_columns) or "-",
                max_age=COLUMNS_COOKIE_AGE,
                samesite="Lax",
                httponly=True,
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response

    def shown_columns(self) -> list[str]:
        """The optional columns to show: as just chosen, else as remembered, else defaults."""
        if self._remember_columns is not None:
            return self._remember_columns
        remembered = self.request.COOKIES.get(self.columns_cookie)
        if remembered is None:
            return [name for name, shown in self.optional_columns.items() if shown]
        chosen = set(remembered.split("."))
        return [name for name in self.optional_columns if name in chosen]

    def get_table(self, **kwargs: Any) -> Any:
        if self.export_trigger_param not in self.request.GET:
            shown = set(self.shown_columns())
            hidden = [name for name in self.optional_columns if name not in shown]
            kwargs["exclude"] = (*kwargs.get("exclude", ()), *hidden)
        return super().get_table(**kwargs)

    def get_export_filename(self, export_format: str) -> str:
        merchant = current_merchant(self.request)
        filterset = getattr(self, "filterset", None)
        filters = ""
        if filterset is not None and filterset.is_bound and filterset.is_valid():
            filters = filter_description(
                {
                    str(filterset.filters[name].label or name): value
                    for name, value in filterset.form.cleaned_data.items()
                    if name in filterset.filters
                }
            )
        name = f"{self.export_name}-{filters}" if filters else self.export_name
        return f"{name}-{merchant.slug}-{merchant.today().isoformat()}.{export_format}"

    def is_partial(self) -> bool:
        htmx = getattr(self.request, "htmx", None)
        # A history restore (back button with an empty htmx cache) needs the whole page.
        return bool(htmx) and not htmx.history_restore_request  # type: ignore[union-attr]

    def get_template_names(self) -> list[str]:
        return [self.partial_template_name if self.is_partial() else self.template_name]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["page_sizes"] = PAGE_SIZES
        context["per_page"] = context["table"].paginator.per_page
        context["export_formats"] = EXPORT_FORMATS
        context["is_partial"] = self.is_partial()
        shown = set(self.shown_columns())
        columns = self.table_class.base_columns
        context["column_choices"] = [
            (name, columns[name].header, name in shown) for name in self.optional_columns
        ]
        filterset = context.get("filter")
        in_use = [
            name
            for name in getattr(filterset, "filters", {})
            if any(value.strip() for value in self.request.GET.getlist(name))
        ]
        primary = getattr(filterset, "primary_fields", ())
        context["filters_in_use"] = bool(in_use)
        # A list of choices with nothing in it (no tiers yet) is left out of the panel. Only
        # the whole page shows the panel: an htmx request does not read the choices.
        context["filters_without_choices"] = (
            set()
            if self.is_partial() or filterset is None
            else {name for name, field in filterset.form.fields.items() if _no_choices(field)}
        )
        context["more_filters_in_use"] = sum(1 for name in in_use if name not in primary)
        return context

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().render_to_response(context, **kwargs)
        if self.export_trigger_param in self.request.GET:
            # An export holds the merchant's data (customers' emails and phones): no cache,
            # shared or the browser's, keeps a copy (as member downloads do).
            response["Cache-Control"] = "no-store"
            return response
        # Same URL, two bodies (page or partial): caches must key on the htmx header.
        patch_vary_headers(response, ("HX-Request",))
        return response
