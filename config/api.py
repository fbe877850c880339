"""The JSON API: one NinjaAPI object, mounted at `/api/v1/` (`config/urls.py`), with one
router per app (`<app>/api.py`) calling that app's services and selectors.

Every answer that is not a success has the same shape (`customers.portal.api.ErrorsOut`):
`{"errors": [{"path": "email", "message": "..."}]}`. Authentication is a bearer token per
merchant (`customers.portal.api.BearerToken`), never the session: the API is not open to
cross-site requests, so it needs no CSRF token (ninja checks CSRF only for cookie-based
authentication, and its views are exempt from Django's middleware). Each token may send
`API_RATE_LIMIT` requests a minute (`customers.portal.api.TokenRateThrottle`); over it, 429
with `Retry-After`, and every counted answer says where the token stands (`RateLimit-*`).

The interactive docs page is `/api/v1/docs`: Swagger UI as django-ninja ships it
(`ninja/static/ninja/`, served from this site like every other static file, because "ninja"
is in INSTALLED_APPS: without it ninja renders a page that loads Swagger UI from a CDN). Its
script is a file, not inline, so the Content-Security-Policy needs no exception; the online
validator, which would send the schema to swagger.io, is off. The schema is
`/api/v1/openapi.json`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, Throttled
from ninja.errors import ValidationError as NinjaValidationError

# Importing the campaigns router also adds the customer read to the customers router.
from campaigns.api import router as campaigns_router
from customers.api import router as customers_router
from customers.portal.api import (
    MSG_METHOD_NOT_ALLOWED,
    MSG_NOT_FOUND,
    MSG_RATE_LIMITED,
    MSG_UNAUTHENTICATED,
    READ,
    TOKEN_RATE,
    RateLimit,
    ScopeDenied,
    errors_body,
    rate_limit_headers,
)
from segments.api import router as segments_router

api = NinjaAPI(
    title="Segment Portal API",
    version="v1",
    description="Customers in and out of a merchant's segment portal (see docs/api.md).",
    auth=READ,
    urls_namespace="api",
    docs_url="/docs",
    docs=Swagger(settings={"validatorUrl": None}),
    openapi_url="/openapi.json",
    throttle=[TOKEN_RATE],
)

#: Where ninja says a bad value was, dropped from the path: `["body", "payload", "email"]`
#: is `email`; a path or query parameter is its name.
_SOURCES = frozenset({"body", "path", "query", "header", "cookie", "form", "file"})
_BODY_PARAMETER = "payload"


def _path(location: Any) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in _SOURCES:
        source = parts.pop(0)
        if source == "body" and parts[:1] == [_BODY_PARAMETER]:
            parts.pop(0)
    return ".".join(parts)


def _answer(request: HttpRequest, status: int, *items: tuple[str, str]) -> HttpResponse:
    return api.create_response(request, errors_body(*items), status=status)


@api.exception_handler(NinjaValidationError)
def _invalid_request(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    return _answer(
        request, 422, *((_path(error.get("loc", ())), str(error["msg"])) for error in exc.errors)
    )


@api.exception_handler(DjangoValidationError)
def _refused_by_service(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    # Services raise by field name (`{"email": [...]}`); a message without a field is about
    # the request as a whole.
    if hasattr(exc, "error_dict"):
        items = [
            ("" if field == "__all__" else field, message)
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    else:
        items = [("", message) for message in exc.messages]
    return _answer(request, 422, *items)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _answer(request, 401, ("", MSG_UNAUTHENTICATED))
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(ScopeDenied)
def _scope_denied(request: HttpRequest, exc: ScopeDenied) -> HttpResponse:
    return _answer(request, 403, ("", str(exc)))


@api.exception_handler(Throttled)
def _rate_limited(request: HttpRequest, exc: Throttled) -> HttpResponse:
    state: RateLimit = request.rate_limit  # type: ignore[attr-defined]  # TokenRateThrottle's
    response = _answer(
        request, 429, ("", MSG_RATE_LIMITED.format(limit=state.limit, wait=state.reset))
    )
    response["Retry-After"] = str(state.reset)
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _answer(request, 404, ("", MSG_NOT_FOUND))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _answer(request, exc.status_code, ("", exc.message))


api.add_router("/", customers_router)
api.add_router("/", campaigns_router)
api.add_router("/", segments_router)


# --- the errors ninja answers outside its handlers, in the same shape -------------------------


def _json_not_allowed(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """ninja answers a method a path does not take with a plain-text 405, and its root
    (`/api/v1/`) with Django's 404 page: the same JSON as every other error instead."""

    @wraps(view)  # keeps csrf_exempt
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            response = view(request, *args, **kwargs)
        except Http404:  # only the root's view raises it: the operations answer 404 themselves
            return _answer(request, 404, ("", MSG_NOT_FOUND))
        if response.status_code != 405 or response.get("Content-Type") == "application/json":
            return response
        allowed = response.get("Allow", "")
        answer = _answer(request, 405, ("", MSG_METHOD_NOT_ALLOWED.format(allowed=allowed)))
        answer["Allow"] = allowed
        return answer

    return wrapped


#: The Content-Security-Policy of every JSON answer: a JSON document loads nothing and is
#: framed by nothing. Set here, it is kept by the portal's middleware, which then does not
#: build the portal's own policy (`customers.portal.middleware.ContentSecurityPolicyMiddleware`).
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"


@csrf_exempt
def _no_such_route(request: HttpRequest, rest: str) -> HttpResponse:
    return _answer(request, 404, ("", MSG_NOT_FOUND))


def _answer_headers(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """The `RateLimit-*` headers on every answer to a request the rate limit counted (the
    throttle leaves where the token stands on the request; ninja offers no hook after it),
    and `JSON_POLICY` on every JSON answer."""

    @wraps(view)  # keeps csrf_exempt
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        state: RateLimit | None = getattr(request, "rate_limit", None)
        if state is not None:
            for header, value in rate_limit_headers(state).items():
                response[header] = value
        if response.get("Content-Type", "").startswith("application/json"):
            response["Content-Security-Policy"] = JSON_POLICY
        return response

    return wrapped


def api_urls() -> tuple[list[Any], str, str]:
    """What `config/urls.py` mounts at `api/v1/` (as `api.urls` would be): ninja's routes,
    then a JSON 404 for any other path under it."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern.callback = _answer_headers(_json_not_allowed(pattern.callback))
    no_route = re_path(r"^(?P<rest>.*)$", _answer_headers(_no_such_route))
    return [*patterns, no_route], app_name, namespace
