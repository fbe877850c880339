"""Reads for the segment pages.

Every function takes the current merchant and starts from that merchant's rows: this is where
the segment pages are scoped (see `customers.tenancy`). Lookups by id go through
`segment_queryset(merchant=...)`, so another merchant's ids are simply not found (404).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from customers.models import Branch, Customer, Merchant, Product, Tag, Tier
from segments.builder import PRODUCT_LISTS
from segments.models import Segment, SegmentKind, SegmentMembership

#: A multi-select longer than this is not usable; the rest can be pasted as JSON.
MAX_OPTIONS = 1000
PRODUCT_COLUMNS = {
    "product_types": "product_type",
    "brands": "brand",
    "categories": "category",
    "skus": "sku",
}


def segment_queryset(*, merchant: Merchant) -> QuerySet[Segment]:
    return Segment.objects.filter(merchant=merchant)


def segment_list(*, merchant: Merchant) -> QuerySet[Segment]:
    return segment_queryset(merchant=merchant).order_by("name")


def segment_members(*, segment: Segment) -> QuerySet[SegmentMembership]:
    return (
        SegmentMembership.objects.filter(segment=segment)
        .select_related("customer")
        .order_by("customer__external_id")
    )


def merchant_customer(*, merchant: Merchant, external_id: str) -> Customer | None:
    return Customer.objects.filter(merchant=merchant, external_id=external_id.strip()).first()


def customer_queryset(*, merchant: Merchant) -> QuerySet[Customer]:
    return Customer.objects.filter(merchant=merchant)


def customer_segments(*, customer: Customer) -> QuerySet[Segment]:
    """The segments the customer is a member of now (materialized memberships)."""
    return Segment.objects.filter(
        merchant_id=customer.merchant_id, memberships__customer=customer
    ).order_by("name")


def active_dynamic_segments(*, merchant: Merchant) -> QuerySet[Segment]:
    return segment_queryset(merchant=merchant).filter(kind=SegmentKind.DYNAMIC, is_active=True)


def _distinct(qs: QuerySet[Any], column: str) -> list[str]:
    values = qs.exclude(**{column: ""}).order_by(column).values_list(column, flat=True).distinct()
    return [str(v) for v in values[:MAX_OPTIONS]]


def builder_options(*, merchant: Merchant, segment: Segment | None = None) -> dict[str, list[str]]:
    """The merchant's own names for the builder's multi-selects, by field key (and
    `products.<list>` for the `purchased` sub-form)."""
    customers = Customer.objects.filter(merchant=merchant)
    branches = _distinct(Branch.objects.filter(merchant=merchant), "code")
    others = segment_queryset(merchant=merchant)
    if segment is not None:
        others = others.exclude(pk=segment.pk)
    options = {
        "customer_type": _distinct(customers, "customer_type"),
        "tier": _distinct(Tier.objects.filter(merchant=merchant), "name"),
        "tags": _distinct(Tag.objects.filter(merchant=merchant), "name"),
        "home_branch": branches,
        "visited_branch": branches,
        "segment": _distinct(others, "slug"),
    }
    products = Product.objects.filter(merchant=merchant)
    for key, _ in PRODUCT_LISTS:
        options[f"products.{key}"] = _distinct(products, PRODUCT_COLUMNS[key])
    return options
