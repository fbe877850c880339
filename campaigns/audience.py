"""Who a campaign reaches, and why not: the audience, each member's eligibility, the preview.

The audience is the current members of any included segment who are in no excluded one
(exclusion wins), among the campaign's own merchant's customers. Each member is eligible or
skipped for the first reason that applies, in this order:

1. `no_consent`: the channel's opt-in is off (email, SMS or push).
2. `no_address`: no email address (email) or phone number (SMS); push needs none.
3. `frequency_cap`: the merchant's cap is reached: `cap_messages` messages on this channel
   (queued, being sent or sent, any campaign) in the last `cap_days` days.
4. `holdout`: in the campaign's control group, drawn among the members the first three
   left: a stable pseudo-random share (`holdout_percent`) decided by the customer's id and
   the campaign's seed, so the same customers are held out every time it is computed.

Quiet hours are not a skip: SMS and push wait until the window opens (`send_time`).
The same expression answers the preview (one grouped count) and writes the snapshot (one
INSERT ... SELECT, `campaigns.services.sending`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignSegment,
    Channel,
    ContactRules,
    Delivery,
    SkipReason,
)
from customers.models import Customer, Merchant
from segments.engine import evaluation_settings
from segments.models import RefreshCadence, Segment, SegmentKind, SegmentMembership

#: Knuth's multiplicative hash constant: (id + seed) * K mod 2^32 spreads consecutive ids
#: evenly; products stay below 2^63 for ids and seeds below 2^31.
_HASH_K = 2654435761
_HASH_M = 2**32
#: Deliveries that count towards the frequency cap.
CAPPED_STATUSES = ("queued", "sending", "sent")
#: How late a segment's last refresh may be, beyond its cadence, before a send warns.
STALE_GRACE = dt.timedelta(minutes=30)
_CADENCE = {
    RefreshCadence.HOURLY: dt.timedelta(hours=1),
    RefreshCadence.DAILY: dt.timedelta(days=1),
    RefreshCadence.WEEKLY: dt.timedelta(days=7),
}


def contact_rules_of(merchant: Merchant | int) -> ContactRules:
    """The merchant's contact rules: its row, or the defaults (unsaved) without one."""
    merchant_id = merchant if isinstance(merchant, int) else merchant.pk
    rules = ContactRules.objects.filter(merchant_id=merchant_id).first()
    return rules if rules is not None else ContactRules(merchant_id=merchant_id)


def holdout_threshold(percent: int) -> int:
    """Hash values below this are held out (`percent` of 2^32)."""
    return _HASH_M * percent // 100


def in_holdout(customer_id: int, *, seed: int, percent: int) -> bool:
    """Python's version of the SQL expression (`audience`): is this customer held out?"""
    return ((customer_id + seed) * _HASH_K) % _HASH_M < holdout_threshold(percent)


# --- quiet hours ---------------------------------------------------------------------------


def in_quiet_hours(rules: ContactRules, local: dt.time) -> bool:
    start, end = rules.quiet_start, rules.quiet_end
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window crosses midnight


def send_time(
    *, channel: str, rules: ContactRules, tz: zoneinfo.ZoneInfo, now: dt.datetime
) -> dt.datetime | None:
    """When a message of `channel` may go out, from `now`: None (now) for email and outside
    quiet hours; else the end of the quiet hours, merchant-local, as an aware instant (the
    wall-clock time of that day, whatever a DST change in between did to the offset)."""
    if channel == Channel.EMAIL:
        return None
    local = now.astimezone(tz)
    if not in_quiet_hours(rules, local.time()):
        return None
    day = local.date() if local.time() < rules.quiet_end else local.date() + dt.timedelta(days=1)
    opens = dt.datetime.combine(day, rules.quiet_end, tzinfo=tz)
    # Round trip through UTC: a wall-clock time skipped by a DST change (02:30 on the
    # spring-forward night) becomes the first real instant after it.
    return opens.astimezone(dt.UTC)


# --- the audience ----------------------------------------------------------------------------


def segment_ids(campaign: Campaign) -> tuple[list[int], list[int]]:
    """The campaign's included and excluded segment ids."""
    included: list[int] = []
    excluded: list[int] = []
    for segment_id, exclude in CampaignSegment.objects.filter(campaign=campaign).values_list(
        "segment_id", "exclude"
    ):
        (excluded if exclude else included).append(segment_id)
    return included, excluded


def members(campaign: Campaign) -> QuerySet[Customer]:
    """The audience: the campaign's merchant's customers in any included segment and in no
    excluded one (none without an included segment)."""
    included, excluded = segment_ids(campaign)
    rows = Customer.objects.filter(merchant_id=campaign.merchant_id)
    if not included:
        return rows.none()
    # Driven from the memberships (a semi-join), not one probe per merchant customer.
    rows = rows.filter(
        pk__in=SegmentMembership.objects.filter(segment_id__in=included).values("customer_id")
    )
    if excluded:
        rows = rows.exclude(
            Exists(
                SegmentMembership.objects.filter(
                    segment_id__in=excluded, customer_id=OuterRef("pk")
                )
            )
        )
    return rows


