"""Browser tests: pytest-playwright driving Debian's chromium (never `playwright install`)."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

# Playwright's sync API runs an event loop in this thread; live_server tests touch the ORM
# from it, which Django refuses without this.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))  # Debian's, apt-installed
NO_CHROMIUM = (
    f"Debian's chromium is not at {CHROMIUM} "
    "(install it with `sudo apt-get install chromium`; .ci/run does)"
)
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without chromium, skip the browser tests with a message that says how to get it;
    with BROWSER_TESTS=required (CI), fail instead, so they are never skipped unseen."""
    if CHROMIUM.exists():
        return
    ours = [item for item in items if HERE in Path(item.fspath).parents]
    if not ours:
        return
    if os.environ.get("BROWSER_TESTS") == "required":
        raise pytest.UsageError(f"BROWSER_TESTS=required, but {NO_CHROMIUM}")
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=f"browser test skipped: {NO_CHROMIUM}"))


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
