"""What every app's JSON API router uses (`<app>/api.py`, mounted by `config/api.py`):
bearer-token authentication with a scope, the error shape, and the request's merchant.

A token belongs to one merchant, and that merchant scopes every query of a request: routes
start from `api_merchant(request)`'s rows, so another merchant's ids answer 404.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Schema
from ninja.security.http import HttpAuthBase

from customers.api_tokens import api_token_authenticate
from customers.models import ApiToken, ApiTokenScope, Merchant

MSG_READ_ONLY = "This token may only read; this request writes (it needs a write token)."
MSG_UNAUTHENTICATED = (
    "A valid API token is required: send `Authorization: Bearer <token>` "
    "(the token may be missing, mistyped, revoked or expired)."
)
MSG_NOT_FOUND = "Not found."
MSG_METHOD_NOT_ALLOWED = "This path does not take this method (it takes: {allowed})."


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
AUTH_ERRORS: dict[int, Any] = {401: ErrorsOut, 403: ErrorsOut}
