"""Reads of offers and content blocks: what a customer sees now, and which segments they use.

Every query starts from the customer's (or the segments') own merchant's rows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns import audience, content
from campaigns.models import (
    Campaign,
    CampaignSegment,
    CodeMode,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Delivery,
    DeliveryStatus,
    Offer,
    OfferSegment,
    Targeted,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from customers.compiled import CompiledQuery, Inline, Slot, bind, fetch
from customers.models import Customer, Merchant, Redemption
from customers.selectors import (
    CARD_QUERY,
    CARD_TAGS_QUERY,
    CustomerCard,
    customer_card,
    customer_card_from,
)
from segments.models import Segment, SegmentMembership
from segments.selectors import SEGMENTS_OF_QUERY, customer_segment_rows

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
    """`offer_list`'s rows of these offers (one merchant's), by name: two queries.

    Each count is a subquery of its own (no join of the codes and GROUP BY), and a
    redemption names one of the offer's codes by the (offer, code) unique index: a pool of
    thousands of codes costs an index probe per redemption, not a scan of the pool."""
    codes = CouponCode.objects.filter(offer_id=OuterRef("pk")).values("offer_id")
    given = codes.filter(customer__isnull=False).annotate(n=Count("pk")).values("n")
    free = codes.filter(customer__isnull=True).annotate(n=Count("pk")).values("n")
    # TRICKY: an empty shared code names no redemption (rewards are never blank).
    redeemed = (
        Redemption.objects.filter(merchant_id=OuterRef("merchant_id"))
        .filter(
            Q(reward=OuterRef("name"))
            | (Q(reward=OuterRef("shared_code")) & ~Q(reward=""))
            | Exists(
                CouponCode.objects.filter(
                    offer_id=OuterRef(OuterRef("pk")), code=OuterRef("reward")
                )
            )
        )
        .values("merchant_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    offers = list(
        offers_of_merchant.annotate(
            given=Coalesce(Subquery(given), 0),
            free=Coalesce(Subquery(free), 0),
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
    offers page counts them) and `codes` of its codes with their holders: the codes given
    last first, then the codes added last. Three queries."""
    (row,) = _offer_rows(Offer.objects.filter(pk=offer.pk, merchant_id=offer.merchant_id), today)
    latest = list(
        CouponCode.objects.filter(offer_id=offer.pk)
        .select_related("customer")
        .order_by(F("assigned_at").desc(nulls_last=True), "-pk")[:codes]
    )
    return OfferDetail(row=row, codes=latest, codes_total=row.codes_given + row.codes_free)


# -- the portal's campaign pages ------------------------------------------------------------


def campaign_queryset(*, merchant: Merchant) -> QuerySet[Campaign]:
    """The merchant's campaigns: every portal lookup of a campaign starts here (another
    merchant's id is not found)."""
    return Campaign.objects.filter(merchant=merchant)


def _delivery_count(**where: object) -> Coalesce:
    """A campaign's deliveries matching `where`, counted by a correlated subquery on
    `delivery_status_idx` (campaign, status): an index-only count per campaign."""
    return Coalesce(
        Subquery(
            Delivery.objects.filter(campaign_id=OuterRef("pk"), **where)
            .order_by()
            .values("campaign_id")
            .annotate(n=Count("pk"))
            .values("n")
        ),
        0,
    )


def campaign_list(merchant: Merchant) -> QuerySet[Campaign]:
    """The merchant's campaigns, newest first, each with its deliveries counted by status
    (`sent_count`, `failed_count`, `skipped_count`, `pending_count`: queued or being sent)
    and its segments prefetched (`targeting`, segment joined, by name).

    Two queries per page whatever the campaigns' sizes: the campaigns with the counts (a
    correlated subquery each; PostgreSQL evaluates them after the LIMIT, for the page's rows
    only) and the segments of that page.
    """
    links = CampaignSegment.objects.select_related("segment").order_by("segment__name")
    return (
        campaign_queryset(merchant=merchant)
        .annotate(
            sent_count=_delivery_count(status=DeliveryStatus.SENT),
            failed_count=_delivery_count(status=DeliveryStatus.FAILED),
            skipped_count=_delivery_count(status=DeliveryStatus.SKIPPED),
            pending_count=_delivery_count(
                status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENDING]
            ),
        )
        .prefetch_related(Prefetch("targeting", queryset=links))
        .order_by("-created_at", "-pk")
    )


