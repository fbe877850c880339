"""The demo merchant's offers, content and campaigns (`manage.py seed_demo_campaigns`), aimed
at the template segments `seed_demo_segments` made, so a new user finds each page filled:

- an offer with a pool of unique codes for the Gold tier, a shared birthday coupon, and a
  content block for the vendor day;
- "Spring favourites", an email sent 12 days ago to the regular and loyal customers with a
  20 % holdout, whose 7-day window has ended: its results page has conversions and a lift
  (measured on the demo's own purchases);
- "We miss you", an SMS draft for the customers at risk, keeping the call list out.

The sent campaign is written as a send would write it (the snapshot by `campaign_start`,
`last_contacted_at` by `campaign_finish`), with its deliveries dated when it went out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign, Channel, CodeMode, Delivery, DeliveryStatus, OfferKind
from campaigns.services import campaigns as campaign_services
from campaigns.services import sending
from campaigns.services.offers import content_block_save, offer_codes_generate, offer_save
from customers.models import Merchant
from segments.models import Segment

SENT_DAYS_AGO = 12


def _segments(merchant: Merchant, *slugs: str) -> list[Segment]:
    found = {s.slug: s for s in Segment.objects.filter(merchant=merchant, slug__in=slugs)}
    return [found[slug] for slug in slugs if slug in found]


@transaction.atomic
def seed_campaigns(*, merchant: Merchant, user: Any = None) -> list[Campaign]:
    """Create the demo's offers, content block and campaigns (see the module docstring);
    segments the demo does not have are left out. Returns the campaigns."""
    today = merchant.today()
    gold = _segments(merchant, "gold-spend-1000")
    if gold:
        pool = offer_save(
            merchant=merchant,
            name="Gold members' free preroll",
            description="One free preroll with the next order over $40.",
            kind=OfferKind.REWARD,
            code_mode=CodeMode.UNIQUE,
            valid_from=today - dt.timedelta(days=7),
            valid_until=today + dt.timedelta(days=30),
            include=gold,
            user=user,
        )
        offer_codes_generate(offer=pool, count=60, prefix="GOLD-")
    birthdays = _segments(merchant, "birthday-this-month")
    if birthdays:
        offer_save(
            merchant=merchant,
            name="Birthday 10% off",
            description="10% off one order in your birthday month.",
            kind=OfferKind.COUPON,
            code_mode=CodeMode.SHARED,
            shared_code="BDAY10",
            include=birthdays,
            user=user,
        )
    vendor = _segments(merchant, "vendor-day")
    if vendor:
        content_block_save(
            merchant=merchant,
            title="Vendor day this Saturday",
            body="Meet the growers, taste the new harvest, 11:00 to 16:00.",
            link="https://example.com/vendor-day",
            valid_until=today + dt.timedelta(days=14),
            include=vendor,
            user=user,
        )
    made: list[Campaign] = []
    regulars = _segments(merchant, "lifecycle-regular", "lifecycle-loyal")
    if regulars:
        made.append(_sent_campaign(merchant, regulars, user))
    at_risk = _segments(merchant, "lifecycle-at-risk")
    if at_risk:
        made.append(
            campaign_services.campaign_save(
                merchant=merchant,
                include=at_risk,
                exclude=_segments(merchant, "front-desk-call-list"),
                user=user,
                name="We miss you",
                channel=Channel.SMS,
                subject="",
                body=(
                    'Hi {{ first_name|default:"there" }}, it has been a while! Show this text '
                    "for double points this week at {{ merchant }}."
                ),
                holdout_percent=10,
                attribution_days=7,
            )
        )
    return made


def _sent_campaign(merchant: Merchant, include: list[Segment], user: Any) -> Campaign:
    campaign = campaign_services.campaign_save(
        merchant=merchant,
        include=include,
        user=user,
        name="Spring favourites",
        channel=Channel.EMAIL,
        subject='{{ first_name|default:"Friend" }}, the spring favourites are in',
        body=(
            'Hi {{ first_name|default:"there" }},\n\nThe spring favourites are back on our '
            "shelves. You have {{ points_balance }} points to spend.\n\nSee you soon,\n"
            "{{ merchant }}"
        ),
        holdout_percent=20,
        attribution_days=7,
    )
    started = timezone.now() - dt.timedelta(days=SENT_DAYS_AGO)
    with transaction.atomic():
        sending.campaign_start(campaign_id=campaign.pk, now=started, senders=False)
        # As the senders would have, a minute after the start.
        Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.QUEUED).update(
            status=DeliveryStatus.SENT, attempts=1, sent_at=started + dt.timedelta(minutes=1)
        )
    sending.campaign_finish(campaign_id=campaign.pk)
    # Written a day before it went out, finished a few minutes after.
    Campaign.objects.filter(pk=campaign.pk).update(
        created_at=started - dt.timedelta(days=1), finished_at=started + dt.timedelta(minutes=2)
    )
    campaign.refresh_from_db()
    return campaign
