"""What the browser tests do on every page: sign in through the form, pick in a searchable
select, submit a form and leave it, check that the page fits the window, and run the
accessibility check."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.factories import DEMO_PASSWORD


def sign_in(page: Page, live_server, path: str, username: str) -> None:
    """Open `path`, sign in as `username` on the form it redirects to, and wait for the page."""
    page.goto(f"{live_server.url}{path}")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_be_visible()


def pick(page: Page, select_id: str, text: str, *, attempts: int = 3) -> None:
    """Choose the option showing `text` in a searchable multi-select (Tom Select) by typing
    its first word, and wait until the hidden `<select id=select_id>` has it selected.

    Under load a pick can be lost (the search box loses the focus, or the dropdown shows
    late), and the form would be saved without it: so the pick is checked on the select the
    form submits, and tried again. A locator (`option:checked`), not `wait_for_function`:
    the Content-Security-Policy (no eval) refuses the latter."""
    chosen = page.locator(f"#{select_id} option:checked", has_text=text)
    for attempt in range(1, attempts + 1):
        try:
            page.click(f"#{select_id}-ts-control")
            # typed as one input event into Tom Select's own search box (the keyboard would
            # type into whatever has the focus, not always that box under load)
            page.fill(f"#{select_id}-ts-control", text.split()[0])
            option = page.locator(f"#{select_id}-ts-dropdown .option", has_text=text)
            expect(option).to_be_visible()
            option.click()
            page.keyboard.press("Escape")
            expect(page.locator(f"#{select_id}-ts-dropdown")).to_be_hidden()
            expect(chosen).to_have_count(1)
            return
        except AssertionError as error:
            if attempt == attempts:
                raise AssertionError(
                    f"{text!r} is not selected in #{select_id} after {attempts} picks: {error}"
                ) from None
            # start again from a closed dropdown and an empty search box
            page.keyboard.press("Escape")
            page.fill(f"#{select_id}-ts-control", "")


def submit_and_leave(
    page: Page, button: str, heading: str, *, timeout: float = 15_000, attempts: int = 3
) -> None:
    """Submit the form with its `button` and wait for the page headed `heading`; if the form
    is still there, fail with its errors, so the failure says why the save was refused.

    The button gets a click event of its own (`dispatch_event`), neither a mouse click nor
    Enter. Tom Select redraws its control on any mouse-down outside it, and in a busy
    headless browser it can miss its own blur (it ignores a blur while `document.hasFocus()`
    is false): the control then lost its search line on the Save button's mouse-down, the
    button moved up under the pointer and the mouse-up landed on the card below (about one
    run in six). Enter had its own failure: when the select took the focus back, the press
    went to it and added its highlighted option to the form (an offer saved aimed at two
    segments instead of one). A click event involves neither the pointer nor the focus. An
    event that sends nothing is repeated; one that sent the form is not, so nothing is
    saved twice."""
    for attempt in range(1, attempts + 1):
        try:
            with page.expect_request(lambda request: request.method == "POST", timeout=5_000):
                page.locator(button).dispatch_event("click")
            break
        except PlaywrightTimeoutError:
            if attempt == attempts:
                raise AssertionError(
                    f"clicking {button} {attempts} times sent no form from {page.url}"
                ) from None
    try:
        expect(page.locator("h1")).to_have_text(heading, timeout=timeout)
    except AssertionError:
        errors = [
            " ".join(text.split())
            for text in page.locator(
                "#form-errors, .alert-danger, .invalid-feedback, .errorlist"
            ).all_text_contents()
            if text.strip()
        ]
        raise AssertionError(
            f"after submitting with {button} the page is {page.url} headed "
            f"{page.locator('h1').first.text_content()!r}, not {heading!r}; "
            f"the form's errors: {errors or 'none shown'}"
        ) from None


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
