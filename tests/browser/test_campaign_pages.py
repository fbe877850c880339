"""The campaign pages in a real browser: a manager builds an email campaign for a segment
(picked in the searchable select), sees the audience it would reach, sends it after the
confirmation dialog (the messages land as files in a temporary outbox) and sees it sent with
its results; the pages fit a laptop screen and have no serious accessibility violation
(axe-core, vendored, run in the page)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from campaigns.models import Campaign, CampaignStatus, Channel
from campaigns.services.campaigns import campaign_save
from campaigns.services.sending import campaign_start
from segments import services as segment_services
from segments.models import SegmentKind
from tests.browser.conftest import CHROMIUM, settle
from tests.browser.pages import fits, pick, serious_violations, sign_in, submit_and_leave
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOT_DIR")
LAPTOP: ViewportSize = {"width": 1280, "height": 900}


@pytest.fixture
def outbox(settings, tmp_path) -> Path:
    """Every channel writes its messages as files under tmp_path."""
    settings.CAMPAIGN_CHANNELS = {
        channel: {"BACKEND": "campaigns.channels.FileBackend", "OPTIONS": {"DIR": str(tmp_path)}}
        for channel in Channel.values
    }
    return tmp_path


@pytest.fixture
def shop(db):
    """Six opted-in regulars and one without consent, in a segment with a long name."""
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    regulars = [
        CustomerFactory(merchant=merchant, first_name=f"Regular{i}", opted_in=True)
        for i in range(6)
    ]
    regulars.append(CustomerFactory(merchant=merchant, first_name="Quiet"))
    for name, members in (
        ("Regulars of the downtown waterfront store", regulars),
        ("Staff members", regulars[:1]),
    ):
        segment = segment_services.segment_create(
            merchant=merchant, name=name, kind=SegmentKind.MANUAL
        )
        segment_services.segment_members_add(segment=segment, customers=[c.pk for c in members])
    StaffMembershipFactory(user=UserFactory(username="manager"), merchant=merchant, role="manager")
    return merchant


def shoot(page: Page, name: str) -> None:
    if SHOTS:
        for width in (1280, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=True)
        page.set_viewport_size(LAPTOP)


@pytest.mark.django_db(transaction=True)
def test_a_manager_builds_a_campaign_sees_its_audience_sends_it_and_sees_the_results(
    live_server, page, shop, outbox
):
    page.set_viewport_size(LAPTOP)
    sign_in(page, live_server, "/campaigns/", "manager")
    expect(page.locator("#campaigns-empty")).to_be_visible()

    # the form: an email to the regulars, leaving staff out, no holdout
    page.click("#new-campaign")
    expect(page.locator("h1")).to_have_text("New campaign")
    assert fits(page)
    page.fill("#id_name", "Spring news")
    page.select_option("#id_channel", "push")
    expect(page.locator("label[for=id_subject]")).to_have_text("Title")
    page.select_option("#id_channel", "sms")
    expect(page.locator("#subject-part")).to_be_hidden()
    page.select_option("#id_channel", "email")
    expect(page.locator("label[for=id_subject]")).to_have_text("Subject")
    page.fill("#id_subject", "Spring is here, {{ first_name }}")
    page.fill("#id_body", 'Hello {{ first_name|default:"friend" }}, see you soon.')
    page.fill("#id_holdout_percent", "0")
    pick(page, "id_include", "Regulars of the downtown waterfront store")
    pick(page, "id_exclude", "Staff members")
    # (the save renders the first member's content: slow on two busy cores, and
    # submit_and_leave waits up to 15 s for the campaign's page)
    submit_and_leave(page, "#save-campaign", "Spring news")

    # its page: the content for the first member, and the audience now
    expect(page.locator(".alert-success")).to_contain_text('Campaign "Spring news" saved.')
    expect(page.locator("#preview-subject")).to_have_text("Spring is here, Regular1")
    expect(page.locator("#audience-members")).to_have_text("6")
    expect(page.locator("#audience-eligible")).to_have_text("5")
    expect(page.locator("#skip-no_consent td")).to_have_text("1")
    assert fits(page)

    # sent after the confirmation dialog
    page.click("#send-now")
    dialog = page.locator("#send-modal")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#send-summary")).to_contain_text("goes to 5 customers")
    dialog.locator("#confirm-send").click()

    # then: sent (without a broker the send ran in the request), with its results
    expect(page.locator("#campaign-status")).to_have_text("Sent")
    expect(page.locator("#progress-sent")).to_have_text("5")
    expect(page.locator("#progress-skipped")).to_have_text("1")
    expect(page.locator("#results-sent")).to_have_text("5")
    expect(page.locator("#results-skip-no_consent td")).to_have_text("1")
    expect(page.locator("#lift-not-ready")).to_contain_text("no holdout")
    expect(page.locator("#edit-campaign")).to_have_count(0)
    settle(page)
    assert fits(page)
    campaign = Campaign.objects.get(name="Spring news")
    assert campaign.status == CampaignStatus.SENT
    files = sorted((outbox / "acme" / str(campaign.pk)).glob("*.json"))
    assert len(files) == 5
    assert json.loads(files[0].read_text())["subject"].startswith("Spring is here, Regular")

    # and the deliveries list has a row per customer of the audience
    page.click("#deliveries-link")
    expect(page.locator("#customer-count")).to_contain_text("of 6 customers")
    assert fits(page)


@pytest.mark.django_db(transaction=True)
def test_the_campaign_pages_fit_and_have_no_serious_accessibility_violations(
    live_server, browser: Browser, shop, outbox
):
    # given: a draft and a sent campaign
    regulars = shop.segments.get(name__startswith="Regulars")
    values: dict[str, Any] = {
        "channel": Channel.EMAIL,
        "subject": "Hi {{ first_name }}",
        "body": "Hello!",
    }
    draft = campaign_save(merchant=shop, include=[regulars], name="Autumn draft", **values)
    sent = campaign_save(
        merchant=shop, include=[regulars], name="Spring news", holdout_percent=20, **values
    )
    campaign_start(campaign_id=sent.pk)
    sent.refresh_from_db()
    assert sent.status == CampaignStatus.SENT
    # axe-core is injected into each page: a context that lets it run under the portal's
    # Content-Security-Policy (test_csp_browser checks the policy itself).
    assert CHROMIUM.exists()
    context = browser.new_context(bypass_csp=True, viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    found: dict[str, list[str]] = {}
    wide: list[str] = []

    # when each page is checked
    for path in (
        "/campaigns/",
        "/campaigns/new/",
        f"/campaigns/{draft.pk}/",
        f"/campaigns/{draft.pk}/edit/",
        f"/campaigns/{draft.pk}/delete/",
        f"/campaigns/{sent.pk}/",
        f"/campaigns/{sent.pk}/deliveries/",
        "/campaigns/rules/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        settle(page)
        for width in (1280, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            if not fits(page):
                wide.append(f"{path} at {width}")
        page.set_viewport_size(LAPTOP)
        violations = serious_violations(page)
        if violations:
            found[path] = violations
    context.close()

    # then
    assert wide == []
    assert found == {}
