"""The customer list in a real browser: sign in, filter by tier, search as you type (htmx)."""

from __future__ import annotations

import os
import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from tests.factories import (
    DEMO_PASSWORD,
    BranchFactory,
    CustomerFactory,
    LineItemFactory,
    MerchantFactory,
    StaffMembershipFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = [
    pytest.mark.browser,
]


def visible_names(page: Page) -> list[str]:
    return page.locator("#customer-table tbody tr td:nth-child(2)").all_inner_texts()


@pytest.mark.django_db(transaction=True)
def test_filter_and_search_the_customer_list(live_server, page):
    # given
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    rival = MerchantFactory(slug="rival", name="Rival Goods")
    gold = TierFactory(merchant=merchant, name="Gold", rank=2)
    silver = TierFactory(merchant=merchant, name="Silver", rank=1)
    branch = BranchFactory(merchant=merchant, code="DT", name="Downtown")
    vip = TagFactory(merchant=merchant, name="vip")
    for i, (ext, first, last, tier) in enumerate(
        [
            ("C-1", "Ann", "Lee", gold),
            ("C-2", "Anna", "Kim", gold),
            ("C-3", "Bob", "Stone", gold),
            ("C-4", "Ann", "Marsh", silver),
            ("C-5", "Cleo", "Park", None),
        ]
    ):
        customer = CustomerFactory(
            merchant=merchant,
            external_id=ext,
            first_name=first,
            last_name=last,
            tier=tier,
            customer_type="retail",
            home_branch=branch if i % 2 else None,
            email_opt_in=bool(i % 2),
            sms_opt_in=i > 2,
            tags=[vip] if i < 2 else [],
        )
        for _ in range(i + 1):
            txn = TransactionFactory(customer=customer, total=Decimal("19.99"), branch=branch)
            LineItemFactory(transaction=txn, quantity=2, amount=Decimal("19.99"))
    CustomerFactory(merchant=rival, external_id="R-1", first_name="Ann", last_name="Rival")
    user = UserFactory(username="alice")
    StaffMembershipFactory(user=user, merchant=merchant)

    # when: sign in through the login form
    page.goto(f"{live_server.url}/customers/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("#id_username", "alice")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # then: the list of the merchant's customers
    expect(page.get_by_role("heading", name="Customers")).to_be_visible()
    expect(page.locator("#customer-table tbody tr")).to_have_count(5)
    assert "Ann Rival" not in visible_names(page)

    if shots := os.environ.get("SCREENSHOT_DIR"):
        page.set_viewport_size({"width": 1600, "height": 1000})
        page.screenshot(path=f"{shots}/customers.png", full_page=True)

    # when: tick the Gold tier (htmx swaps the table in, no page load)
    page.get_by_label("Gold").check()

    # then
    expect(page.locator("#customer-table tbody tr")).to_have_count(3)
    assert sorted(visible_names(page)) == ["Ann Lee", "Anna Kim", "Bob Stone"]
    expect(page).to_have_url(re.compile(rf"tier={gold.pk}"))

    # when: type into the search box
    page.locator("#id_q").press_sequentially("ann l", delay=30)

    # then: the table shrinks to the one Gold "Ann L..."
    expect(page.locator("#customer-table tbody tr")).to_have_count(1)
    assert visible_names(page) == ["Ann Lee"]
    expect(page.locator("#customer-count")).to_contain_text("of 1 customer")
    expect(page).to_have_url(re.compile(r"q=ann(%20|\+)l"))
    assert "email_opt_in" not in page.url  # empty fields are left out of the pushed URL
    # The filter panel stayed in place (only the table was swapped).
    expect(page.get_by_label("Gold")).to_be_checked()

    # when: sort by name from the (htmx-boosted) header link, then open the detail page
    page.locator("#customer-table thead a", has_text="Name").click()
    expect(page).to_have_url(re.compile(r"sort=name"))
    expect(page.locator("#customer-table tbody tr")).to_have_count(1)
    page.get_by_role("link", name="Ann Lee").click()

    # then
    expect(page).to_have_url(re.compile(r"/customers/\d+/$"))
    expect(page.locator("nav.navbar")).to_have_count(1)  # a page of its own, not a swap
    expect(page.locator("#customer-name")).to_have_text("Ann Lee")
    expect(page.locator("#profile")).to_contain_text("C-1")
    if shots:
        page.screenshot(path=f"{shots}/customer-detail.png", full_page=True)
