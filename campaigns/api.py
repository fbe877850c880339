"""The campaigns app's JSON API router (mounted under `/api/v1/` by `config/api.py`).

`GET /customers/{external_id}` answers what a member app asks: the customer with metrics,
scores and tier (`customers`), its segments (`segments`) and the offers and content blocks
it sees now (`campaigns.selectors.customer_sees`). It reads all three apps, so it lives in
the top one of them: `customers` may not import `segments` or `campaigns`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from campaigns.models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from campaigns.selectors import customer_read, webhook_delivery_counts
from campaigns.services import webhooks
from customers.api import CUSTOMER_PATH, CustomerOut, customer_json
from customers.api import router as customers_router
from customers.portal.api import AUTH_ERRORS, READ, WRITE, ErrorsOut, api_merchant, errors_body

router = Router(tags=["campaigns"])


class MetricsOut(Schema):
    orders_count: int
    gross_spend: Decimal
    refunds_count: int
    refunds_total: Decimal
    net_spend: Decimal
    avg_order_value: Decimal | None
    first_purchase_at: dt.datetime | None
    last_purchase_at: dt.datetime | None
    redemptions_count: int
    units: int


class RfmOut(Schema):
    recency: int | None
    frequency: int | None
    monetary: int | None
    group: str


class PredictionsOut(Schema):
    p_alive: float | None
    churn_risk: float | None
    expected_orders_90d: float | None
    p_order_30d: float | None
    predicted_clv: Decimal | None


class ScoresOut(Schema):
    lifecycle_stage: str | None
    rfm: RfmOut
    predictions: PredictionsOut
    smart_segment: str


class SegmentOut(Schema):
    slug: str
    name: str
    since: dt.datetime


class SeenOut(Schema):
    kind: str
    id: int
    name: str
    because: str
    code: str


class CustomerDetailOut(CustomerOut):
    metrics: MetricsOut | None
    scores: ScoresOut | None
    segments: list[SegmentOut]
    offers: list[SeenOut]
    content: list[SeenOut]


def _scores(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "lifecycle_stage": metrics["lifecycle_stage"],
        "rfm": {
            "recency": metrics["rfm_recency"],
            "frequency": metrics["rfm_frequency"],
            "monetary": metrics["rfm_monetary"],
            "group": metrics["rfm_group"],
        },
        "predictions": {name: metrics[name] for name in PredictionsOut.model_fields},
        "smart_segment": metrics["smart_segment"],
    }


# TRICKY: registered on the customers router, not this one. ninja makes one URL pattern per
# path of each router, and Django stops at the first pattern that matches: the same path in
# two routers would answer the second router's methods with 405. campaigns may import
# customers (never the reverse), so the read joins the PUT here.
@customers_router.get(
    CUSTOMER_PATH,
    auth=READ,
    response={200: CustomerDetailOut, 404: ErrorsOut, **AUTH_ERRORS},
    summary="A customer, its segments and what it sees now",
)
def customer_get(request: HttpRequest, external_id: str) -> Any:
    """The merchant's customer by external id (another merchant's: 404) with metrics,
    scores, tier, segments (since when) and the offers (with the customer's code) and
    content blocks it sees now, each with the segment that decided (`because`)."""
    merchant = api_merchant(request)
    if "\x00" in external_id:
        # No stored id holds NUL (the upsert refuses it); PostgreSQL cannot even compare it.
        raise Http404
    read = customer_read(merchant=merchant, external_id=external_id)
    if read is None:
        raise Http404
    metrics = read.card.metrics
    # TRICKY: answered as JSON directly (Django's encoder, the one ninja uses) rather than
    # validated against `CustomerDetailOut`, which a member app's most frequent request
    # paid for on every call; the values are the columns', of the schema's types.
    return JsonResponse(
        {
            **customer_json(read.card),
            "metrics": (
                {name: metrics[name] for name in MetricsOut.model_fields} if metrics else None
            ),
            "scores": _scores(metrics) if metrics else None,
            "segments": [
                {"slug": slug, "name": name, "since": since} for slug, name, since in read.segments
            ],
            "offers": [asdict(item) for item in read.sees if item.kind == "offer"],
            "content": [asdict(item) for item in read.sees if item.kind == "content"],
        }
    )


# --- webhooks -------------------------------------------------------------------------------

WEBHOOK_PATH = "/webhooks/{endpoint_id}"
MSG_SWITCHED_OFF_BY_API = "Switched off through the API."
WebhookEventName = Literal[
    "segment.entered",
    "segment.exited",
    "customer.lifecycle_changed",
    "customer.tier_changed",
    "campaign.completed",
    "import.completed",
]


class WebhookIn(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=500)
    events: list[WebhookEventName]
    description: str = Field(default="", max_length=200)


class WebhookPatch(Schema):
    """The fields to change; those left out keep their value. `active`: switch the
    endpoint on (what waited is sent) or off."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=500)
    events: list[WebhookEventName] | None = None
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class WebhookOut(Schema):
    id: int
    url: str
    description: str
    events: list[str]
    active: bool
    failing_since: dt.datetime | None
    disabled_at: dt.datetime | None
    disabled_reason: str
    created_at: dt.datetime
    #: Deliveries by status: pending, sending, succeeded, failed.
    deliveries: dict[str, int]


class WebhookCreatedOut(WebhookOut):
    #: The signing secret, shown in this answer only.
    secret: str


class WebhookListOut(Schema):
    items: list[WebhookOut]


class SecretOut(Schema):
    secret: str


class WebhookDeliveryOut(Schema):
    id: int
    message_id: str
    event: str
    events: int
    status: str
    attempts: int
    response_status: int | None
    duration_ms: int | None
    error: str
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None


class WebhookDeliveriesOut(Schema):
    items: list[WebhookDeliveryOut]
    next: str | None


class DeliveriesQuery(Schema):
    status: Literal["pending", "sending", "succeeded", "failed"] | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    #: The `next` link's cursor: deliveries older than this one.
    before: int | None = Field(default=None, ge=1)


def _endpoint(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    # The token's merchant's endpoints only: another merchant's id is not found.
    return get_object_or_404(
        WebhookEndpoint.objects.filter(merchant=api_merchant(request)), pk=endpoint_id
    )


def _webhook_out(
    endpoint: WebhookEndpoint, counts: dict[str, int] | None = None, **extra: Any
) -> dict[str, Any]:
    if counts is None:
        counts = webhook_delivery_counts(endpoint_ids=[endpoint.pk])[endpoint.pk]
    return {
        "id": endpoint.pk,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events,
        "active": endpoint.is_active,
        "failing_since": endpoint.failing_since,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": endpoint.created_at,
        "deliveries": counts,
        **extra,
    }


def _delivery_out(delivery: WebhookDelivery) -> dict[str, Any]:
    pending = delivery.status == WebhookDeliveryStatus.PENDING
    return {
        "id": delivery.pk,
        "message_id": delivery.message.key,
        "event": delivery.message.event,
        "events": delivery.message.size,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_status": delivery.response_status,
        "duration_ms": delivery.duration_ms,
        "error": delivery.error,
        "created_at": delivery.created_at,
        "last_attempt_at": delivery.last_attempt_at,
        "next_attempt_at": delivery.next_attempt_at if pending else None,
        "delivered_at": delivery.delivered_at,
    }


@router.get(
    "/webhooks", response={200: WebhookListOut, **AUTH_ERRORS}, summary="List webhook endpoints"
)
def webhook_list(request: HttpRequest) -> Any:
    endpoints = list(WebhookEndpoint.objects.filter(merchant=api_merchant(request)).order_by("pk"))
    counts = webhook_delivery_counts(endpoint_ids=[e.pk for e in endpoints])
    return {"items": [_webhook_out(e, counts[e.pk]) for e in endpoints]}


@router.post(
    "/webhooks",
    auth=WRITE,
    response={201: WebhookCreatedOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Register a webhook endpoint",
)
def webhook_post(request: HttpRequest, payload: WebhookIn) -> Any:
    """The answer carries the signing secret, once. The URL must be http(s) and, in
    production, resolve to addresses on the internet (not loopback or private)."""
    endpoint = webhooks.endpoint_create(
        merchant=api_merchant(request),
        url=payload.url,
        events=payload.events,
        description=payload.description,
    )
    return Status(201, _webhook_out(endpoint, secret=endpoint.secret))


@router.get(
    WEBHOOK_PATH,
    response={200: WebhookOut, 404: ErrorsOut, **AUTH_ERRORS},
    summary="Read a webhook endpoint",
)
def webhook_get(request: HttpRequest, endpoint_id: int) -> Any:
    return _webhook_out(_endpoint(request, endpoint_id))


@router.patch(
    WEBHOOK_PATH,
    auth=WRITE,
    response={200: WebhookOut, 404: ErrorsOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Change, switch on or switch off a webhook endpoint",
)
def webhook_patch(request: HttpRequest, endpoint_id: int, payload: WebhookPatch) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    changes = payload.model_dump(exclude_unset=True)
    for field in ("url", "events", "description", "active"):
        if field in changes and changes[field] is None:
            return Status(422, errors_body((field, "This field may not be null.")))
    if {"url", "events", "description"} & set(changes):
        webhooks.endpoint_update(
            endpoint=endpoint,
            url=changes.get("url", endpoint.url),
            events=changes.get("events", endpoint.events),
            description=changes.get("description", endpoint.description),
        )
    if changes.get("active") is True and not endpoint.is_active:
        webhooks.endpoint_enable(endpoint=endpoint)
    elif changes.get("active") is False and endpoint.is_active:
        webhooks.endpoint_disable(endpoint=endpoint, reason=MSG_SWITCHED_OFF_BY_API)
    return _webhook_out(endpoint)


@router.delete(
    WEBHOOK_PATH,
    auth=WRITE,
    response={204: None, 404: ErrorsOut, **AUTH_ERRORS},
    summary="Remove a webhook endpoint and its delivery log",
)
def webhook_delete(request: HttpRequest, endpoint_id: int) -> Any:
    webhooks.endpoint_delete(endpoint=_endpoint(request, endpoint_id))
    return Status(204, None)


@router.post(
    WEBHOOK_PATH + "/secret",
    auth=WRITE,
    response={200: SecretOut, 404: ErrorsOut, **AUTH_ERRORS},
    summary="Replace the signing secret (the old one stops at once)",
)
def webhook_secret_rotate(request: HttpRequest, endpoint_id: int) -> Any:
    return {"secret": webhooks.endpoint_secret_rotate(endpoint=_endpoint(request, endpoint_id))}


@router.get(
    WEBHOOK_PATH + "/deliveries",
    response={200: WebhookDeliveriesOut, 404: ErrorsOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="The endpoint's delivery log, newest first",
)
def webhook_deliveries(
    request: HttpRequest, endpoint_id: int, query: Query[DeliveriesQuery]
) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    deliveries = endpoint.deliveries.select_related("message").order_by("-pk")
    if query.status:
        deliveries = deliveries.filter(status=query.status)
    if query.before:
        deliveries = deliveries.filter(pk__lt=query.before)
    page = list(deliveries[: query.limit + 1])
    following = None
    if len(page) > query.limit:
        page = page[: query.limit]
        params: dict[str, Any] = {"limit": query.limit, "before": page[-1].pk}
        if query.status:
            params["status"] = query.status
        following = request.build_absolute_uri(f"{request.path}?{urlencode(params)}")
    return {"items": [_delivery_out(d) for d in page], "next": following}


@router.post(
    WEBHOOK_PATH + "/deliveries/{delivery_id}/resend",
    auth=WRITE,
    response={202: WebhookDeliveryOut, 404: ErrorsOut, 409: ErrorsOut, **AUTH_ERRORS},
    summary="Send a delivery's message again (same webhook-id)",
)
def webhook_resend(request: HttpRequest, endpoint_id: int, delivery_id: int) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    delivery = get_object_or_404(
        endpoint.deliveries.select_related("message", "endpoint"), pk=delivery_id
    )
    try:
        webhooks.delivery_resend(delivery=delivery)
    except ValidationError as exc:
        return Status(409, errors_body(*(("", message) for message in exc.messages)))
    delivery.refresh_from_db()
    return Status(202, _delivery_out(delivery))
