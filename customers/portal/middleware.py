"""Sets `request.merchant`: the signed-in user's current merchant, or None.

This is where tenancy starts: the merchant comes from the user's own staff memberships
(the one chosen in the session, else the first), never from a URL or form parameter, so
portal views that start their queries from `request.merchant` cannot reach another
merchant's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from csp.constants import HEADER as CSP_HEADER
from csp.middleware import CSPMiddleware
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render

from customers.models import StaffMembership

logger = logging.getLogger(__name__)

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


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, except that a response that already carries a policy keeps
    it and the portal's is not built: the JSON API's answers carry their own, which forbids
    everything (`config.api.JSON_POLICY`). Building the portal's policy (and the unused
    report-only one) on each answer was about a twentieth of a member app's customer read."""

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if CSP_HEADER in response:
            return response
        return super().process_response(request, response)


#: PostgreSQL error codes of a lock that could not be had: deadlock detected, lock not
#: available, serialization failure.
_PG_BUSY_CODES = frozenset({"40P01", "55P03", "40001"})
BUSY_RETRY_SECONDS = 5


def is_database_busy(exc: BaseException) -> bool:
    """Did a write lose the wait for a lock? (SQLite: "database is locked" after the busy
    timeout; PostgreSQL: a deadlock or a lock timeout.) The failed transaction has rolled
    back, so nothing of it was written and the same request may simply be tried again."""
    if not isinstance(exc, OperationalError):
        return False
    if "database is locked" in str(exc) or "database table is locked" in str(exc):
        return True
    return getattr(exc.__cause__, "sqlstate", None) in _PG_BUSY_CODES


class DatabaseBusyMiddleware:
    """Answers "busy, try again" (503 with Retry-After) instead of a 500 when a request's
    write loses the wait for a database lock; see `is_database_busy`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_busy(exception):
            return None
        logger.warning("Database busy on %s %s: %s", request.method, request.path, exception)
        response = render(request, "busy.html", {"retry": BUSY_RETRY_SECONDS}, status=503)
        response["Retry-After"] = str(BUSY_RETRY_SECONDS)
        return response
