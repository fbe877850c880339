"""What the browser tests do on every page: sign in through the form, check that the page
fits the window, and run the accessibility check."""

from __future__ import annotations

from pathlib import Path

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


#: axe-core, vendored (the browser tests inject it into the page under test).
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, each as "rule: targets" (the
    page's context must bypass the Content-Security-Policy for the injected script)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ['violations']});
            return result.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '));
        }"""
    )
