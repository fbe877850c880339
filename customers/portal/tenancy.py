"""Tenancy for portal views: every page works on `request.merchant` (see the middleware).

Rule for every portal view: start each query from the current merchant's rows
(`merchant_queryset(request, Model)` or `request.merchant.<related>`), and look objects up
with `get_object_or_404` on that queryset, so another merchant's ids answer 404.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render

from customers.models import Merchant
from customers.portal.permissions import Action, denied_message, may

M = TypeVar("M", bound=Model)


def current_merchant(request: HttpRequest) -> Merchant:
    merchant = getattr(request, "merchant", None)
    if merchant is None:
        raise LookupError("This request has no current merchant.")
    return merchant


def merchant_queryset(request: HttpRequest, model: type[M]) -> QuerySet[M]:
    """All rows of `model` that belong to the current merchant (the model has `merchant`)."""
    return model._default_manager.filter(merchant=current_merchant(request))


def forbidden(request: HttpRequest, action: Action) -> HttpResponseBase:
    """The 403 page of a role that may not take `action` (names the roles that may)."""
    return render(
        request, "customers/forbidden.html", {"reason": denied_message(action)}, status=403
    )


class MerchantRequiredMixin(LoginRequiredMixin):
    """A portal page: signed in, a staff member of at least one merchant, and with a role
    that may take the page's action (`customers.portal.permissions`).

    `permission` is the action a request needs (default: viewing); `get_permission()` may
    pick it by method or parameters (saving needs more than previewing).
    """

    permission: Action = Action.VIEW

    def get_permission(self, request: HttpRequest) -> Action:
        return self.permission

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        membership = getattr(request, "membership", None)
        if membership is None:
            return render(request, "customers/no_merchant.html", status=403)
        action = self.get_permission(request)
        if not may(request, action):
            return forbidden(request, action)
        return super().dispatch(request, *args, **kwargs)
