"""What every app's JSON API router uses (`<app>/api.py`, mounted by `config/api.py`):
bearer-token authentication with a scope, the rate limit per token, the error shape, and the
request's merchant.

A token belongs to one merchant, and that merchant scopes every query of a request: routes
start from `api_merchant(request)`'s rows, so another merchant's ids answer 404.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja import Schema
from ninja.security.http import HttpAuthBase
from ninja.throttling import BaseThrottle

from customers.api_tokens import api_token_authenticate
from customers.models import ApiToken, ApiTokenScope, Merchant

MSG_READ_ONLY = "This token may only read; this request writes (it needs a write token)."
MSG_UNAUTHENTICATED = (
    "A valid API token is required: send `Authorization: Bearer <token>` "
    "(the token may be missing, mistyped, revoked or expired)."
)
MSG_NOT_FOUND = "Not found."
MSG_METHOD_NOT_ALLOWED = "This path does not take this method (it takes: {allowed})."
MSG_RATE_LIMITED = (
    "Too many requests with this token: at most {limit} a minute. "
    "Retry after {wait} seconds (the Retry-After header)."
)


class ScopeDenied(Exception):
    """The token is valid but its scope does not allow the request (answered 403)."""


class BearerToken(HttpAuthBase):
    """`Authorization: Bearer <token>`, looked up by `customers.api_tokens`. `scope`: what
    the route needs; a read token on a write route is refused with 403, a bad token 401."""

    openapi_scheme = "bearer"

    def __init__(self, scope: str = ApiTokenScope.READ) -> None:
        self.scope = scope
        super().__init__()

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        # ninja's HttpBearer logs the whole header (the token) under DEBUG: not here.
        scheme, _, plaintext = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not plaintext.strip():
            return None
        token = api_token_authenticate(plaintext=plaintext.strip())
        if token is None:
            return None
        if self.scope == ApiTokenScope.WRITE and token.scope != ApiTokenScope.WRITE:
            raise ScopeDenied(MSG_READ_ONLY)
        return token


READ = BearerToken(ApiTokenScope.READ)
WRITE = BearerToken(ApiTokenScope.WRITE)


@dataclass(frozen=True)
class RateLimit:
    """Where a token stands in the current window (the `RateLimit-*` headers)."""

    limit: int
    remaining: int
    reset: int  # seconds until the window ends and the count starts again


class TokenRateThrottle(BaseThrottle):
    """At most `settings.API_RATE_LIMIT` requests a minute per token (0: no limit), counted
    in Django's cache in fixed one-minute windows keyed by the token's id.

    A ninja throttle, so it runs after the authentication (an unauthenticated request is
    answered 401 before it counts). The count is `cache.add` then `cache.incr`, atomic on
    Redis and in the in-memory cache, so two processes sharing Redis never both take the
    last request of a window; a fixed window lets a client send up to twice the limit across
    a window's boundary, which is the price of one counter per token. Every request counts,
    a refused one too. `clock` is there for tests."""

    WINDOW = 60
    clock: Callable[[], float] = staticmethod(time.time)

    def allow_request(self, request: HttpRequest) -> bool:
        limit: int = settings.API_RATE_LIMIT
        token: ApiToken | None = getattr(request, "auth", None)
        if limit <= 0 or token is None:
            return True
        now = self.clock()
        window = int(now // self.WINDOW)
        key = f"api-rate:{token.pk}:{window}"
        # The key names its window, so it never needs resetting: it expires after it.
        cache.add(key, 0, timeout=self.WINDOW + 5)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr (the window just ended)
            cache.add(key, 1, timeout=self.WINDOW + 5)
            count = 1
        reset = max(1, math.ceil((window + 1) * self.WINDOW - now))
        state = RateLimit(limit=limit, remaining=max(0, limit - count), reset=reset)
        request.rate_limit = state  # type: ignore[attr-defined]  # for the headers
        return count <= limit

    def wait(self) -> float | None:
        # ninja asks after a refusal, without the request: the state is on the request,
        # and config/api.py's handler of Throttled sets Retry-After from it.
        return None


TOKEN_RATE = TokenRateThrottle()


def rate_limit_headers(state: RateLimit) -> dict[str, str]:
    """The IETF draft's `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`."""
    return {
        "RateLimit-Limit": str(state.limit),
        "RateLimit-Remaining": str(state.remaining),
        "RateLimit-Reset": str(state.reset),
    }


def api_merchant(request: HttpRequest) -> Merchant:
    """The merchant of the request's token (set by `BearerToken`): every route's scope."""
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    return token.merchant


class ErrorItem(Schema):
    path: str
    message: str


class ErrorsOut(Schema):
    """Every error answer: `{"errors": [{"path": "email", "message": "..."}]}`; `path` names
    the field (dotted inside nested objects), empty when the error is about the request."""

    errors: list[ErrorItem]


def errors_body(*items: tuple[str, str]) -> dict[str, Any]:
    return {"errors": [{"path": path, "message": message} for path, message in items]}


#: The error answers every authenticated route may give (for the OpenAPI document).
AUTH_ERRORS: dict[int, Any] = {401: ErrorsOut, 403: ErrorsOut, 429: ErrorsOut}
