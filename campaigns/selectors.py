"""Reads of offers and content blocks: what a customer sees now, and which segments they use.

Every query starts from the customer's (or the segments') own merchant's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeVar

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from campaigns.models import (
    CampaignSegment,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Offer,
    OfferSegment,
    Targeted,
)
from customers.models import Customer, Merchant, Redemption
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
    """For each segment, the offers, content blocks and campaigns (sent ones too: their
    results name it) aimed at it or kept from it: the segments app's removal plan asks this
    (`segments.selectors.register_segment_usage`)."""
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
    for segment_id, name in (
        CampaignSegment.objects.filter(segment_id__in=ids)
        .order_by("campaign__name")
        .values_list("segment_id", "campaign__name")
    ):
        users.setdefault(segment_id, []).append(f"the campaign “{name}”")
    return users


def offer_list(*, merchant: Merchant, today: dt.date) -> list[OfferRow]:
    """The merchant's offers with what the offers page shows: the segments aimed at and
    kept from, whether it runs today, codes given and free, and redemptions (the import's
    redemptions whose reward is the offer's name, its shared code or one of its codes)."""
    return _offer_rows(Offer.objects.filter(merchant=merchant), today)


def _offer_rows(offers_of_merchant: QuerySet[Offer], today: dt.date) -> list[OfferRow]:
    """`offer_list`'s rows of these offers (one merchant's), by name: two queries."""
    # TRICKY: an empty shared code names no redemption (rewards are never blank).
    redeemed = (
        Redemption.objects.filter(merchant_id=OuterRef("merchant_id"))
        .filter(
            Q(reward=OuterRef("name"))
            | (Q(reward=OuterRef("shared_code")) & ~Q(reward=""))
            | Q(
                reward__in=CouponCode.objects.filter(offer_id=OuterRef(OuterRef("pk"))).values(
                    "code"
                )
            )
        )
        .values("merchant_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    offers = list(
        offers_of_merchant.annotate(
            given=Count("codes", filter=Q(codes__customer__isnull=False), distinct=True),
            free=Count("codes", filter=Q(codes__customer__isnull=True), distinct=True),
            redeemed=Coalesce(Subquery(redeemed), 0),
        ).order_by("name")
    )
    targeting: dict[int, list[OfferSegment]] = {}
    for link in OfferSegment.objects.filter(offer__in=offers).select_related("segment"):
        targeting.setdefault(link.offer_id, []).append(link)
    rows = []
    for offer in offers:
        links = sorted(targeting.get(offer.pk, []), key=lambda link: link.segment.name)
        rows.append(
            OfferRow(
                offer=offer,
                included=[link.segment for link in links if not link.exclude],
                excluded=[link.segment for link in links if link.exclude],
                status=_status(offer, today),
                codes_given=getattr(offer, "given", 0),
                codes_free=getattr(offer, "free", 0),
                redemptions=getattr(offer, "redeemed", 0),
            )
        )
    return rows


@dataclass
class OfferRow:
    offer: Offer
    included: list[Segment]
    excluded: list[Segment]
    status: str
    codes_given: int
    codes_free: int
    redemptions: int


def _status(item: Targeted, today: dt.date) -> str:
    """ "Off", "Starts on …", "Ended on …" or "Running" on the merchant's today."""
    if not item.is_active:
        return "Off"
    if item.valid_from and item.valid_from > today:
        return f"Starts {item.valid_from.day} {item.valid_from:%b %Y}"
    if item.valid_until and item.valid_until < today:
        return f"Ended {item.valid_until.day} {item.valid_until:%b %Y}"
    return "Running"


@dataclass
class ContentRow:
    block: ContentBlock
    included: list[Segment]
    excluded: list[Segment]
    status: str


def content_list(*, merchant: Merchant, today: dt.date) -> list[ContentRow]:
    """The merchant's content blocks with their segments and whether they run today."""
    blocks = list(ContentBlock.objects.filter(merchant=merchant).order_by("title"))
    targeting: dict[int, list[ContentSegment]] = {}
    for link in ContentSegment.objects.filter(block__in=blocks).select_related("segment"):
        targeting.setdefault(link.block_id, []).append(link)
    rows = []
    for block in blocks:
        links = sorted(targeting.get(block.pk, []), key=lambda link: link.segment.name)
        rows.append(
            ContentRow(
                block=block,
                included=[link.segment for link in links if not link.exclude],
                excluded=[link.segment for link in links if link.exclude],
                status=_status(block, today),
            )
        )
    return rows


# -- the portal's offer and content pages -----------------------------------------------------


def offer_queryset(*, merchant: Merchant) -> QuerySet[Offer]:
    """The merchant's offers: every portal lookup of an offer starts here (another
    merchant's id is not found)."""
    return Offer.objects.filter(merchant=merchant)


def content_queryset(*, merchant: Merchant) -> QuerySet[ContentBlock]:
    """The merchant's content blocks (as `offer_queryset`)."""
    return ContentBlock.objects.filter(merchant=merchant)


@dataclass
class OfferDetail:
    """An offer's page: its row of the offers page and its latest codes."""

    row: OfferRow
    codes: list[CouponCode]
    codes_total: int


def offer_detail(*, offer: Offer, today: dt.date, codes: int = 50) -> OfferDetail:
    """The offer with its targeting, status, codes given and free and redemptions (as the
    offers page counts them) and its `codes` latest codes (the last added first) with
    their holders. Three queries."""
    (row,) = _offer_rows(Offer.objects.filter(pk=offer.pk, merchant_id=offer.merchant_id), today)
    latest = list(
        CouponCode.objects.filter(offer_id=offer.pk)
        .select_related("customer")
        .order_by("-pk")[:codes]
    )
    return OfferDetail(row=row, codes=latest, codes_total=row.codes_given + row.codes_free)
