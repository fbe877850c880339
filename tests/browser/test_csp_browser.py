"""Every page works under the Content-Security-Policy in a real browser: no violation is
reported while the behaviours that used inline script (copy, select all, the size chart, the
filter panel, the rule editor's edits, the live count, the customer's segments) still work."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, expect

from segments import services
from segments.models import SegmentKind, SegmentSizeSnapshot
from tests.browser.conftest import settle
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = [
    pytest.mark.browser,
]


@pytest.mark.django_db(transaction=True)
def test_pages_work_without_a_single_csp_violation(live_server, page):
    # given a merchant with customers, a segment with a size history, and an owner
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    for i in range(3):
        customer = CustomerFactory(merchant=merchant, external_id=f"C{i}")
        TransactionFactory(customer=customer, occurred_at=timezone.now() - dt.timedelta(days=i))
    segment = services.segment_create(
        merchant=merchant,
        name="Buyers",
        kind=SegmentKind.DYNAMIC,
        rules={"match": "all", "conditions": [{"field": "orders_count", "op": "gte", "value": 1}]},
    )
    for days in (2, 1):
        SegmentSizeSnapshot.objects.update_or_create(
            segment=segment,
            day=timezone.localdate() - dt.timedelta(days=days),
            defaults={"member_count": 3 - days},
        )
    UserFactory(username="owner", is_staff=True, is_superuser=True)
    StaffMembershipFactory(user=UserFactory(username="owner"), merchant=merchant)
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            violations.append(text)

    page.on("console", watch)
    page.set_viewport_size({"width": 1400, "height": 1000})

    # when an owner signs in and goes through the pages
    page.goto(f"{live_server.url}/customers/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_contain_text("Customers")
    # htmx and the page's scripts have set the page up (typing before then sends nothing)
    page.wait_for_load_state("load")

    # the filter panel filters as you type, sending only the fields with a value
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    with page.expect_request(re.compile(r"/customers/\?q=C1")):
        page.fill("#id_q", "C1")
    searched = [url for url in requests if "q=C1" in url]
    assert searched and not any(re.search(r"=(&|$)", url) for url in searched), searched
    settle(page)
    expect(page.locator("table").first).to_contain_text("C1")

    # the customer page loads its segments through htmx
    page.goto(f"{live_server.url}/customers/{merchant.customers.get(external_id='C1').pk}/")
    expect(page.locator("#customer-segments-card")).to_contain_text("Buyers")

    # the segment list's "select all"
    page.goto(f"{live_server.url}/segments/")
    page.locator("#select-all").check()
    expect(page.locator("#segments .row-select").first).to_be_checked()

    # the size chart is drawn
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    expect(page.locator("#size-chart[data-drawn='1']")).to_have_count(1)

    # the rule editor re-renders on a change, and the live count follows
    page.goto(f"{live_server.url}/segments/{segment.pk}/edit/")
    page.locator("#node-r-0-value").fill("2")
    page.locator("#node-r-0-value").blur()
    settle(page)
    expect(page.locator("#live-count-value")).to_have_text("0")
    page.locator("#node-r-0-value").fill("1")
    page.locator("#node-r-0-value").blur()
    settle(page)
    expect(page.locator("#live-count-value")).to_have_text("3")
    page.get_by_role("button", name="+ Condition").first.click()
    settle(page)
    expect(page.locator("#node-r-1-field")).to_have_count(1)

    # the import page and the admin
    page.goto(f"{live_server.url}/import/")
    page.goto(f"{live_server.url}/admin/segments/segment/")
    expect(page.locator("#result_list")).to_contain_text("Buyers")

    # then the browser reported no violation of the policy
    assert violations == []
