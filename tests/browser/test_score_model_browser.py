"""The model page in a real browser: staff go from the Scores page to the prediction model,
the holdout chart is drawn under the Content-Security-Policy (data from a json_script, the
script a static file), and the page fits a laptop screen; it and the customer page's
Predictions card have no serious accessibility violation (axe-core, vendored)."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import pytest
from playwright.sync_api import ConsoleMessage, expect

from customers.models import CustomerMetrics, ScoreSettings
from tests.browser.pages import fits, serious_violations
from tests.customers.score_models import full_model
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser]


@pytest.mark.django_db(transaction=True)
def test_staff_open_the_model_page_and_see_the_holdout_chart(live_server, page):
    # given a merchant with a fitted model and a staff member
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    ScoreSettings.objects.update_or_create(merchant=merchant, defaults={"model": full_model()})
    StaffMembershipFactory(user=UserFactory(username="clerk"), merchant=merchant, role="staff")
    problems: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", watch)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.set_viewport_size({"width": 1280, "height": 900})

    # when they sign in, open Scores and follow the link to the model
    page.goto(f"{live_server.url}/scores/")
    page.fill("#id_username", "clerk")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Prediction model").click()

    # then the chart is drawn beside the weekly table, with no error or policy violation
    expect(page.locator("h1")).to_have_text("Prediction model")
    chart = page.locator("#holdout-chart[data-drawn='1']")
    expect(chart).to_have_count(1)
    box = chart.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 150
    expect(page.locator("#holdout-weeks tbody tr")).to_have_count(5)
    expect(page.locator("#holdout-totals")).to_contain_text("1,234 repeat orders seen")
    assert fits(page)
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=f"{shots}/score-model-1280.png", full_page=True)
    assert problems == []


@pytest.mark.django_db(transaction=True)
def test_the_model_page_and_the_predictions_card_have_no_serious_accessibility_violations(
    live_server, browser
):
    # given a fitted merchant and a customer with predictions
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    ScoreSettings.objects.update_or_create(merchant=merchant, defaults={"model": full_model()})
    customer = CustomerFactory(merchant=merchant)
    CustomerMetrics.objects.filter(customer=customer).update(
        orders_count=4,
        p_alive=0.35,
        churn_risk=0.65,
        expected_orders_90d=0.4,
        p_order_30d=0.12,
        predicted_clv=Decimal("250.00"),
        smart_segment="loyal_at_risk",
        churn_cutoff_on=dt.date(2027, 3, 12),
    )
    StaffMembershipFactory(user=UserFactory(username="clerk"), merchant=merchant, role="staff")
    # axe-core runs in the page: a context that lets it run under the portal's policy.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "clerk")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    found: dict[str, list[str]] = {}

    # when each page is checked
    for path in ("/scores/model/", f"/customers/{customer.pk}/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        assert fits(page), path
        violations = serious_violations(page)
        if violations:
            found[path] = violations
    expect(page.locator("#prediction-reading")).to_contain_text("At risk: 35.0%")
    context.close()

    # then
    assert found == {}
