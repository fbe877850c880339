"""The reports in a real browser: a store manager opens the dashboard, then the segment
analysis, changes the period and sees the chart and the table follow it; the pages fit a
laptop screen."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from customers.models import CustomerMetrics
from tests.browser.pages import fits, sign_in
from tests.factories import (
    BranchFactory,
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
    branch = BranchFactory(merchant=merchant, name="Downtown")
    now = timezone.now()
    # Two loyal customers who bought 3 and 60 days ago, one new customer 3 days ago.
    for index, (days, total, stage) in enumerate(
        ((3, "100.00", "loyal"), (60, "250.00", "loyal"), (3, "40.00", "new"))
    ):
        customer = CustomerFactory(merchant=merchant, external_id=f"C-{index}")
        TransactionFactory(
            customer=customer,
            branch=branch,
            occurred_at=now - dt.timedelta(days=days),
            total=Decimal(total),
        )
        CustomerMetrics.objects.filter(customer=customer).update(lifecycle_stage=stage)
    user = UserFactory(username="manager")
    StaffMembershipFactory(user=user, merchant=merchant, role="manager")
    return merchant


def chart_values(page: Page, chart_id: str) -> list[float | None]:
    """The numbers the chart draws (Chart.js's own data, read from the page)."""
    canvas = page.locator(f'canvas[data-report-chart="{chart_id}"]')
    expect(canvas).to_be_visible()
    for _ in range(50):  # drawn when htmx has settled the new report
        values = canvas.evaluate("c => Chart.getChart(c)?.data.datasets[0].data ?? null")
        if values is not None:
            return values
        page.wait_for_timeout(100)
    raise AssertionError(f"the chart {chart_id} was not drawn")


@pytest.mark.django_db(transaction=True)
def test_a_manager_reads_the_dashboard_and_changes_the_analysis_period(live_server, page, store):
    shots = os.environ.get("SCREENSHOT_DIR")
    page.set_viewport_size({"width": 1280, "height": 900})

    # the dashboard is the home page: the last 30 days' revenue and the lifecycle stages
    sign_in(page, live_server, "/", "manager")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("#key-cards")).to_contain_text("140.00")
    expect(page.locator("#table-lifecycle")).to_contain_text("Loyal")
    assert chart_values(page, "lifecycle")[3] == 2  # new, repeat, regular, loyal: 2 loyal
    assert fits(page)
    if shots:
        page.screenshot(path=f"{shots}/dashboard-1280.png", full_page=True)

    # the segment analysis over 90 days: every order (the new customer's and both loyal ones')
    page.get_by_role("link", name="Segment analysis").first.click()
    page.select_option("#id_period", "90d")
    loyal = page.locator("#table-groups tbody tr", has_text="Loyal")
    expect(loyal).to_contain_text("350.00")
    shares = chart_values(page, "revenue-shares")
    assert shares[:4] == [pytest.approx(40 / 390), 0, 0, pytest.approx(350 / 390)]

    # when the period becomes the last 7 days, the table and the chart follow it
    page.select_option("#id_period", "7d")
    expect(loyal).to_contain_text("100.00")
    expect(page.locator("#period-label")).to_contain_text("7 days")
    assert "period=7d" in page.url
    assert chart_values(page, "revenue-shares")[0] == pytest.approx(40 / 140)
    assert chart_values(page, "revenue-shares")[3] == pytest.approx(100 / 140)
    assert fits(page)
    if shots:
        page.screenshot(path=f"{shots}/segment-analysis-1280.png", full_page=True)

    # custom dates: pick them, show, and see the period they name
    page.select_option("#id_period", "custom")
    today = timezone.localdate(timezone=store.tzinfo)
    page.fill("#id_from", (today - dt.timedelta(days=61)).isoformat())
    page.fill("#id_to", (today - dt.timedelta(days=59)).isoformat())
    page.locator("#report-show").click()
    expect(page.locator("#period-label")).to_contain_text("3 days")
    expect(loyal).to_contain_text("250.00")
