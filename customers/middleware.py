"""Sets `request.merchant`: the signed-in user's current merchant, or None.

This is where tenancy starts: the merchant comes from the user's own staff memberships
(the one chosen in the session, else the first), never from a URL or form parameter, so
portal views that start their queries from `request.merchant` cannot reach another
merchant's rows.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from customers.models import StaffMembership

SESSION_KEY = "current_merchant_id"


class CurrentMerchantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.merchant = None  # type: ignore[attr-defined]
        request.membership = None  # type: ignore[attr-defined]
        request.memberships = []  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            # One query for all of the user's memberships: the current one is picked from
            # them here, and the navigation bar's merchant switcher lists them.
            memberships = list(
                StaffMembership.objects.filter(user=user)
                .select_related("merchant")
                .order_by("merchant__name", "merchant_id")
            )
            wanted = request.session.get(SESSION_KEY)
            membership = next((m for m in memberships if m.merchant_id == wanted), None)
            if membership is None and memberships:
                membership = memberships[0]
            request.memberships = memberships  # type: ignore[attr-defined]
            if membership is not None:
                request.merchant = membership.merchant  # type: ignore[attr-defined]
                request.membership = membership  # type: ignore[attr-defined]
        return self.get_response(request)
