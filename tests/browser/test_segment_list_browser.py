"""The segment list in a real browser: search as you type, filter, bulk-deactivate with
the confirmation step, and download a segment's members."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from segments.models import Segment, SegmentKind, SegmentMembership
from tests.browser.conftest import settle
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    UserFactory,
)

pytestmark = [
    pytest.mark.browser,
]


def names(page: Page) -> list[str]:
    return page.locator("#segments tbody tr td:nth-child(2)").all_inner_texts()


@pytest.mark.django_db(transaction=True)
def test_search_filter_bulk_deactivate_and_download(live_server, page):
    # given: four segments; the two "Spend" ones are big
    merchant = MerchantFactory(slug="acme", name="Acme Cannabis", time_zone="America/Toronto")
    for name, members in (("Spend 500", 120), ("Spend 1000", 80), ("Locals", 5), ("Staff", 3)):
        Segment.objects.create(
            merchant=merchant,
            name=name,
            slug=name.lower().replace(" ", "-"),
            kind=SegmentKind.MANUAL,
            member_count=members,
            avg_spending=Decimal(members),
        )
    locals_segment = Segment.objects.get(slug="locals")
    for i in range(5):
        customer = CustomerFactory(merchant=merchant, external_id=f"L-{i}", first_name=f"Loc{i}")
        SegmentMembership.objects.create(segment=locals_segment, customer=customer)
    user = UserFactory(username="alice")
    StaffMembershipFactory(user=user, merchant=merchant)

    # when: sign in on the list
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(f"{live_server.url}/segments/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#segment-count")).to_contain_text("of 4 segments")
    page.wait_for_load_state("load")  # htmx has set the filter form up

    # search as you type
    page.locator("#id_q").press_sequentially("spend", delay=40)
    settle(page)
    expect(page.locator("#segment-count")).to_contain_text("of 2 segments")
    assert sorted(names(page)) == ["Spend 1000", "Spend 500"]

    # a filter on top of the search (under "More filters", folded at first)
    expect(page.locator("#id_members_min")).to_be_hidden()
    page.get_by_text("More filters").click()
    page.fill("#id_members_min", "100")
    page.locator("#id_members_min").dispatch_event("change")
    settle(page)
    assert names(page) == ["Spend 500"]
    expect(page).to_have_url(re.compile(r"members_min=100"))

    # bulk: deactivate everything the search and filter match, with the confirmation
    page.fill("#id_members_min", "")
    page.locator("#id_members_min").dispatch_event("change")
    settle(page)
    page.select_option("#bulk-action", "deactivate")
    page.locator("#bulk-everything").click()
    expect(page.locator("#confirm-title")).to_have_text("Deactivate 2 segments?")
    page.locator("#confirm-action").click()
    expect(page.locator(".alert-success")).to_contain_text("2 segments deactivated.")
    inactive = Segment.objects.filter(is_active=False).values_list("name", flat=True)
    assert sorted(inactive) == ["Spend 1000", "Spend 500"]

    # download the members of one segment from its page
    page.goto(f"{live_server.url}/segments/{locals_segment.pk}/")
    page.locator("#download-menu").click()
    with page.expect_download() as download_info:
        page.locator("#download-csv").click()
    download = download_info.value
    rows = list(csv.reader(io.StringIO(download.path().read_text(encoding="utf-8"))))
    assert len(rows) == 1 + 5
    assert rows[0][0] == "External id"
    assert sorted(row[0] for row in rows[1:]) == [f"L-{i}" for i in range(5)]
