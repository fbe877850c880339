"""`seed_demo_campaigns`: the demo's offers, content and campaigns, one of them sent."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ContentBlock, CouponCode, Offer
from campaigns.results import campaign_results
from customers.models import Customer
from tests.factories import CustomerFactory, MerchantFactory, TransactionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    merchant = MerchantFactory(slug="demo")
    now = timezone.now()
    for n in range(40):
        customer = CustomerFactory(merchant=merchant, opted_in=True)
        for days in (300, 200, 100, 40, 15):  # regular buyers
            TransactionFactory(
                customer=customer,
                total=Decimal("50.00"),
                occurred_at=now - dt.timedelta(days=days + n % 3),
            )
    call_command("seed_demo_segments", merchant="demo", weeks=0)
    return merchant


def test_the_demo_gets_offers_a_block_and_a_sent_campaign_with_results(demo):
    call_command("seed_demo_campaigns", merchant="demo")

    assert sorted(Offer.objects.filter(merchant=demo).values_list("name", flat=True)) == [
        "Birthday 10% off",
        "Gold members' free preroll",
    ]
    assert CouponCode.objects.filter(offer__name="Gold members' free preroll").count() == 60
    assert ContentBlock.objects.filter(merchant=demo).count() == 1
    sent = Campaign.objects.get(merchant=demo, name="Spring favourites")
    assert sent.status == CampaignStatus.SENT
    assert sent.started_at < timezone.now() - dt.timedelta(days=11)
    assert (
        sent.created_at
        < sent.started_at
        < sent.finished_at
        < sent.started_at + dt.timedelta(hours=1)
    )
    results = campaign_results(campaign=sent)
    assert results.sent + results.skipped == sent.audience_size > 0
    assert results.final_at < timezone.now()  # the window has ended
    # everyone reached was marked contacted then
    reached = Customer.objects.filter(merchant=demo, last_contacted_at__isnull=False)
    assert reached.count() == results.sent
    assert Campaign.objects.get(merchant=demo, name="We miss you").status == CampaignStatus.DRAFT


def test_a_merchant_with_campaigns_is_left_alone_with_if_empty(demo):
    call_command("seed_demo_campaigns", merchant="demo")
    with pytest.raises(CommandError, match="already"):
        call_command("seed_demo_campaigns", merchant="demo")
    call_command("seed_demo_campaigns", merchant="demo", if_empty=True)
    assert Campaign.objects.filter(merchant=demo).count() == 2
