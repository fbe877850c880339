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
from django.views.decorators.http import require_POST
from django.views.generic import DetailView

from customers import selectors
from customers.filters import CustomerFilter
from customers.models import Customer, Merchant, StaffMembership
from customers.portal.lists import MerchantTableListView
from customers.portal.middleware import SESSION_KEY
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant
from customers.scores.selectors import customer_score_history
from customers.tables import CustomerTable
from customers.views.predictions import customer_predictions, merchant_model

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


class CustomerListView(MerchantTableListView):
    """The merchant's customers: search, filters, sorting, paging, CSV/XLSX export.

    An htmx request (the filter form, sort and page links) gets only the table partial.
    """

    template_name = "customers/customer_list.html"
    partial_template_name = "customers/partials/customer_table.html"
    filterset_class = CustomerFilter
    table_class = CustomerTable
    export_name = "customers"
    # What a merchant looks for first fits a laptop screen; the rest can be shown.
    optional_columns = {
        "external_id": True,
        "email": True,
        "phone": False,
        "tier": True,
        "customer_type": False,
        "home_branch": False,
        "joined": False,
        "orders": True,
        "net_spend": True,
        "avg_order_value": False,
        "last_purchase": True,
        "lifecycle_stage": False,
        "rfm_score": False,
        "rfm_group": False,
        "opt_ins": False,
        "tags": False,
    }

    def get_queryset(self) -> QuerySet[Customer]:
        return selectors.customer_list(merchant=current_merchant(self.request))

    def get_table_kwargs(self) -> dict[str, Any]:
        return {"merchant": current_merchant(self.request)}


class CustomerDetailView(MerchantRequiredMixin, DetailView):
    """One of the merchant's customers: profile, tags, metrics, scores and predictions,
    transactions, redemptions."""

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
        context["predictions"] = customer_predictions(
            metrics=context["metrics"], model=merchant_model(merchant), today=merchant.today()
        )
        context["score_history"] = customer_score_history(customer=customer)
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
