"""What the browser tests do on every page: sign in through the form, and check that the
page fits the window."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.factories import DEMO_PASSWORD


def sign_in(page: Page, live_server, path: str, username: str) -> None:
    """Open `path`, sign in as `username` on the form it redirects to, and wait for the page."""
    page.goto(f"{live_server.url}{path}")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_be_visible()


def fits(page: Page) -> bool:
    """No horizontal scrolling: the page is no wider than the window."""
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
