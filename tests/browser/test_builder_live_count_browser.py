"""The builder's live count always counts the rules on screen, after every kind of edit
(typing a value, a field, an operator, + Condition, + Group, removing, pasting JSON), and the
first click after typing a value is not lost (Portal experience, points 1 to 3)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from customers.models import Merchant
from segments import engine
from tests.browser.conftest import settle
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    TagFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = [
    pytest.mark.browser,
]


def quiet(page: Page) -> None:
    """No edit pending: past the live count's debounce, and no request in flight."""
    settle(page)
    page.wait_for_timeout(600)
    settle(page)


def rules_on_screen(page: Page) -> dict:
    quiet(page)
    return json.loads(page.locator("#rule-json-panel").text_content() or "{}")


def count_matches_the_rules_on_screen(page: Page, merchant: Merchant) -> int:
    quiet(page)
    rules = rules_on_screen(page)
    expected = engine.count_matching(merchant=merchant, rules=rules)
    expect(page.locator("#live-count-value")).to_have_text(f"{expected:,}")
    return expected


@pytest.mark.django_db(transaction=True)
def test_every_edit_ends_in_the_count_of_the_rules_on_screen(live_server, page):
    # given ten customers who spent 50 to 500, every third tagged vip
    merchant = MerchantFactory(slug="acme", name="Acme", time_zone="America/Toronto")
    vip = TagFactory(merchant=merchant, name="vip")
    for i in range(1, 11):
        customer = CustomerFactory(
            merchant=merchant, external_id=f"C{i:02d}", tags=[vip] if i % 3 == 0 else []
        )
        TransactionFactory(customer=customer, total=Decimal(50 * i), occurred_at=timezone.now())
    StaffMembershipFactory(user=UserFactory(username="owner"), merchant=merchant)
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{live_server.url}/segments/new/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # TRICKY: the prompt below is in the server's HTML; without waiting for the page's
    # scripts, the first select_option could change the field before htmx listens (seen
    # once in a CI run: the prompt stayed "Choose a field.").
    page.wait_for_url(f"{live_server.url}/segments/new/", wait_until="load")

    # a new segment is a neutral prompt, not an error
    expect(page.locator("#node-r-0 .node-prompt")).to_have_text("Choose a field.")
    expect(page.locator("#preview-errors")).to_contain_text("Finish the rules")
    expect(page.locator(".node-error")).to_have_count(0)

    # a field: asks for an amount, in words
    page.select_option("#node-r-0-field", "total_spend")
    settle(page)
    expect(page.locator("#node-r-0 .node-prompt")).to_have_text("Enter an amount.")

    # typing a value, then "+ Condition" at once: the click is not lost
    page.fill("#node-r-0-value", "200")
    page.click("#node-r-add")
    settle(page)
    expect(page.locator("#node-r-1-field")).to_have_count(1)
    expect(page.locator("#node-r-0-value")).to_have_value("200")

    # the new condition: tags has any of vip, through the searchable select
    page.select_option("#node-r-1-field", "tags")
    settle(page)
    page.click("#node-r-1-value-ts-control")
    page.keyboard.type("vi")
    page.locator("#node-r-1 .ts-dropdown .option", has_text="vip").click()
    page.keyboard.press("Escape")
    assert count_matches_the_rules_on_screen(page, merchant) == 2  # vip and ≥ 200: C06, C09

    # an operator
    page.select_option("#node-r-0-op", "lt")
    assert count_matches_the_rules_on_screen(page, merchant) == 1  # vip and spent < 200: C03

    # removing a condition
    page.click("#node-r-0-remove")
    assert rules_on_screen(page)["conditions"][0]["field"] == "tags"
    assert count_matches_the_rules_on_screen(page, merchant) == 3

    # + Group, filled in: spend at least 400 in an "any of" group
    page.click("#node-r-add-group")
    settle(page)
    page.select_option("#node-r-1-0-field", "total_spend")
    settle(page)
    page.fill("#node-r-1-0-value", "400")
    assert count_matches_the_rules_on_screen(page, merchant) == 1  # vip and ≥ 400: C09

    # pasting JSON replaces the rules, and the count follows
    page.locator("#advanced summary").click()
    page.fill(
        "#paste-json",
        json.dumps(
            {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": 350}]}
        ),
    )
    page.click("#paste-apply")
    assert rules_on_screen(page)["conditions"] == [
        {"field": "total_spend", "op": "gte", "value": 350}
    ]
    assert count_matches_the_rules_on_screen(page, merchant) == 4  # C07 to C10

    # quick typing: only the last value counts
    for value in ("1", "10", "100", "1000"):
        page.fill("#node-r-0-value", value)
    assert count_matches_the_rules_on_screen(page, merchant) == 0