#: The window of `campaign_progress`'s rate.
RATE_WINDOW = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class CampaignProgress:
    """How far a send is: every delivery row counted by status."""

    #: Every delivery row (the audience snapshot, skipped members included).
    total: int
    #: Rows with an outcome: sent, failed or skipped.
    done: int
    #: Deliveries per status (every `DeliveryStatus` value, zeros included).
    by_status: dict[str, int]
    #: Messages sent per second over the last minute (since the start when more recent);
    #: None before the start.
    rate: float | None
    #: Queued and being sent, divided by the rate; None when nothing is sent per second (or
    #: nothing is left).
    time_left: dt.timedelta | None
    #: The earliest time a queued row may go (quiet hours, a retry's backoff) when that is
    #: later than now: nothing is sent until then.
    waits_until: dt.datetime | None

    @property
    def percent(self) -> float:
        """done / total as a percentage (100 for an empty audience)."""
        return 100.0 * self.done / self.total if self.total else 100.0

    @property
    def left(self) -> int:
        """Queued or being sent."""
        return self.by_status[DeliveryStatus.QUEUED] + self.by_status[DeliveryStatus.SENDING]

    @property
    def time_left_text(self) -> str:
        """The time left as people say it: "40 s", "3 min", "2 h 5 min" ("" when unknown)."""
        if self.time_left is None:
            return ""
        seconds = math.ceil(self.time_left.total_seconds())
        if seconds < 60:
            return f"{seconds} s"
        minutes = math.ceil(seconds / 60)
        if minutes < 60:
            return f"{minutes} min"
        return f"{minutes // 60} h {minutes % 60} min"


def campaign_progress(campaign: Campaign, now: dt.datetime | None = None) -> CampaignProgress:
    """The campaign's deliveries by status, the send rate and the time left: one query
    grouped by status (with each status's earliest `not_before`) and one count of the
    messages sent within the last minute."""
    now = now or timezone.now()
    deliveries = Delivery.objects.filter(campaign_id=campaign.pk)
    by_status = {status: 0 for status in DeliveryStatus.values}
    next_at: dt.datetime | None = None
    for status, n, earliest in (
        deliveries.order_by()
        .values("status")
        .annotate(n=Count("pk"), earliest=Min("not_before"))
        .values_list("status", "n", "earliest")
    ):
        by_status[status] = n
        if status == DeliveryStatus.QUEUED:
            next_at = earliest
    done = sum(
        by_status[s] for s in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
    )
    left = by_status[DeliveryStatus.QUEUED] + by_status[DeliveryStatus.SENDING]
    rate: float | None = None
    time_left: dt.timedelta | None = None
    if campaign.started_at is not None:
        since = max(now - RATE_WINDOW, campaign.started_at)
        seconds = (now - since).total_seconds()
        recent = deliveries.filter(status=DeliveryStatus.SENT, sent_at__gte=since).count()
        rate = recent / seconds if seconds > 0 else 0.0
        if rate > 0 and left:
            time_left = dt.timedelta(seconds=math.ceil(left / rate))
    waits = next_at if left and next_at is not None and next_at > now else None
    return CampaignProgress(
        total=sum(by_status.values()),
        done=done,
        by_status=by_status,
        rate=rate,
        time_left=time_left,
        waits_until=waits,
    )


@dataclass(frozen=True)
class ContentPreview:
    """A campaign's subject and text as one customer would get them."""

    #: Whose: the first member of the audience (of the snapshot once sent), else a sample.
    customer: Customer
    is_sample: bool
    subject: str
    body: str
    #: Why the content cannot be rendered ("" when it can).
    error: str = ""


SAMPLE_CUSTOMER = ("Alex", "Sample")


def campaign_preview(campaign: Campaign) -> ContentPreview:
    """The campaign's content rendered for its first member (by id): of the deliveries once
    the send has started, else of the audience now; a sample customer named "Alex Sample"
    without any member. Two queries at most."""
    related = ("tier", "home_branch", "merchant")
    if campaign.started_at is not None:
        first = Delivery.objects.filter(campaign_id=campaign.pk).order_by("pk").first()
        member = (
            Customer.objects.select_related(*related).filter(pk=first.customer_id).first()
            if first is not None
            else None
        )
    else:
        member = audience.members(campaign).select_related(*related).order_by("pk").first()
    customer = member or Customer(
        merchant=campaign.merchant,
        first_name=SAMPLE_CUSTOMER[0],
        last_name=SAMPLE_CUSTOMER[1],
        external_id="sample",
    )
    try:
        subject = content.render(campaign.subject, customer)
        body = content.render(campaign.body, customer)
    except content.ContentError as error:
        return ContentPreview(customer, member is None, "", "", error=str(error))
    return ContentPreview(customer, member is None, subject, body)


