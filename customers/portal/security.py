"""Sign-in throttling (django-axes, configured in settings): who is asking, what a locked-out
sign-in sees, and support's unlock.

The client address that failures are counted by:

Without a reverse proxy the address is the connection's (REMOTE_ADDR). Behind N proxies that
each append to X-Forwarded-For (settings.PROXY_COUNT, from DJANGO_PROXY_COUNT), it is the
N-th address from the right: the one the outermost trusted proxy saw. Addresses further left
are whatever the client sent and are never trusted, or anyone could pick a fresh address
for every guess.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_ip(request: HttpRequest) -> str | None:
    proxies = int(getattr(settings, "PROXY_COUNT", 0))
    if proxies > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    remote = request.META.get("REMOTE_ADDR")
    return str(remote) if remote else None


LOCKOUT_TEMPLATE = "registration/locked_out.html"


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """The page a locked-out sign-in gets (django-axes' AXES_LOCKOUT_CALLABLE): what
    happened, for how long, and who can unlock; status 429 with Retry-After."""
    cool_off = settings.AXES_COOLOFF_TIME
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    response = render(
        request,
        LOCKOUT_TEMPLATE,
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes},
        status=429,
    )
    if minutes:
        response["Retry-After"] = str(minutes * 60)
    return response


def unlock_sign_in(*, usernames: list[str]) -> int:
    """Forget the failed sign-ins of these accounts (support's "unlock"); the number of
    attempt records removed."""
    from axes.utils import reset

    return sum(reset(username=username) for username in usernames)