def _consent(channel: str) -> Q:
    return Q(**{f"{channel}_opt_in": True})


def _address(channel: str) -> Q:
    if channel == Channel.EMAIL:
        return ~Q(email="")
    if channel == Channel.SMS:
        return ~Q(phone="")
    return Q(pk__isnull=False)  # push: the app holds the device; always true


def with_reason(
    campaign: Campaign, *, now: dt.datetime, rules: ContactRules | None = None
) -> QuerySet[Customer]:
    """`members(campaign)` annotated with `reason`: the skip reason, or "" when eligible
    (see the module docstring for the order)."""
    rules = rules or contact_rules_of(campaign.merchant_id)
    channel = campaign.channel
    whens = [
        When(~_consent(channel), then=Value(SkipReason.NO_CONSENT.value)),
        When(~_address(channel), then=Value(SkipReason.NO_ADDRESS.value)),
    ]
    rows = members(campaign)
    if rules.cap_messages:
        recent = (
            Delivery.objects.filter(
                customer_id=OuterRef("pk"),
                channel=channel,
                status__in=CAPPED_STATUSES,
                created_at__gte=now - dt.timedelta(days=rules.cap_days),
            )
            .exclude(campaign_id=campaign.pk)
            .order_by()
            .values("customer_id")
            .annotate(n=Count("*"))
            .values("n")
        )
        rows = rows.annotate(recent=Coalesce(Subquery(recent, output_field=IntegerField()), 0))
        whens.append(
            When(recent__gte=rules.cap_messages, then=Value(SkipReason.FREQUENCY_CAP.value))
        )
    if campaign.holdout_percent:
        rows = rows.annotate(
            hold=((F("pk") + Value(campaign.holdout_seed)) * Value(_HASH_K)) % Value(_HASH_M)
        )
        whens.append(
            When(
                hold__lt=holdout_threshold(campaign.holdout_percent),
                then=Value(SkipReason.HOLDOUT.value),
            )
        )
    return rows.annotate(reason=Case(*whens, default=Value(""), output_field=CharField()))


@dataclass(frozen=True)
class AudiencePreview:
    """What a send would do now: members, how many are eligible, skipped per reason (every
    reason listed, zeros included), and when SMS/push would start (quiet hours)."""

    members: int
    eligible: int
    skipped: dict[str, int] = field(default_factory=dict)
    waits_until: dt.datetime | None = None
    stale_segments: list[Segment] = field(default_factory=list)

    @property
    def skipped_rows(self) -> list[tuple[str, str, int]]:
        """(reason, label, count) in the order of the reasons."""
        return [(r.value, str(r.label), self.skipped.get(r.value, 0)) for r in SkipReason]


def preview(campaign: Campaign, *, now: dt.datetime | None = None) -> AudiencePreview:
    """The audience now, in one grouped count (plus the rules and the segments' freshness)."""
    now = now or timezone.now()
    rules = contact_rules_of(campaign.merchant_id)
    grouped = (
        with_reason(campaign, now=now, rules=rules)
        .order_by()
        .values_list("reason")  # type: ignore[misc]
        .annotate(n=Count("*"))
        .values_list("reason", "n")
    )
    with evaluation_settings():  # the grouping and the hashes in memory, not on disk
        counts = dict(grouped)
    merchant = campaign.merchant
    return AudiencePreview(
        members=sum(counts.values()),
        eligible=counts.pop("", 0),
        skipped={reason: counts.get(reason, 0) for reason in SkipReason.values},
        waits_until=send_time(channel=campaign.channel, rules=rules, tz=merchant.tzinfo, now=now),
        stale_segments=stale_segments(campaign, now=now),
    )


def is_stale(segment: Segment, *, now: dt.datetime) -> bool:
    """A dynamic segment whose last refresh is older than its cadence (plus a grace for the
    refresh itself), or that was never refreshed. Manual segments are never stale."""
    if segment.kind != SegmentKind.DYNAMIC:
        return False
    if segment.last_refreshed_at is None:
        return True
    due = _CADENCE.get(RefreshCadence(segment.refresh_cadence), dt.timedelta(days=1))
    return now - segment.last_refreshed_at > due + STALE_GRACE


def stale_segments(campaign: Campaign, *, now: dt.datetime) -> list[Segment]:
    """The campaign's segments (included and excluded) whose members may be out of date."""
    segments = Segment.objects.filter(
        pk__in=CampaignSegment.objects.filter(campaign=campaign).values("segment_id")
    ).order_by("name")
    return [s for s in segments if is_stale(s, now=now)]
