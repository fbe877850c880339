"""The portal's pages as a merchant sees them on a laptop: the lists fit a 1280 px screen,
sorting keeps the heading in view, a column choice is remembered, the 404 page leads back,
and no main page has a serious accessibility violation (axe-core, vendored, run in the page)."""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from customers.scores.service import scores_compute
from segments import services
from segments.models import SegmentKind
from tests.browser import pages
from tests.browser.conftest import CHROMIUM, settle
from tests.browser.pages import serious_violations
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser]

LAPTOP = {"width": 1280, "height": 800}


@pytest.fixture
def shop(db):
    """A merchant whose customers fill every column with long values, and segments with
    statistics, as a real list would show them."""
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    gold = TierFactory(merchant=merchant, name="Platinum Plus", rank=3)
    branch = BranchFactory(merchant=merchant, code="DTW", name="Downtown Waterfront")
    tags = [TagFactory(merchant=merchant, name=f"newsletter-subscriber-{i}") for i in range(3)]
    for i in range(30):
        customer = CustomerFactory(
            merchant=merchant,
            external_id=f"CUST-2026-{i:06d}",
            first_name="Maximiliana-Josefina",
            last_name=f"Vanderberghe-Montgomery {i}",
            email=f"maximiliana.josefina.vanderberghe{i}@example-loyalty-program.com",
            phone=f"+1647200{i:04d}",
            tier=gold,
            home_branch=branch,
            customer_type="medical-patient",
            tags=tags,
            email_opt_in=True,
            sms_opt_in=True,
            push_opt_in=True,
        )
        TransactionFactory(
            customer=customer,
            total=Decimal("123456.78") + i,
            occurred_at=timezone.now() - dt.timedelta(days=i),
        )
    for name in ("Big spenders of the downtown waterfront store", "Lapsed", "Locals"):
        services.segment_create(
            merchant=merchant,
            name=name,
            kind=SegmentKind.DYNAMIC,
            rules={
                "match": "all",
                "conditions": [{"field": "total_spend", "op": "gte", "value": 1}],
            },
        )
    services.segment_create(merchant=merchant, name="Front desk list", kind=SegmentKind.MANUAL)
    scores_compute(merchant=merchant)
    user = UserFactory(username="owner")
    StaffMembershipFactory(user=user, merchant=merchant, role="owner")
    return merchant


def sign_in(page: Page, live_server, path: str = "/customers/") -> None:
    pages.sign_in(page, live_server, path, "owner")


def overflow(page: Page, table: str) -> dict[str, float]:
    """How the list's table sits in its container and in the window."""
    return page.evaluate(
        """(selector) => {
            const table = document.querySelector(selector);
            const box = table.closest('.table-responsive') || table.parentElement;
            const right = Math.max(...Array.from(table.querySelectorAll('th, td'))
                .map(cell => cell.getBoundingClientRect().right));
            return {table: table.scrollWidth, box: box.clientWidth, right: right,
                    window: document.documentElement.clientWidth};
        }""",
        table,
    )


@pytest.mark.django_db(transaction=True)
def test_the_lists_fit_a_laptop_screen_and_sorting_keeps_the_heading(live_server, page, shop):
    page.set_viewport_size(LAPTOP)
    sign_in(page, live_server)

    # then: the customer list's default columns fit, with no sideways scrolling
    customers = overflow(page, "#customer-table table")
    assert customers["table"] <= customers["box"], customers
    assert customers["right"] <= customers["window"], customers

    # and the segment list's, down to the last row's actions menu
    page.goto(f"{live_server.url}/segments/")
    segments = overflow(page, "#segments")
    assert segments["table"] <= segments["box"], segments
    assert segments["right"] <= segments["window"], segments
    actions = page.locator("#segments tbody tr").last.get_by_role("button", name="Actions")
    expect(actions).to_be_in_viewport()

    # when: scrolled down a little, the customer list is sorted from its header
    page.goto(f"{live_server.url}/customers/")
    page.mouse.wheel(0, 300)
    page.wait_for_timeout(200)
    page.locator("#customer-table thead a", has_text="Net spend").click()
    expect(page).to_have_url(re.compile(r"sort=net_spend"))
    settle(page)

    # then: the heading is in view, and only the sorted column has an arrow
    expect(page.get_by_role("heading", name="Customers")).to_be_in_viewport()
    arrows = page.locator("#customer-table thead th", has_text=re.compile("[▲▼]"))
    expect(arrows).to_have_count(1)
    expect(arrows).to_contain_text("Net spend")


