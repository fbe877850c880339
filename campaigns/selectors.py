"""Reads of offers and content blocks: what a customer sees now, and which segments they use.

Every query starts from the customer's (or the segments') own merchant's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import TypeVar

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from campaigns.models import ContentBlock, ContentSegment, Offer, OfferSegment, Targeted
from customers.models import Customer
from segments.models import Segment, SegmentMembership

T = TypeVar("T", bound=Targeted)


def _visible(
    model: type[T],
    link: type[OfferSegment] | type[ContentSegment],
    owner: str,
    customer: Customer,
    today: dt.date,
) -> QuerySet[T]:
    """The merchant's active `model` rows valid today that the customer is in an included
    segment of and in no excluded one, each with `because`: the name of the first (by name)
    included segment the customer is in. One query."""
    member = SegmentMembership.objects.filter(
        customer_id=customer.pk, segment_id=OuterRef("segment_id")
    )
    links = link.objects.filter(**{owner: OuterRef("pk")})
    included = links.filter(exclude=False).filter(Exists(member))
    excluded = links.filter(exclude=True).filter(Exists(member))
    return (
        model._default_manager.filter(merchant_id=customer.merchant_id, is_active=True)
        .filter(Q(valid_from__isnull=True) | Q(valid_from__lte=today))
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gte=today))
        .filter(Exists(included))
        .exclude(Exists(excluded))
        .annotate(because=Subquery(included.order_by("segment__name").values("segment__name")[:1]))
    )


def visible_offers(*, customer: Customer, today: dt.date | None = None) -> QuerySet[Offer]:
    """The offers the customer sees now (today: the merchant's), with `because`."""
    day = today or customer.merchant.today()
    return _visible(Offer, OfferSegment, "offer", customer, day).order_by("name")


def visible_content(*, customer: Customer, today: dt.date | None = None) -> QuerySet[ContentBlock]:
    """The content blocks the customer sees now (today: the merchant's), with `because`."""
    day = today or customer.merchant.today()
    return _visible(ContentBlock, ContentSegment, "block", customer, day).order_by("title")


def segment_users(segments: Collection[Segment]) -> dict[int, list[str]]:
    """For each segment, the offers and content blocks aimed at it or kept from it: the
    segments app's removal plan asks this (`segments.selectors.register_segment_usage`)."""
    ids = [s.pk for s in segments]
    users: dict[int, list[str]] = {}
    for segment_id, name in (
        OfferSegment.objects.filter(segment_id__in=ids)
        .order_by("offer__name")
        .values_list("segment_id", "offer__name")
    ):
        users.setdefault(segment_id, []).append(f"the offer “{name}”")
    for segment_id, title in (
        ContentSegment.objects.filter(segment_id__in=ids)
        .order_by("block__title")
        .values_list("segment_id", "block__title")
    ):
        users.setdefault(segment_id, []).append(f"the content block “{title}”")
    return users