@dataclass(frozen=True)
class SeenItem:
    """One thing a customer sees: an offer (with the customer's code: the shared one, or
    theirs from a pool of unique codes, "" when none) or a content block, and the segment
    that decided (`because`)."""

    kind: str  # "offer" or "content"
    id: int
    name: str
    because: str
    code: str


def _sees_query(customer: Customer, day: dt.date) -> QuerySet[Any]:
    held = CouponCode.objects.filter(offer_id=OuterRef("pk"), customer_id=customer.pk)
    offers = visible_offers(customer=customer, today=day).annotate(
        item_kind=Value("offer"),
        label=F("name"),
        code=Case(
            When(code_mode=CodeMode.SHARED, then=F("shared_code")),
            When(
                code_mode=CodeMode.UNIQUE,
                then=Coalesce(Subquery(held.values("code")[:1]), Value("")),
            ),
            default=Value(""),
            output_field=CharField(),
        ),
    )
    blocks = visible_content(customer=customer, today=day).annotate(
        item_kind=Value("content"), label=F("title"), code=Value("", output_field=CharField())
    )
    columns = ("item_kind", "pk", "label", "because", "code")
    return offers.order_by().values_list(*columns).union(blocks.order_by().values_list(*columns))


_SEES = CompiledQuery(
    lambda customer_id, merchant_id, day: _sees_query(
        Customer(pk=customer_id, merchant_id=merchant_id), day
    ),
    customer_id=-7_000_000_001,
    merchant_id=-7_000_000_002,
    day=dt.date(1901, 2, 3),
)


def customer_sees(*, customer: Customer, today: dt.date | None = None) -> list[SeenItem]:
    """Everything the customer sees now, offers then content blocks, by name: what the API's
    "what does this customer see" answers. One query (a UNION of `visible_offers` and
    `visible_content`, the code looked up inside it).

    TRICKY: compiling this query (two querysets, six subqueries) cost Django about 20 ms and
    planning it PostgreSQL a millisecond, most of a member app's "what do I see" request; its
    shape never changes, only the customer, the merchant and the day, so it is compiled once
    and prepared (`customers.compiled`)."""
    day = today or customer.merchant.today()
    rows = _SEES.rows(customer_id=customer.pk, merchant_id=customer.merchant_id, day=day)
    return _seen_items(rows)


def _seen_items(rows: Iterable[Sequence[Any]]) -> list[SeenItem]:
    ordered = sorted(rows, key=lambda row: (row[0] != "offer", row[2].lower(), row[1]))
    return [
        SeenItem(kind=kind, id=pk, name=label, because=because or "", code=code or "")
        for kind, pk, label, because, code in ordered
    ]


@dataclass(frozen=True)
class CustomerRead:
    """What the API's customer read answers: the card (`customers`), the segments it is a
    member of as (slug, name, since) by name (`segments`), and what it sees now (here)."""

    card: CustomerCard
    segments: list[tuple[str, str, dt.datetime]]
    sees: list[SeenItem]


