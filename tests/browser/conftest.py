"""Browser tests: pytest-playwright driving Debian's chromium (never `playwright install`)."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

# Playwright's sync API runs an event loop in this thread; live_server tests touch the ORM
# from it, which Django refuses without this.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; CI installs it with apt


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, object]:
    return {
        "executable_path": str(CHROMIUM),
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    }


def settle(page: Page) -> None:
    """Wait until htmx has no request in flight (an edit re-renders a part of the page).

    A locator, not `wait_for_function`: Playwright polls a function by evaluating it in the
    page, which the Content-Security-Policy (no eval) refuses."""
    page.wait_for_timeout(150)
    expect(page.locator(".htmx-request")).to_have_count(0)
