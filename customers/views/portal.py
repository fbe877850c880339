"""Portal views. Thin: reads come from selectors, writes from services.

Tenancy: every queryset here starts from `request.merchant` (set by the middleware from the
user's own memberships), and the detail page looks its customer up inside that queryset, so
another merchant's ids answer 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST
from django.views.generic import DetailView
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export import ExportMixin

from customers import selectors
from customers.filters import CustomerFilter
from customers.middleware import SESSION_KEY
from customers.models import Customer, Merchant, StaffMembership
from customers.tables import (
    DEFAULT_PAGE_SIZE,
    EXPORT_FORMATS,
    PAGE_SIZES,
    CustomerTable,
    SafeTableExport,
)
from customers.tenancy import MerchantRequiredMixin, current_merchant

TRANSACTIONS_PER_PAGE = 20
REDEMPTIONS_PER_PAGE = 20


@login_required
@require_POST
def switch_merchant(request: HttpRequest) -> HttpResponse:
    """Make another of the user's own merchants the current one; others answer 404."""
    membership = (
        StaffMembership.objects.filter(
            user_id=request.user.pk or 0, merchant__slug=request.POST.get("merchant", "")
        )
        .select_related("merchant")
        .first()
    )
    if membership is None:
        raise Http404("No such merchant among yours.")
    request.session[SESSION_KEY] = membership.merchant_id
    return redirect("customers:list")


class CustomerListView(MerchantRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    """The merchant's customers: search, filters, sorting, paging, CSV/XLSX export.

    An htmx request (the filter form, sort and page links) gets only the table partial.
    """

    template_name = "customers/customer_list.html"
    partial_template_name = "customers/partials/customer_table.html"
    filterset_class = CustomerFilter
    table_class = CustomerTable
    table_pagination = {"per_page": DEFAULT_PAGE_SIZE}
    export_class = SafeTableExport
    export_formats = EXPORT_FORMATS

    def get_queryset(self) -> QuerySet[Customer]:
        return selectors.customer_list(merchant=current_merchant(self.request))

    def get_table_kwargs(self) -> dict[str, Any]:
        return {"merchant": current_merchant(self.request)}

    def get_export_filename(self, export_format: str) -> str:
        merchant = current_merchant(self.request)
        return f"customers-{merchant.slug}-{merchant.today().isoformat()}.{export_format}"

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
        return context

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().render_to_response(context, **kwargs)
        # Same URL, two bodies (page or partial): caches must key on the htmx header.
        patch_vary_headers(response, ("HX-Request",))
        return response


class CustomerDetailView(MerchantRequiredMixin, DetailView):
    """One of the merchant's customers: profile, tags, metrics, transactions, redemptions."""

    template_name = "customers/customer_detail.html"
    context_object_name = "customer"

    def get_queryset(self) -> QuerySet[Customer]:
        # Another merchant's customer is not in this queryset: DetailView answers 404.
        return selectors.customer_detail_queryset(merchant=current_merchant(self.request))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        customer: Customer = self.object
        merchant: Merchant = current_merchant(self.request)
        context["merchant"] = merchant
        context["merchant_tz"] = merchant.time_zone
        context["metrics"] = getattr(customer, "metrics", None)
        context["transactions"] = _page(
            selectors.customer_transactions(customer=customer),
            TRANSACTIONS_PER_PAGE,
            self.request.GET.get("page"),
        )
        context["redemptions"] = _page(
            selectors.customer_redemptions(customer=customer),
            REDEMPTIONS_PER_PAGE,
            self.request.GET.get("rpage"),
        )
        return context


def _page(queryset: QuerySet[Any], per_page: int, number: str | None) -> Page[Any]:
    # get_page() turns a bad or out-of-range page number into the first or last page.
    return Paginator(queryset, per_page).get_page(number)
