"""Portal views. Thin: reads come from selectors, writes from services."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView

from customers.middleware import SESSION_KEY
from customers.models import StaffMembership
from customers.tenancy import MerchantRequiredMixin


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


class CustomerListView(MerchantRequiredMixin, TemplateView):
    template_name = "customers/customer_list.html"


class CustomerDetailView(MerchantRequiredMixin, TemplateView):
    template_name = "customers/customer_detail.html"