@pytest.mark.django_db(transaction=True)
def test_a_column_choice_is_remembered(live_server, page, shop):
    page.set_viewport_size(LAPTOP)
    sign_in(page, live_server)
    header = page.locator("#customer-table thead th")
    expect(header.filter(has_text="Phone")).to_have_count(0)

    # when: Phone is ticked in the column chooser
    page.locator("#columns-menu").click()
    page.locator("#show-phone").check()
    settle(page)

    # then: it shows at once, and again on the next visit
    expect(header.filter(has_text="Phone")).to_have_count(1)
    expect(page.locator("#customer-table tbody")).to_contain_text("+16472000000")
    page.goto(f"{live_server.url}/customers/")
    expect(header.filter(has_text="Phone")).to_have_count(1)
    assert "show=" not in page.url


@pytest.mark.django_db(transaction=True)
def test_another_merchants_page_is_a_friendly_404(live_server, page, shop, settings):
    settings.DEBUG = False
    rival = MerchantFactory(slug="rival", name="Rival")
    foreign = CustomerFactory(merchant=rival)
    page.set_viewport_size(LAPTOP)
    sign_in(page, live_server)

    response = page.goto(f"{live_server.url}/customers/{foreign.pk}/")

    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.locator("nav.navbar")).to_contain_text("Segments")  # the portal's layout
    if shots := os.environ.get("SCREENSHOT_DIR"):
        for width in (1280, 1400):
            page.set_viewport_size({"width": width, "height": 600})
            page.screenshot(path=f"{shots}/not-found-{width}.png")
    page.get_by_role("link", name="Go to segments").click()
    expect(page).to_have_url(re.compile(r"/segments/$"))


@pytest.mark.django_db(transaction=True)
def test_the_main_pages_have_no_serious_accessibility_violations(live_server, browser, shop):
    # axe-core is injected into each page: a context that lets it run under the portal's
    # Content-Security-Policy (test_csp_browser checks the policy itself).
    context = _context(browser)
    page = context.new_page()
    page.set_viewport_size(LAPTOP)
    segment = shop.segments.get(name="Lapsed")
    customer = shop.customers.first()
    pages = [
        "/customers/",
        f"/customers/{customer.pk}/",
        "/segments/",
        f"/segments/{segment.pk}/",
        f"/segments/{segment.pk}/edit/",
        f"/segments/{segment.pk}/history/",
        "/segments/new/",
        "/import/",
        "/scores/",
        "/scores/settings/",
        "/scores/transitions/",
        "/scores/transitions/customers/?from=&to=new",
        "/help/",
        "/help/segment-builder/",
        "/",
        "/reports/",
        "/reports/branches/",
        "/reports/key-figures/",
        "/campaigns/offers/",
        f"/reports/growth/?segments={segment.pk}",
        f"/reports/overlap/?segments={segment.pk}&segments={shop.segments.exclude(pk=segment.pk).first().pk}",
    ]
    found: dict[str, list[str]] = {}

    def check(path: str) -> None:
        violations = serious_violations(page)
        if violations:
            found[path] = violations

    page.goto(f"{live_server.url}/accounts/login/")
    check("/accounts/login/")
    sign_in(page, live_server)
    for path in pages:
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        check(path)
    context.close()

    assert found == {}


def _context(browser: Browser):
    assert CHROMIUM.exists()
    return browser.new_context(bypass_csp=True)
