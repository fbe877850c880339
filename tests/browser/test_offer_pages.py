"""The offer pages in a real browser: a manager creates an offer aimed at a segment (picked in
the searchable select) with a pool of unique codes, generates 20 codes and sees them on the
offer's page; the pages fit a laptop screen and have no serious accessibility violation
(axe-core, vendored, run in the page)."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Browser, Page, expect

from campaigns.models import CodeMode, Offer
from campaigns.services import content_block_save, offer_save
from segments import services as segment_services
from segments.models import SegmentKind
from tests.browser.conftest import CHROMIUM
from tests.browser.pages import fits, pick, serious_violations, sign_in, submit_and_leave
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOT_DIR")


@pytest.fixture
def shop(db):
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    customer = CustomerFactory(merchant=merchant)
    for name in ("VIP customers of the downtown waterfront store", "Staff members", "Locals"):
        segment = segment_services.segment_create(
            merchant=merchant, name=name, kind=SegmentKind.MANUAL
        )
        segment_services.segment_members_add(segment=segment, customers=[customer.pk])
    StaffMembershipFactory(user=UserFactory(username="manager"), merchant=merchant, role="manager")
    return merchant


def shoot(page: Page, name: str) -> None:
    if SHOTS:
        for width in (1280, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.django_db(transaction=True)
def test_a_manager_creates_an_offer_and_generates_its_codes(live_server, page, shop):
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live_server, "/campaigns/offers/", "manager")

    # the empty offers page leads to the form
    page.click("#new-offer")
    expect(page.locator("h1")).to_have_text("New offer")
    assert fits(page)

    # the offer: a coupon with a pool of unique codes, aimed at the VIPs, kept from staff
    page.fill("#id_name", "Birthday coupon")
    page.fill("#id_description", "Ten percent off on your birthday week.")
    page.select_option("#id_kind", "coupon")
    expect(page.locator("#shared-code-part")).to_be_hidden()
    page.select_option("#id_code_mode", "shared")
    expect(page.locator("#shared-code-part")).to_be_visible()
    page.select_option("#id_code_mode", "unique")
    expect(page.locator("#shared-code-part")).to_be_hidden()
    page.fill("#id_valid_from", "2026-01-01")
    pick(page, "id_include", "VIP customers")
    pick(page, "id_exclude", "Staff members")
    vips, staff = (shop.segments.get(name__startswith=n) for n in ("VIP", "Staff"))
    expect(page.locator("#id_include")).to_have_values([str(vips.pk)])
    expect(page.locator("#id_exclude")).to_have_values([str(staff.pk)])
    shoot(page, "offer-form")
    submit_and_leave(page, "#save-offer", "Birthday coupon")

    # its page: saved, running, aimed at the VIPs, an empty pool
    expect(page.locator(".alert-success")).to_contain_text('Offer "Birthday coupon" saved.')
    expect(page.locator("#aimed-at")).to_have_text("VIP customers of the downtown waterfront store")
    expect(page.locator("#kept-from")).to_have_text("Staff members")
    expect(page.locator("#no-codes")).to_be_visible()
    assert fits(page)

    # 20 codes generated
    page.fill("#id_count", "20")
    page.fill("#id_code_prefix", "BDAY-")
    page.click("#generate-codes")
    expect(page.locator(".alert-success")).to_contain_text("20 new codes added to the pool.")
    expect(page.locator("#codes .code-row")).to_have_count(20)
    expect(page.locator("#codes-total")).to_have_text("20")
    expect(page.locator("#codes-free")).to_have_text("20")
    expect(page.locator("#offer-days")).to_have_text("From 1 Jan 2026, until switched off")
    for code in page.locator("#codes code").all_inner_texts():
        assert re.fullmatch(r"BDAY-[A-HJ-NP-Z2-9]{8}", code), code
    assert fits(page)
    offer = Offer.objects.get(name="Birthday coupon")
    assert offer.codes.count() == 20 and offer.code_mode == CodeMode.UNIQUE
    shoot(page, "offer-detail")

    # and the offers page links to it
    page.goto(f"{live_server.url}/campaigns/offers/")
    page.get_by_role("link", name="Birthday coupon").click()
    expect(page.locator("h1")).to_have_text("Birthday coupon")


@pytest.mark.django_db(transaction=True)
def test_the_offer_pages_fit_and_have_no_serious_accessibility_violations(
    live_server, browser: Browser, shop
):
    # given: an offer with codes, and a content block
    vips, staff = (
        shop.segments.get(name__startswith="VIP"),
        shop.segments.get(name="Staff members"),
    )
    offer = offer_save(
        merchant=shop,
        name="Birthday coupon",
        code_mode=CodeMode.UNIQUE,
        include=[vips],
        exclude=[staff],
    )
    block = content_block_save(
        merchant=shop, title="Member night", link="https://example.com/night", include=[vips]
    )
    # axe-core is injected into each page: a context that lets it run under the portal's
    # Content-Security-Policy (test_csp_browser checks the policy itself).
    assert CHROMIUM.exists()
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    found: dict[str, list[str]] = {}
    wide: list[str] = []

    # when each page is checked
    for path in (
        "/campaigns/offers/",
        f"/campaigns/offers/{offer.pk}/",
        "/campaigns/offers/new/",
        f"/campaigns/offers/{offer.pk}/edit/",
        "/campaigns/offers/content/new/",
        f"/campaigns/offers/content/{block.pk}/edit/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        for width in (1280, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            if not fits(page):
                wide.append(f"{path} at {width}")
        violations = serious_violations(page)
        if violations:
            found[path] = violations
    context.close()

    # then
    assert wide == []
    assert found == {}
