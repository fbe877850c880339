"""The API's interactive docs page (/api/v1/docs) in a real browser: an owner follows the
link on the API tokens page, and Swagger UI, served from this site, lists the operations
without one request to another host and without a Content-Security-Policy violation."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.pages import fits, sign_in
from tests.factories import MerchantFactory, StaffMembershipFactory, UserFactory

pytestmark = [pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOT_DIR")


def shoot(page: Page, name: str) -> None:
    if SHOTS:
        for width in (1280, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.django_db(transaction=True)
def test_an_owner_opens_the_api_docs_served_from_this_site_only(live_server, page):
    # given an owner, and a watch on every request and on the console
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis")
    StaffMembershipFactory(user=UserFactory(username="owner"), merchant=merchant, role="owner")
    hosts: set[str] = set()
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(message.text)

    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or ""))
    page.on("console", watch)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live_server, "/api-tokens/", "owner")
    shoot(page, "api-tokens")

    # when the owner follows the link to the API reference
    page.click("#api-docs-link")

    # then Swagger UI lists the operations by section
    expect(page).to_have_url(f"{live_server.url}/api/v1/docs")
    expect(page.locator("#operations-tag-customers")).to_be_visible()
    expect(page.locator("#operations-tag-segments")).to_be_visible()
    put_customer = page.locator(".opblock-put").filter(has_text="/api/v1/customers/{external_id}")
    expect(put_customer).to_be_visible()
    # an operation opens with its parameters and the body it takes
    put_customer.locator(".opblock-summary").click()
    expect(put_customer.locator(".parameters-container")).to_contain_text("external_id")
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert fits(page)
    shoot(page, "api-docs")
    page.wait_for_load_state("networkidle")

    # and everything came from this site, under the Content-Security-Policy
    assert hosts == {urlsplit(live_server.url).hostname}
    assert violations == []


@pytest.mark.django_db(transaction=True)
def test_the_help_index_links_to_the_api_docs(live_server, page):
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis")
    StaffMembershipFactory(user=UserFactory(username="clerk"), merchant=merchant, role="staff")
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live_server, "/help/", "clerk")
    shoot(page, "help-index")

    page.click("#api-docs-link")

    expect(page.locator("#operations-tag-customers")).to_be_visible()
