"""Reads for the portal's customer pages.

Every function takes the current merchant and starts from that merchant's rows: this is where
the customer pages are scoped (see `customers.portal.tenancy`). None of them ever adds another
merchant's rows to a queryset it is given.
"""

from __future__ import annotations

import datetime as dt

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

from customers.models import (
    Branch,
    Customer,
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
