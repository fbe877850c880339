"""The campaigns app's JSON API router (mounted under `/api/v1/` by `config/api.py`).

`GET /customers/{external_id}` answers what a member app asks: the customer with metrics,
scores and tier (`customers`), its segments (`segments`) and the offers and content blocks
it sees now (`campaigns.selectors.customer_sees`). It reads all three apps, so it lives in
the top one of them: `customers` may not import `segments` or `campaigns`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema

from campaigns.selectors import customer_sees
from customers.api import CUSTOMER_PATH, CustomerOut, customer_out
from customers.api import router as customers_router
from customers.models import CustomerMetrics
from customers.portal.api import AUTH_ERRORS, READ, ErrorsOut, api_merchant
from customers.selectors import customer_detail_queryset
from segments.selectors import customer_memberships

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


def _scores(metrics: CustomerMetrics) -> dict[str, Any]:
    return {
        "lifecycle_stage": metrics.lifecycle_stage,
        "rfm": {
            "recency": metrics.rfm_recency,
            "frequency": metrics.rfm_frequency,
            "monetary": metrics.rfm_monetary,
            "group": metrics.rfm_group,
        },
        "predictions": {name: getattr(metrics, name) for name in PredictionsOut.model_fields},
        "smart_segment": metrics.smart_segment,
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
    customer = get_object_or_404(
        customer_detail_queryset(merchant=merchant), external_id=external_id
    )
    customer.merchant = merchant  # the token's, already loaded: no query for "today"
    metrics: CustomerMetrics | None = getattr(customer, "metrics", None)
    seen = customer_sees(customer=customer)
    return {
        **customer_out(customer),
        "metrics": (
            {name: getattr(metrics, name) for name in MetricsOut.model_fields} if metrics else None
        ),
        "scores": _scores(metrics) if metrics else None,
        "segments": [
            {"slug": m.segment.slug, "name": m.segment.name, "since": m.since}
            for m in customer_memberships(customer=customer)
        ],
        "offers": [asdict(item) for item in seen if item.kind == "offer"],
        "content": [asdict(item) for item in seen if item.kind == "content"],
    }
