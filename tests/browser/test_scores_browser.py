"""The Scores pages in a real browser: a manager reads the stages and the RFM grid, opens a
stage's customers, changes a threshold and a grid cell, and sees the scores recomputed and
the change logged; the pages fit a laptop screen."""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from customers.models import ScoreSettings
from customers.scores.service import scores_compute
from tests.browser.pages import fits, sign_in
from tests.factories import (
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser]


@pytest.fixture
def store(db):
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    now = timezone.now()
    for index, days in enumerate((1, 5, 40, 95, 100, 200, 300)):
        customer = CustomerFactory(merchant=merchant, external_id=f"C-{index}")
        TransactionFactory(
            customer=customer,
            occurred_at=now - dt.timedelta(days=days),
            total=Decimal("10.00") * (index + 1),
        )
    CustomerFactory(merchant=merchant, external_id="C-none")
    scores_compute(merchant=merchant)
    user = UserFactory(username="manager")
    StaffMembershipFactory(user=user, merchant=merchant, role="manager")
    return merchant


@pytest.mark.django_db(transaction=True)
def test_a_manager_reads_and_changes_the_scores(live_server, page, store):
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live_server, "/scores/", "manager")

    # the stages, with the customers of each a click away
    at_risk = page.locator('#stages tr[data-stage="at_risk"]')
    expect(at_risk).to_contain_text("2")
    expect(page.locator("#score-status")).to_have_text("Up to date")
    assert fits(page)
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=f"{shots}/scores-1280.png", full_page=True)
    at_risk.get_by_role("link", name="At risk").click()
    expect(page).to_have_url(re.compile(r"/customers/\?lifecycle_stage=at_risk$"))
    expect(page.locator("#customer-table tbody tr")).to_have_count(2)

    # the settings: at risk after 30 days instead of 90, and the R 5 / FM 1 cell "active"
    page.goto(f"{live_server.url}/scores/settings/")
    assert fits(page)
    page.get_by_label("At risk after").fill("30")
    page.get_by_label("R 5, FM 1").select_option("active")
    page.get_by_role("button", name="Save and recompute").click()

    expect(page.locator(".alert-success, .alert-info")).to_contain_text("Score settings saved")
    expect(page.locator("#settings-changes")).to_contain_text("at risk days: 90 → 30")
    expect(page.locator("#settings-changes")).to_contain_text("RFM grid R 5, FM 1: new → active")
    if shots:
        page.screenshot(path=f"{shots}/score-settings-1280.png", full_page=True)
    # saved, recomputed with the new threshold: 40 days without an order is now at risk
    assert ScoreSettings.objects.get(merchant=store).at_risk_days == 30
    page.goto(f"{live_server.url}/scores/")
    expect(page.locator('#stages tr[data-stage="at_risk"]')).to_contain_text("3")

    # a bad value is refused in place
    page.goto(f"{live_server.url}/scores/settings/")
    page.get_by_label("Dormant after").fill("20")
    page.get_by_role("button", name="Save and recompute").click()
    expect(page.locator("#settings-errors")).to_contain_text(
        "Dormant days (20) must exceed at-risk days (30)"
    )


@pytest.mark.django_db(transaction=True)
def test_the_transitions_page_links_to_who_moved(live_server, page, store):
    page.set_viewport_size({"width": 1400, "height": 900})
    sign_in(page, live_server, "/scores/transitions/", "manager")

    # this week every customer with an order entered a stage
    cell = page.locator('#transition-matrix td[data-from=""][data-to="dormant"]')
    expect(cell).to_have_text("2")
    assert fits(page)
    if shots := os.environ.get("SCREENSHOT_DIR"):
        page.screenshot(path=f"{shots}/transitions-1400.png", full_page=True)
    cell.get_by_role("link").click()
    expect(page.locator("h1")).to_have_text("No order yet → Dormant")
    expect(page.locator("#moved-customers tbody tr")).to_have_count(2)
