"""The segment builder in a real browser: build "Phat Panda preroll lovers" by clicking,
watch the live count, save, land on the detail page."""

from __future__ import annotations

import datetime as dt
import os
import re
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from segments.models import Segment
from tests.browser.conftest import settle
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    LineItemFactory,
    MerchantFactory,
    ProductFactory,
    StaffMembershipFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = [
    pytest.mark.browser,
]


def bought(customer, product, units: int, days_ago: int) -> None:
    txn = TransactionFactory(
        customer=customer,
        occurred_at=timezone.now() - dt.timedelta(days=days_ago),
        total=Decimal("10.00") * units,
    )
    LineItemFactory(transaction=txn, product=product, quantity=units)


@pytest.mark.django_db(transaction=True)
def test_build_the_phat_panda_segment_by_clicking(live_server, page):
    # given: 3 recent Phat Panda preroll lovers, and customers who just miss
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    panda = ProductFactory(merchant=merchant, product_type="preroll", brand="Phat Panda")
    other = ProductFactory(merchant=merchant, product_type="preroll", brand="Other Co")
    ProductFactory(merchant=merchant, product_type="edible", brand="Phat Panda")
    for i, (units, days_ago) in enumerate([(20, 3), (16, 10), (30, 1)]):
        bought(CustomerFactory(merchant=merchant, external_id=f"LOVER-{i}"), panda, units, days_ago)
    bought(CustomerFactory(merchant=merchant, external_id="FEW"), panda, 15, 2)
    bought(CustomerFactory(merchant=merchant, external_id="LONG-AGO"), panda, 40, 45)
    bought(CustomerFactory(merchant=merchant, external_id="OTHER"), other, 40, 2)
    user = UserFactory(username="alice")
    StaffMembershipFactory(user=user, merchant=merchant)

    # when: sign in and open New segment from the list
    page.set_viewport_size({"width": 1500, "height": 1000})
    page.goto(f"{live_server.url}/segments/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#new-segment").click()
    expect(page).to_have_url(re.compile(r"/segments/new/$"))
    page.fill("#id_name", "Phat Panda preroll lovers")

    # build the condition by clicking
    page.locator("#node-r-0-field").select_option("purchased")
    settle(page)
    page.locator("#node-r-0-products-product_types").select_option("preroll")
    settle(page)
    page.locator("#node-r-0-products-brands").select_option("Phat Panda")
    settle(page)
    page.locator("#node-r-0-op").select_option(label="more than")
    settle(page)
    page.locator("#node-r-0-value").fill("15")
    page.locator("#node-r-0-value").press("Tab")
    settle(page)
    page.locator("#node-r-0-last_within_days").fill("14")
    page.locator("#node-r-0-last_within_days").press("Tab")
    settle(page)

    # then: the live count and the funnel show the 3 lovers
    expect(page.locator("#live-count-value")).to_have_text("3")
    expect(page.locator("#funnel tbody tr")).to_have_count(1)
    expect(page.locator("#rule-json-panel")).to_contain_text('"last_within_days": 14')
    if shots := os.environ.get("SCREENSHOT_DIR"):  # e.g. SCREENSHOT_DIR=/tmp -> /tmp/builder.png
        page.screenshot(path=f"{shots}/builder.png", full_page=True)

    # when: save
    page.locator("#save-segment").click()

    # then: the detail page of the new segment
    expect(page).to_have_url(re.compile(r"/segments/\d+/$"))
    expect(page.locator("#segment-name")).to_have_text("Phat Panda preroll lovers")
    segment = Segment.objects.get(merchant=merchant)
    assert segment.rules == {
        "match": "all",
        "negate": False,
        "conditions": [
            {
                "field": "purchased",
                "op": "gt",
                "value": 15,
                "products": {"product_types": ["preroll"], "brands": ["Phat Panda"]},
                "last_within_days": 14,
            }
        ],
    }
    expect(page.locator("#segment-sentence")).to_contain_text("Phat Panda")

    # when: ask why FEW is out (htmx swaps the explanation in)
    page.locator("#explain-customer").fill("FEW")
    page.get_by_role("button", name="Explain").click()

    # then
    expect(page.locator("#explain-verdict")).to_contain_text("is out")
    expect(page.locator(".explain-row")).to_have_count(1)
    expect(page.locator(".explain-row")).to_have_attribute("data-matched", "false")

    # when: refresh now (no broker: it runs in-process once the request has committed)
    page.locator("#refresh-now").click()

    # then
    expect(page.locator("#refresh-status")).to_have_text("Up to date")
    expect(page.locator("#member-count")).to_have_text("3")
    if shots := os.environ.get("SCREENSHOT_DIR"):
        page.screenshot(path=f"{shots}/segment_detail.png", full_page=True)
