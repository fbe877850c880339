"""Support staff's admin pages for offers, content blocks and codes."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from campaigns.models import (
    Campaign,
    CampaignSegment,
    CampaignStatus,
    CodeMode,
    ContactRules,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Delivery,
    DeliveryStatus,
    Offer,
    OfferSegment,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookMessage,
)
from campaigns.services.webhooks import endpoint_create
from segments import services
from segments.models import SegmentKind
from tests.factories import CustomerFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db

CAMPAIGNS_MODELS = [m for m in admin.site._registry if m._meta.app_label == "campaigns"]


@pytest.fixture
def support_client(client):
    user = UserFactory(username="support", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def populated():
    merchant = MerchantFactory(slug="acme")
    segment = services.segment_create(merchant=merchant, name="VIPs", kind=SegmentKind.MANUAL)
    offer = Offer.objects.create(merchant=merchant, name="Coupons", code_mode=CodeMode.UNIQUE)
    OfferSegment.objects.create(offer=offer, segment=segment)
    block = ContentBlock.objects.create(merchant=merchant, title="Member night")
    ContentSegment.objects.create(block=block, segment=segment)
    customer = CustomerFactory(merchant=merchant)
    CouponCode.objects.create(offer=offer, code="AAA", customer=customer)
    campaign = Campaign.objects.create(
        merchant=merchant, name="Spring", subject="Hi", body="Hello", status=CampaignStatus.SENT
    )
    CampaignSegment.objects.create(campaign=campaign, segment=segment)
    Delivery.objects.create(
        campaign=campaign, customer=customer, channel="email", status=DeliveryStatus.SENT
    )
    ContactRules.objects.create(merchant=merchant)
    endpoint = endpoint_create(
        merchant=merchant, url="http://127.0.0.1:9/hook", events=["segment.entered"]
    )
    message = WebhookMessage.objects.create(
        merchant=merchant, key="msg_admin", event="segment.entered", payload={"type": "x"}
    )
    WebhookDelivery.objects.create(
        endpoint=endpoint, message=message, status=WebhookDeliveryStatus.FAILED, attempts=9
    )
    return offer


def test_every_model_of_the_app_is_registered():
    # (the targeting rows are edited inline on their offer, block or campaign)
    assert {m.__name__ for m in CAMPAIGNS_MODELS} == {
        "Offer",
        "ContentBlock",
        "CouponCode",
        "Campaign",
        "Delivery",
        "ContactRules",
        "WebhookEndpoint",
        "WebhookMessage",
        "WebhookDelivery",
    }


@pytest.mark.parametrize("model", CAMPAIGNS_MODELS, ids=lambda m: m.__name__)
def test_changelist_search_and_change_pages_render(support_client, populated, model):
    opts = model._meta
    obj = model._default_manager.first()
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    assert support_client.get(changelist).status_code == 200
    assert support_client.get(changelist, {"q": "zz-no-match"}).status_code == 200
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    assert support_client.get(change).status_code == 200


def test_a_given_code_is_read_only_and_the_offer_counts_it(support_client, populated):
    code = CouponCode.objects.get(code="AAA")

    page = support_client.get(reverse("admin:campaigns_couponcode_change", args=[code.pk]))
    listing = support_client.get(reverse("admin:campaigns_offer_changelist"))

    assert 'name="code"' not in page.content.decode()  # not an input: read-only
    assert '<td class="field-codes_given">1</td>' in listing.content.decode()


def test_a_sent_campaign_is_kept_and_can_be_duplicated(support_client, populated):
    campaign = Campaign.objects.get(name="Spring")
    changelist = reverse("admin:campaigns_campaign_changelist")

    # a sent campaign cannot be deleted (its deliveries are its results)
    page = support_client.get(reverse("admin:campaigns_campaign_delete", args=[campaign.pk]))
    assert page.status_code == 403
    listing = support_client.get(changelist)
    assert '<td class="field-sent_count">1</td>' in listing.content.decode()

    response = support_client.post(
        changelist, {"action": "duplicate", "_selected_action": [campaign.pk]}, follow=True
    )

    copy = Campaign.objects.get(name="Copy of Spring")
    assert copy.status == CampaignStatus.DRAFT
    assert list(copy.targeting.values_list("segment__name", flat=True)) == ["VIPs"]
    assert "1 draft(s) made" in response.content.decode()


def test_deliveries_are_read_only(support_client, populated):
    delivery = Delivery.objects.get()
    page = support_client.get(reverse("admin:campaigns_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert 'name="status"' not in page.content.decode()


def test_an_endpoints_secret_is_never_shown(support_client, populated):
    endpoint = WebhookEndpoint.objects.get()

    listing = support_client.get(reverse("admin:campaigns_webhookendpoint_changelist"))
    page = support_client.get(reverse("admin:campaigns_webhookendpoint_change", args=[endpoint.pk]))

    assert endpoint.url in listing.content.decode()
    assert endpoint.secret not in listing.content.decode()
    assert endpoint.secret not in page.content.decode()
    assert 'name="url"' not in page.content.decode()  # read-only: checked in the portal


def test_support_switches_endpoints_off_and_on(support_client, populated):
    endpoint = WebhookEndpoint.objects.get()
    changelist = reverse("admin:campaigns_webhookendpoint_changelist")

    support_client.post(changelist, {"action": "switch_off", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.disabled_reason == "Switched off by support (support)."
    assert support_client.get(changelist, {"is_active__exact": "0"}).status_code == 200

    response = support_client.post(
        changelist, {"action": "switch_on", "_selected_action": [endpoint.pk]}, follow=True
    )
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.disabled_at is None
    assert "1 endpoint(s) switched on" in response.content.decode()


def test_support_resends_a_delivery_unless_its_endpoint_is_off(support_client, populated):
    delivery = WebhookDelivery.objects.get()
    changelist = reverse("admin:campaigns_webhookdelivery_changelist")
    resend = {"action": "resend", "_selected_action": [delivery.pk]}
    WebhookEndpoint.objects.update(is_active=False)

    refused = support_client.post(changelist, resend, follow=True)
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.FAILED
    assert "their endpoint is switched off" in refused.content.decode()

    WebhookEndpoint.objects.update(is_active=True)
    support_client.post(changelist, resend)
    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.PENDING


def test_the_delivery_log_is_searched_by_message_key_and_filtered(support_client, populated):
    changelist = reverse("admin:campaigns_webhookdelivery_changelist")

    found = support_client.get(changelist, {"q": "msg_admin"}).content.decode()
    missed = support_client.get(changelist, {"q": "msg_other"}).content.decode()
    failed = support_client.get(changelist, {"status__exact": "failed"})
    by_event = support_client.get(changelist, {"message__event": "segment.entered"})

    assert "msg_admin" in found and "msg_admin" not in missed.split("<tbody>")[-1]
    assert failed.status_code == 200 and by_event.status_code == 200
