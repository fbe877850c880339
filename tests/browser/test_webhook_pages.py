"""The webhook pages in a real browser: an owner registers an endpoint pointing at a local
recording server, sees its secret once, a customer added to a manual segment is posted to
it and shows in the delivery log as delivered; the pages fit 1280 and 1400 px (the nav bar
on one line) and have no serious accessibility violation (axe-core, vendored)."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Browser, Page, expect

from campaigns.models import WebhookDelivery, WebhookEndpoint
from segments import services as segment_services
from segments.models import SegmentKind
from tests.browser.conftest import CHROMIUM, settle
from tests.browser.pages import fits, serious_violations, sign_in
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser]

WIDTHS = (1280, 1400)


@pytest.fixture
def shop(db):
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    StaffMembershipFactory(user=UserFactory(username="owner"), merchant=merchant, role="owner")
    return merchant


def nav_on_one_line(page: Page) -> bool:
    """The top bar neither scrolls sideways nor wraps onto a second row."""
    return page.evaluate(
        """() => {
            const bar = document.querySelector('nav.navbar');
            const items = [...bar.querySelectorAll('.navbar-brand, .nav-item')];
            const tops = new Set(items.map(i => Math.round(i.getBoundingClientRect().top)));
            return bar.scrollWidth === bar.clientWidth && tops.size <= 2
                && bar.getBoundingClientRect().height < 70;
        }"""
    )


def log_fits(page: Page) -> bool:
    """The delivery log (when on the page) needs no sideways scrolling of its own."""
    return page.evaluate(
        """() => {
            const log = document.querySelector('#webhook-deliveries');
            return !log || log.scrollWidth <= log.parentElement.clientWidth;
        }"""
    )


def fits_everywhere(page: Page) -> list[str]:
    wide = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        if not fits(page) or not nav_on_one_line(page) or not log_fits(page):
            wide.append(f"{page.url} at {width}")
    page.set_viewport_size({"width": 1280, "height": 900})
    return wide


@pytest.mark.django_db(transaction=True)
def test_an_owner_registers_an_endpoint_and_sees_its_deliveries(
    live_server, page, shop, http_server
):
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live_server, "/webhooks/", "owner")

    # the empty page explains webhooks and leads to the form
    expect(page.locator("#webhooks-empty")).to_contain_text("No webhook endpoints yet")
    wide = fits_everywhere(page)
    page.click("#new-endpoint")
    expect(page.locator("h1")).to_have_text("New endpoint")

    # the endpoint: the local recording server, for segment entries
    page.fill("#id_url", http_server.url)
    page.fill("#id_description", "Loyalty app")
    page.get_by_label("segment.entered").check()
    wide += fits_everywhere(page)
    page.click("#save-endpoint")
    expect(page.locator("h1")).to_have_text("Endpoint registered")

    # the secret is shown once
    endpoint = WebhookEndpoint.objects.get(merchant=shop)
    expect(page.locator("#new-secret-value")).to_have_value(endpoint.secret)
    page.click("#to-endpoint")
    expect(page.locator("h1")).to_have_text(http_server.url)
    assert endpoint.secret not in page.content()
    page.reload()
    assert endpoint.secret not in page.content()
    expect(page.locator("#deliveries-empty")).to_be_visible()

    # when a customer is added to a manual segment (the message is posted on commit)
    segment = segment_services.segment_create(
        merchant=shop, name="Hand picked", kind=SegmentKind.MANUAL
    )
    customer = CustomerFactory(merchant=shop, external_id="C-0042")
    segment_services.segment_members_add(segment=segment, customers=[customer.pk])

    # then the server got it, and the log shows it delivered
    assert len(http_server.requests) == 1
    body = json.loads(http_server.requests[0][2])
    assert body["type"] == "segment.entered"
    assert body["data"]["events"][0]["customer"] == "C-0042"
    page.reload()
    row = page.locator("#webhook-deliveries tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("segment.entered")
    expect(row.locator(".badge")).to_have_text("Delivered")
    expect(page.locator("#endpoint-counts")).to_have_text(
        re.compile(r"1\s*delivered\s*0\s*pending\s*0\s*failed")
    )
    wide += fits_everywhere(page)

    # and the message's payload opens from the log
    key = WebhookDelivery.objects.get().message.key
    page.get_by_role("link", name=key).click()
    expect(page.locator("#payload")).to_contain_text('"customer": "C-0042"')
    wide += fits_everywhere(page)
    assert wide == []


@pytest.mark.django_db(transaction=True)
def test_the_webhook_pages_have_no_serious_accessibility_violations(
    live_server, browser: Browser, shop, http_server, settings
):
    # given an endpoint switched off with a failed delivery, and the form with an error
    from campaigns.services.webhooks import endpoint_create, endpoint_disable
    from tests.campaigns.test_webhook_pages import logged

    # the widest top bar: an owner of two merchants with long names who is support staff too
    owner = StaffMembershipFactory._meta.model.objects.get(merchant=shop).user
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    shop.name = "Green Leaf Dispensary of the Waterfront"
    shop.save(update_fields=["name"])
    north = MerchantFactory(slug="north", name="Green Leaf Dispensary North")
    StaffMembershipFactory(user=owner, merchant=north, role="owner")
    endpoint = endpoint_create(merchant=shop, url=http_server.url, events=["segment.entered"])
    delivery = logged(endpoint, status="failed", error="Answered 500: boom", attempts=9)
    endpoint_disable(endpoint=endpoint, reason="Moving the CRM")
    assert CHROMIUM.exists()
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.click("#merchant-switcher")
    page.get_by_role("button", name=re.compile("Waterfront")).click()
    expect(page.locator("#merchant-switcher")).to_contain_text("Waterfront")
    found: dict[str, list[str]] = {}
    wide: list[str] = []

    # when each page is checked
    for path in (
        "/webhooks/",
        "/webhooks/new/",
        f"/webhooks/{endpoint.pk}/",
        f"/webhooks/{endpoint.pk}/edit/",
        f"/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/",
        "/help/webhooks/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
        settle(page)
        wide += fits_everywhere(page)
        violations = serious_violations(page)
        if violations:
            found[path] = violations
    # the form with an error under the address
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    page.goto(f"{live_server.url}/webhooks/new/")
    page.fill("#id_url", "http://127.0.0.1:9/hook")
    page.get_by_label("segment.exited").check()
    page.click("#save-endpoint")
    expect(page.locator("#id_url")).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(page.locator(".invalid-feedback")).to_contain_text("loopback")
    wide += fits_everywhere(page)
    if violations := serious_violations(page):
        found["form with an error"] = violations
    context.close()

    # then
    assert wide == []
    assert found == {}
