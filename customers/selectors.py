"""Reads for the portal's customer pages.

Every function takes the current merchant and starts from that merchant's rows: this is where
the customer pages are scoped (see `customers.portal.tenancy`). None of them ever adds another
merchant's rows to a queryset it is given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Exists,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Concat, Lower

from customers.compiled import CompiledQuery
from customers.models import (
    Branch,
    Customer,
    CustomerMetrics,
    CustomerTag,
    LineItem,
    Merchant,
    Redemption,
    Tag,
    Tier,
    Transaction,
)


def customer_list(*, merchant: Merchant) -> QuerySet[Customer]:
    """The merchant's customers with everything the list page shows, in a fixed number of
    queries: tier, home branch and metrics joined, tags prefetched (one query per page)."""
    return (
        Customer.objects.filter(merchant=merchant)
        .select_related("tier", "home_branch", "metrics")
        .prefetch_related(Prefetch("tags", queryset=Tag.objects.order_by("name")))
        .order_by("external_id", "pk")
    )


def customer_search(queryset: QuerySet[Customer], query: str) -> QuerySet[Customer]:
    """Customers whose first, last or full name, email, phone or external id contains
    `query`, case-insensitively.

    The query (runs of spaces collapsed) is matched as one substring against each field; the
    full name is `first_name + " " + last_name`, so "ann lee" finds Ann Lee, "lee ann" does not.
    """
    query = " ".join(query.split())
    if not query:
        return queryset
    return queryset.alias(
        _full_name=Concat("first_name", Value(" "), "last_name"),
    ).filter(
        Q(first_name__icontains=query)
        | Q(last_name__icontains=query)
        | Q(_full_name__icontains=query)
        | Q(email__icontains=query)
        | Q(phone__icontains=query)
        | Q(external_id__icontains=query)
    )


def customers_with_any_tag(queryset: QuerySet[Customer], tags: list[Tag]) -> QuerySet[Customer]:
    """Customers carrying at least one of `tags` (an `Exists`, so no duplicate rows)."""
    return queryset.filter(
        Exists(CustomerTag.objects.filter(customer=OuterRef("pk"), tag__in=tags))
    )


def first_tag_name() -> Subquery:
    """The alphabetically first tag name of the outer customer (NULL without tags): the sort
    key of the list's tags column."""
    return Subquery(
        CustomerTag.objects.filter(customer=OuterRef("pk"))
        .annotate(_lname=Lower("tag__name"))
        .order_by("_lname")
        .values("_lname")[:1]
    )


def merchant_tiers(*, merchant: Merchant) -> QuerySet[Tier]:
    return Tier.objects.filter(merchant=merchant).order_by("rank", "name")


def merchant_tags(*, merchant: Merchant) -> QuerySet[Tag]:
    return Tag.objects.filter(merchant=merchant).order_by("name")


def merchant_branches(*, merchant: Merchant) -> QuerySet[Branch]:
    return Branch.objects.filter(merchant=merchant).order_by("name", "code")


def merchant_customer_types(*, merchant: Merchant) -> list[str]:
    """The distinct, non-blank customer types the merchant's customers have, sorted."""
    return list(
        Customer.objects.filter(merchant=merchant)
        .exclude(customer_type="")
        .order_by("customer_type")
        .values_list("customer_type", flat=True)
        .distinct()
    )


def merchant_day_bounds(*, merchant: Merchant, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The aware instants [start, end) of `day` in the merchant's time zone.

    The end is the start of the next local day, so a 23- or 25-hour DST day is covered whole.
    """
    tz = merchant.tzinfo
    start = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return start, end


def customer_detail_queryset(*, merchant: Merchant) -> QuerySet[Customer]:
    """The merchant's customers for the detail page (look one up with get_object_or_404)."""
    return (
        Customer.objects.filter(merchant=merchant)
        .select_related("tier", "home_branch", "metrics")
        .prefetch_related(Prefetch("tags", queryset=Tag.objects.order_by("name")))
    )


@dataclass(frozen=True)
class CustomerCard:
    """A customer as the API answers it, read without building models: `customer` has every
    column of the customer by attribute name (`tier_id`, ...) plus `tier` (its name) and
    `home_branch` (its code); `metrics` every column of its metrics row, or None; `tags`
    the tag names, by name."""

    customer: dict[str, Any]
    metrics: dict[str, Any] | None
    tags: list[str]


_CUSTOMER_FIELDS = Customer._meta.concrete_fields
_METRICS_FIELDS = CustomerMetrics._meta.concrete_fields
#: Stand-ins compiled into the card's queries in place of the real values.
_CARD_MERCHANT, _CARD_CUSTOMER, _CARD_EXTERNAL_ID = -7_000_000_011, -7_000_000_012, "\x1fcard"

CARD_QUERY = CompiledQuery(
    lambda merchant_id, external_id: Customer.objects.filter(
        merchant_id=merchant_id, external_id=external_id
    ).values_list(
        *(f.name for f in _CUSTOMER_FIELDS),
        "tier__name",
        "home_branch__code",
        *(f"metrics__{f.name}" for f in _METRICS_FIELDS),
    ),
    merchant_id=_CARD_MERCHANT,
    external_id=_CARD_EXTERNAL_ID,
)
CARD_TAGS_QUERY = CompiledQuery(
    lambda customer_id: (
        Tag.objects.filter(customers=customer_id).order_by("name", "pk").values_list("name")
    ),
    customer_id=_CARD_CUSTOMER,
)


def customer_card(*, merchant: Merchant, external_id: str) -> CustomerCard | None:
    """The merchant's customer with this external id (None when the merchant has none):
    two prepared statements compiled once (`customers.compiled`), `CARD_QUERY` and
    `CARD_TAGS_QUERY`, for the API's most frequent read (whose GET runs both as parts of one
    statement: `campaigns.selectors.customer_read`)."""
    rows = CARD_QUERY.rows(merchant_id=merchant.pk, external_id=external_id)
    if not rows:
        return None
    customer_id = rows[0][0]  # the first column, the customer's id
    tags = [name for (name,) in CARD_TAGS_QUERY.rows(customer_id=customer_id)]
    return customer_card_from(rows[0], tags)


def customer_card_from(row: tuple[Any, ...], tags: list[str]) -> CustomerCard:
    """The card of a `CARD_QUERY` row (read by its `convert`) and the customer's tag names."""
    values = iter(row)
    customer = {f.attname: next(values) for f in _CUSTOMER_FIELDS}
    customer["tier"], customer["home_branch"] = next(values), next(values)
    metrics = {f.attname: next(values) for f in _METRICS_FIELDS}
    return CustomerCard(
        customer=customer,
        metrics=metrics if metrics["customer_id"] is not None else None,
        tags=tags,
    )


def customer_transactions(*, customer: Customer) -> QuerySet[Transaction]:
    """The customer's transactions, newest first, with branch and line items (and their
    products) loaded in two extra queries per page, whatever the page size."""
    return (
        Transaction.objects.filter(merchant_id=customer.merchant_id, customer=customer)
        .select_related("branch")
        .prefetch_related(
            Prefetch(
                "items",
                queryset=LineItem.objects.select_related("product").order_by("id"),
            )
        )
        .order_by("-occurred_at", "-pk")
    )


def customer_redemptions(*, customer: Customer) -> QuerySet[Redemption]:
    """The customer's redemptions, newest first."""
    return Redemption.objects.filter(merchant_id=customer.merchant_id, customer=customer).order_by(
        "-redeemed_at", "-pk"
    )