def customer_read(*, merchant: Merchant, external_id: str) -> CustomerRead | None:
    """The merchant's customer with this external id, its segments and what it sees today
    (None when the merchant has no such customer): a member app's most frequent request.

    Each part is its app's own compiled query (`customers.selectors.CARD_QUERY` and
    `CARD_TAGS_QUERY`, `segments.selectors.SEGMENTS_OF_QUERY`, `_SEES` here). On PostgreSQL
    they run as one prepared statement, built once (`_read_statement`): the card as a
    common table expression, the others as subqueries of it that take the customer's id
    from the card (`Inline`), the lists aggregated to JSON (sent as text, decoded here).
    One after another, their four round trips were a third of the read's cost under load
    (docs/benchmarks.md). Elsewhere (SQLite) the four run one after another."""
    day = merchant.today()
    if connection.vendor != "postgresql":
        card = customer_card(merchant=merchant, external_id=external_id)
        if card is None:
            return None
        customer_id = card.customer["id"]
        return CustomerRead(
            card=card,
            segments=customer_segment_rows(customer_id=customer_id, merchant_id=merchant.pk),
            sees=customer_sees(customer=Customer(pk=customer_id, merchant=merchant), today=day),
        )
    sql, params = _read_statement()
    values = bind(params, merchant_id=merchant.pk, external_id=external_id, day=day)
    # In binary (psycopg's C loaders for the card's dozen instants): no column is JSON or
    # an address, which Django would decode from text (the lists come as text).
    rows = fetch(sql, values, binary=True)
    if not rows:
        return None
    width = CARD_QUERY.width
    (card_row,) = CARD_QUERY.convert([rows[0][:width]])
    tags, segments, sees = rows[0][width:]
    return CustomerRead(
        card=customer_card_from(card_row, tags),
        segments=[
            (slug, name, dt.datetime.fromisoformat(since))
            for slug, name, since in (item.values() for item in json.loads(segments or "[]"))
        ],
        sees=_seen_items(list(item.values()) for item in json.loads(sees or "[]")),
    )


@lru_cache(maxsize=1)
def _read_statement() -> tuple[str, list[Any]]:
    """`customer_read`'s one statement (PostgreSQL), built once: its parameters hold `Slot`s
    for the merchant, the external id and the day."""
    merchant_id, external_id, day = Slot("merchant_id"), Slot("external_id"), Slot("day")
    customer_id = Inline("card.id")
    parts = [
        CARD_QUERY.statement(merchant_id=merchant_id, external_id=external_id),
        CARD_TAGS_QUERY.statement(customer_id=customer_id),
        SEGMENTS_OF_QUERY.statement(customer_id=customer_id, merchant_id=merchant_id),
        _SEES.statement(customer_id=customer_id, merchant_id=merchant_id, day=day),
    ]
    (card, tags, segments, sees) = (sql for sql, _ in parts)
    sql = f"""
        WITH card AS ({card})
        SELECT card.*, ARRAY({tags}),
               (SELECT json_agg(row_to_json(s))::text FROM ({segments}) s),
               (SELECT json_agg(row_to_json(x))::text FROM ({sees}) x)
        FROM card
    """
    return sql, [param for _, params in parts for param in params]


# --- webhooks -------------------------------------------------------------------------------


def webhook_endpoint_list(*, merchant: Merchant) -> QuerySet[WebhookEndpoint]:
    """The merchant's endpoints with their delivery counts by status (`delivered_count`,
    `pending_count` (sending included), `failed_count`) and their last delivery
    (`last_delivery_at`, `last_delivery_status`): one query whatever the number of rows."""
    deliveries = WebhookDelivery.objects.filter(endpoint=OuterRef("pk")).order_by(
        "-created_at", "-pk"
    )
    waiting = [WebhookDeliveryStatus.PENDING, WebhookDeliveryStatus.SENDING]
    return (
        WebhookEndpoint.objects.filter(merchant=merchant)
        .annotate(
            delivered_count=Count(
                "deliveries", filter=Q(deliveries__status=WebhookDeliveryStatus.SUCCEEDED)
            ),
            pending_count=Count("deliveries", filter=Q(deliveries__status__in=waiting)),
            failed_count=Count(
                "deliveries", filter=Q(deliveries__status=WebhookDeliveryStatus.FAILED)
            ),
            last_delivery_at=Subquery(deliveries.values("created_at")[:1]),
            last_delivery_status=Subquery(deliveries.values("status")[:1]),
        )
        .order_by("url", "pk")
    )


def webhook_delivery_counts(*, endpoint_ids: Collection[int]) -> dict[int, dict[str, int]]:
    """For each endpoint, its deliveries by status (every status, 0 when none): one query
    whatever the number of endpoints."""
    counts: dict[int, dict[str, int]] = {
        pk: dict.fromkeys(WebhookDeliveryStatus.values, 0) for pk in endpoint_ids
    }
    rows = (
        WebhookDelivery.objects.filter(endpoint_id__in=list(counts))
        .values_list("endpoint_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for endpoint_id, status, n in rows:
        counts[endpoint_id][status] = n
    return counts
