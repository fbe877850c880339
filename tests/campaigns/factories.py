"""factory_boy factories of campaigns and their deliveries."""

from __future__ import annotations

import datetime as dt

import factory

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, SkipReason
from tests.factories import CustomerFactory, MerchantFactory

STARTED_AT = dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.UTC)


class CampaignFactory(factory.django.DjangoModelFactory[Campaign]):
    """A campaign whose send started at `STARTED_AT` (status sent)."""

    class Meta:
        model = Campaign

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    subject = "Hello"
    body = "Hello {first_name}"
    status = CampaignStatus.SENT
    started_at = STARTED_AT

    class Params:
        draft = factory.Trait(status=CampaignStatus.DRAFT, started_at=None)


class DeliveryFactory(factory.django.DjangoModelFactory[Delivery]):
    """A delivery sent a minute after its campaign started; traits: `holdout`, `failed`,
    `queued` and `skipped` (no consent unless `skip_reason` says otherwise)."""

    class Meta:
        model = Delivery

    campaign = factory.SubFactory(CampaignFactory)
    customer = factory.SubFactory(
        CustomerFactory, merchant=factory.SelfAttribute("..campaign.merchant")
    )
    channel = factory.SelfAttribute("campaign.channel")
    status = DeliveryStatus.SENT
    attempts = 1
    sent_at = factory.LazyAttribute(lambda o: o.campaign.started_at + dt.timedelta(minutes=1))

    class Params:
        holdout = factory.Trait(
            status=DeliveryStatus.SKIPPED, skip_reason=SkipReason.HOLDOUT, attempts=0, sent_at=None
        )
        failed = factory.Trait(
            status=DeliveryStatus.FAILED, error="Mailbox full", attempts=3, sent_at=None
        )
        queued = factory.Trait(status=DeliveryStatus.QUEUED, attempts=0, sent_at=None)
        skipped = factory.Trait(
            status=DeliveryStatus.SKIPPED,
            skip_reason=SkipReason.NO_CONSENT,
            attempts=0,
            sent_at=None,
        )
