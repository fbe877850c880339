"""The segment list: filters, sorting, row and bulk actions with their confirmation and
permissions, the refusal to remove a segment in use, exports, and a bounded query count."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
from decimal import Decimal

import openpyxl
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.text import slugify
from django_tables2 import RequestConfig

from customers.models import Role
from segments.models import RefreshStatus, Segment, SegmentKind, SegmentMembership
from segments.tables import SegmentTable
from segments.views import SegmentListView
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    StaffMembershipFactory,
    UserFactory,
)
from tests.segments.conftest import toronto
from tests.segments.refresh_helpers import spend_rules

pytestmark = pytest.mark.django_db


def make(merchant, name, **fields):
    """A segment row with stored statistics, as a refresh leaves it (no refresh queued)."""
    fields.setdefault("rules", spend_rules(100) if fields.get("kind") != SegmentKind.MANUAL else {})
    return Segment.objects.create(merchant=merchant, name=name, slug=slugify(name), **fields)


@pytest.fixture
def catalogue(merchant):
    """Four segments with different statistics, kinds, states and creation days."""
    return {
        "alpha": make(
            merchant,
            "Alpha",
            member_count=10,
            avg_transaction_value=Decimal("20.00"),
            avg_transactions=Decimal("1.50"),
            avg_spending=Decimal("30.00"),
            description="weekly coffee buyers",
            created_at=toronto(2026, 1, 10, 12),
        ),
        "beta": make(
            merchant,
            "Beta",
            member_count=200,
            avg_transaction_value=Decimal("55.00"),
            avg_transactions=Decimal("4.00"),
            avg_spending=Decimal("220.00"),
            avg_clv=Decimal("900.00"),
            created_at=toronto(2026, 2, 1, 0, 30),  # 05:30 UTC on 1 February
        ),
        "gamma": make(
            merchant,
            "Gamma",
            member_count=50,
            kind=SegmentKind.MANUAL,
            is_active=False,
            created_at=toronto(2026, 1, 31, 23, 30),  # 1 February in UTC, 31 January here
        ),
        "delta": make(
            merchant,
            "Delta vip",
            member_count=0,
            avg_transaction_value=Decimal("5.00"),
            avg_transactions=Decimal("9.00"),
            description="VIP lapsed",
            created_at=toronto(2026, 3, 1, 9),
        ),
    }


def listed(client, **params) -> list[str]:
    response = client.get(reverse("segments:list"), params)
    assert response.status_code == 200
    return [row.record.name for row in response.context["table"].page.object_list]


def show_every_column(client):
    """As a user who ticked every column in the column chooser."""
    client.cookies["segments_columns"] = ".".join(SegmentListView.optional_columns)


def role_client(merchant, role) -> Client:
    user = UserFactory()
    StaffMembershipFactory(user=user, merchant=merchant, role=role)
    client = Client()
    assert client.login(username=user.username, password=DEMO_PASSWORD)
    return client


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "ta"}, ["Beta", "Delta vip"]),
        ({"q": "ALPHA"}, ["Alpha"]),
        ({"q": "coffee"}, ["Alpha"]),  # the search reads descriptions too
        ({"q": " vip "}, ["Delta vip"]),
        ({"active": "no"}, ["Gamma"]),
        ({"active": "yes"}, ["Alpha", "Beta", "Delta vip"]),
        ({"kind": "manual"}, ["Gamma"]),
        ({"members_min": "10", "members_max": "50"}, ["Alpha", "Gamma"]),
        ({"atv_min": "20", "atv_max": "55"}, ["Alpha", "Beta"]),
        ({"transactions_min": "4"}, ["Beta", "Delta vip"]),
        ({"clv_min": "100"}, ["Beta"]),
        ({"clv_max": "100"}, []),
        # Created on: merchant-local days (Toronto), whatever the UTC date.
        ({"created_from": "2026-02-01"}, ["Beta", "Delta vip"]),
        ({"created_to": "2026-01-31"}, ["Alpha", "Gamma"]),
        ({"created_from": "2026-01-31", "created_to": "2026-02-01"}, ["Beta", "Gamma"]),
        # Filters combine.
        ({"active": "yes", "members_min": "1", "q": "a"}, ["Alpha", "Beta"]),
    ],
)
def test_filters(staff_client, catalogue, params, expected):
    assert listed(staff_client, **params) == expected


def test_an_invalid_filter_value_shows_an_error_and_no_rows(staff_client, catalogue):
    response = staff_client.get(reverse("segments:list"), {"members_min": "lots"})

    assert response.status_code == 200
    assert "Some filters are not valid" in response.content.decode()
    assert listed(staff_client, members_min="lots") == []


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["Alpha", "Beta", "Delta vip", "Gamma"]),
        ("-name", ["Gamma", "Delta vip", "Beta", "Alpha"]),
        ("members", ["Delta vip", "Alpha", "Gamma", "Beta"]),
        ("-members", ["Beta", "Gamma", "Alpha", "Delta vip"]),
        # Empty statistics last in both directions.
        ("avg_transaction_value", ["Delta vip", "Alpha", "Beta", "Gamma"]),
        ("-avg_transaction_value", ["Beta", "Alpha", "Delta vip", "Gamma"]),
        ("avg_transactions", ["Alpha", "Beta", "Delta vip", "Gamma"]),
        # ...ties (two empty values) by creation order, newest first when descending.
        ("-avg_spending", ["Beta", "Alpha", "Delta vip", "Gamma"]),
        ("avg_clv", ["Beta", "Alpha", "Gamma", "Delta vip"]),
        ("created", ["Alpha", "Gamma", "Beta", "Delta vip"]),
        ("-created", ["Delta vip", "Beta", "Gamma", "Alpha"]),
        ("active", ["Gamma", "Alpha", "Beta", "Delta vip"]),
        ("kind", ["Alpha", "Beta", "Delta vip", "Gamma"]),
    ],
)
def test_sorting(staff_client, catalogue, sort, expected):
    show_every_column(staff_client)
    assert listed(staff_client, sort=sort) == expected


def test_list_queries_do_not_grow_with_segments(staff_client, merchant):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(reverse("segments:list"), {"per_page": 100}).status_code == 200
        return len(captured)

    for i in range(3):
        make(merchant, f"Few {i}")
    few = queries()
    for i in range(40):
        make(merchant, f"Many {i}")
    many = queries()

    # 10, and 2 for the ready-made menu (the merchant's segment slugs and names, its tiers)
    assert many == few <= 12


def test_the_list_exports_to_csv_and_xlsx_with_formulas_neutralised(
    staff_client, merchant, catalogue
):
    # given: a name a spreadsheet would run as a formula, and a count the page writes 1,234
    catalogue["alpha"].name = "=HYPERLINK(evil)"
    catalogue["alpha"].save()
    catalogue["beta"].member_count = 1234
    catalogue["beta"].last_refreshed_at = dt.datetime(2026, 7, 1, 16, 5, 30, 123456, tzinfo=dt.UTC)
    catalogue["beta"].save()
    page = staff_client.get(reverse("segments:list")).content.decode()
    assert '<td class="num">1,234</td>' in page

    # when
    csv_response = staff_client.get(reverse("segments:list"), {"_export": "csv", "sort": "name"})
    xlsx_response = staff_client.get(reverse("segments:list"), {"_export": "xlsx", "active": "no"})

    # then
    rows = list(csv.reader(io.StringIO(csv_response.content.decode())))
    assert rows[0][:3] == ["Name", "Members", f"Avg. transaction value ({merchant.currency})"]
    assert len(rows) == 1 + 4
    assert rows[1][0] == "'=HYPERLINK(evil)"
    assert rows[2][:3] == ["Beta", "1234", "55.00"]
    refreshed = rows[0].index("Last refreshed")
    assert rows[2][refreshed] == "2026-07-01 12:05:30"  # Toronto wall time, no microseconds
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx_response.content)).active
    assert [row[0] for row in sheet.iter_rows(values_only=True)] == ["Name", "Gamma"]


# -- row actions ----------------------------------------------------------------------------


def test_duplicate_copies_the_definition_and_a_manual_segments_members(staff_client, merchant):
    # given
    manual = make(merchant, "Hand", kind=SegmentKind.MANUAL)
    customer = CustomerFactory(merchant=merchant)
    SegmentMembership.objects.create(segment=manual, customer=customer)

    # when
    response = staff_client.post(
        reverse("segments:action", args=[manual.pk]), {"action": "duplicate"}
    )

    # then
    assert response.status_code == 302
    copy = Segment.objects.get(name="Hand (copy)")
    assert (copy.kind, copy.slug) == (SegmentKind.MANUAL, "hand-copy")
    assert list(copy.memberships.values_list("customer_id", flat=True)) == [customer.pk]
    assert copy.member_count == 1


def test_deactivate_then_activate_queues_a_refresh(
    staff_client, merchant, django_capture_on_commit_callbacks
):
    segment = make(merchant, "Spenders", refresh_status=RefreshStatus.OK)

    staff_client.post(reverse("segments:action", args=[segment.pk]), {"action": "deactivate"})
    segment.refresh_from_db()
    assert segment.is_active is False

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(reverse("segments:action", args=[segment.pk]), {"action": "activate"})
    segment.refresh_from_db()
    # Without a broker the queued refresh ran in-process on commit.
    assert segment.is_active is True
    assert segment.refresh_status == RefreshStatus.OK
    assert segment.last_refreshed_at is not None


def test_remove_asks_first_then_removes(staff_client, merchant):
    segment = make(merchant, "Doomed")

    confirm = staff_client.get(reverse("segments:remove", args=[segment.pk]))
    assert confirm.status_code == 200
    assert "Remove 1 segment?" in confirm.content.decode()
    assert Segment.objects.filter(pk=segment.pk).exists()

    staff_client.post(reverse("segments:remove", args=[segment.pk]))
    assert not Segment.objects.filter(pk=segment.pk).exists()


def test_removing_a_segment_another_uses_is_refused_with_their_names(staff_client, merchant):
    # given
    used = make(merchant, "Base")
    make(
        merchant,
        "Uses base",
        rules={"match": "all", "conditions": [{"field": "segment", "op": "in", "value": ["base"]}]},
    )

    # when
    confirm = staff_client.get(reverse("segments:remove", args=[used.pk]))
    response = staff_client.post(reverse("segments:remove", args=[used.pk]), follow=True)

    # then
    assert 'is used by "Uses base"' in confirm.content.decode()
    assert 'id="confirm-action"' not in confirm.content.decode()
    assert '"Base" is used by "Uses base"' in html.unescape(response.content.decode())
    assert Segment.objects.filter(pk=used.pk).exists()


@pytest.mark.parametrize("role", [Role.STAFF, Role.MANAGER])
def test_only_owners_may_remove(merchant, role):
    client = role_client(merchant, role)
    segment = make(merchant, "Kept")

    assert client.get(reverse("segments:remove", args=[segment.pk])).status_code == 403
    assert client.post(reverse("segments:remove", args=[segment.pk])).status_code == 403
    response = client.post(
        reverse("segments:bulk"), {"action": "remove", "ids": [segment.pk], "confirmed": "1"}
    )
    assert response.status_code == 403
    assert "Only owners may remove segments." in response.content.decode()
    assert Segment.objects.filter(pk=segment.pk).exists()
    # and the list offers them no remove action
    assert 'value="remove"' not in client.get(reverse("segments:list")).content.decode()


def test_an_owner_may_remove(merchant):
    client = role_client(merchant, Role.OWNER)
    segment = make(merchant, "Gone")

    client.post(reverse("segments:remove", args=[segment.pk]))

    assert not Segment.objects.filter(pk=segment.pk).exists()


# -- bulk actions ---------------------------------------------------------------------------


def test_bulk_action_confirms_before_acting(staff_client, catalogue):
    ids = [catalogue["alpha"].pk, catalogue["beta"].pk]

    confirm = staff_client.post(reverse("segments:bulk"), {"action": "deactivate", "ids": ids})
    assert confirm.status_code == 200
    assert "Deactivate 2 segments?" in confirm.content.decode()
    assert Segment.objects.filter(pk__in=ids, is_active=True).count() == 2

    staff_client.post(
        reverse("segments:bulk"), {"action": "deactivate", "ids": ids, "confirmed": "1"}
    )
    assert Segment.objects.filter(pk__in=ids, is_active=False).count() == 2
    assert Segment.objects.get(pk=catalogue["delta"].pk).is_active is True


def test_bulk_action_on_everything_the_filter_matches(staff_client, catalogue):
    # when: "apply to all matching" with the list's filters
    staff_client.post(
        reverse("segments:bulk"),
        {
            "action": "deactivate",
            "everything": "1",
            "confirmed": "1",
            "next_query": "q=ta&active=yes",
        },
    )

    # then: Beta and Delta vip only
    assert set(Segment.objects.filter(is_active=False).values_list("name", flat=True)) == {
        "Beta",
        "Delta vip",
        "Gamma",
    }


def test_bulk_remove_refuses_the_used_but_removes_a_used_one_with_its_user(staff_client, merchant):
    base = make(merchant, "Base")
    user = make(
        merchant,
        "User",
        rules={"match": "all", "conditions": [{"field": "segment", "op": "in", "value": ["base"]}]},
    )

    # when: Base alone is refused (nothing removed), Base with its user goes
    refused = staff_client.post(
        reverse("segments:bulk"),
        {"action": "remove", "ids": [base.pk], "confirmed": "1"},
        follow=True,
    )
    assert '"Base" is used by "User"' in html.unescape(refused.content.decode())
    assert Segment.objects.count() == 2
    staff_client.post(
        reverse("segments:bulk"),
        {"action": "remove", "ids": [base.pk, user.pk], "confirmed": "1"},
    )

    # then
    assert Segment.objects.count() == 0


def test_bulk_refresh_skips_manual_and_inactive(
    staff_client, catalogue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("segments:bulk"),
            {"action": "refresh", "everything": "1", "confirmed": "1"},
            follow=True,
        )

    assert "3 refreshes queued (1 manual or inactive, not refreshed)." in (
        response.content.decode()
    )
    refreshed = Segment.objects.exclude(last_refreshed_at=None).values_list("name", flat=True)
    assert sorted(refreshed) == ["Alpha", "Beta", "Delta vip"]


def test_bulk_ignores_another_merchants_ids(staff_client, merchant, other_merchant):
    theirs = make(other_merchant, "Theirs")

    response = staff_client.post(
        reverse("segments:bulk"),
        {"action": "deactivate", "ids": [theirs.pk], "confirmed": "1"},
        follow=True,
    )

    assert "Select at least one segment" in response.content.decode()
    theirs.refresh_from_db()
    assert theirs.is_active is True


@pytest.mark.parametrize("name", ["action", "remove", "history", "download"])
def test_another_merchants_segment_is_not_found(staff_client, other_merchant, name):
    theirs = make(other_merchant, "Theirs")
    args = [theirs.pk, "csv"] if name == "download" else [theirs.pk]
    url = reverse(f"segments:{name}", args=args)

    get = staff_client.get(url)
    post = staff_client.post(url, {"action": "deactivate"})

    assert get.status_code in (404, 405)
    assert post.status_code in (404, 405)
    assert 404 in (get.status_code, post.status_code)
    theirs.refresh_from_db()
    assert theirs.is_active is True


def test_restore_of_another_merchants_segment_is_not_found(staff_client, other_merchant):
    theirs = make(other_merchant, "Theirs")

    response = staff_client.post(reverse("segments:restore", args=[theirs.pk, 1]))

    assert response.status_code == 404


def test_created_on_is_shown_in_the_merchants_time_zone(staff_client, catalogue):
    show_every_column(staff_client)
    body = staff_client.get(reverse("segments:list"), {"kind": "manual"}).content.decode()

    assert "2026-01-31" in body
    assert catalogue["gamma"].created_at.astimezone(dt.UTC).date() == dt.date(2026, 2, 1)


def test_row_actions_carry_the_csrf_token(merchant, staff_user):
    # given: a browser-like client that enforces CSRF
    segment = make(merchant, "Guarded")
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=staff_user.username, password=DEMO_PASSWORD)
    body = client.get(reverse("segments:list")).content.decode()
    row_form = body.split(f'action="{reverse("segments:action", args=[segment.pk])}"')[1]
    token = row_form.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    assert row_form.index("csrfmiddlewaretoken") < row_form.index("</form>")

    # when: the row's Deactivate form is posted as the page rendered it
    response = client.post(
        reverse("segments:action", args=[segment.pk]),
        {"csrfmiddlewaretoken": token, "action": "deactivate", "next_query": "q=guard"},
    )

    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("segments:list") + "?q=guard"
    segment.refresh_from_db()
    assert segment.is_active is False


@pytest.mark.parametrize("params", [{}, {"sort": "-avg_spending"}, {"q": "nothing matches"}])
def test_the_lists_rows_are_what_django_tables2_would_write(merchant, catalogue, rf, params):
    # given: the list's table, and the same table rendered by django-tables2's own template
    request = rf.get(reverse("segments:list"), params)
    segments = Segment.objects.filter(merchant=merchant)
    if params.get("q"):
        segments = segments.filter(name__icontains=params["q"])

    def tbody(template_name=None):
        table = SegmentTable(segments, merchant=merchant, allowed={"edit", "remove"})
        if template_name:
            table.template_name = template_name
        RequestConfig(request, paginate={"per_page": 25}).configure(table)
        body = table.as_html(request).split("<tbody")[1].split("</tbody>")[0]
        # The CSRF token is masked afresh each time it is written.
        body = re.sub(r'(name="csrfmiddlewaretoken" value=")[^"]+', r"\1TOKEN", body)
        return " ".join(body.split())

    # when
    ours = tbody()
    theirs = tbody("customers/partials/table.html")

    # then: the same markup, cell for cell (whitespace between tags aside)
    assert ours.replace("> <", "><") == theirs.replace("> <", "><")
    assert ("No segments match." in ours) == bool(params.get("q"))


def test_the_removal_plan_is_computed_once_for_page_and_service(merchant, staff_client):
    # given a segment another uses, and one nobody uses, with members and history
    from segments import selectors, services

    base = make(merchant, "Base")
    user = make(
        merchant,
        "Uses base",
        rules={"match": "all", "conditions": [{"field": "segment", "op": "in", "value": ["base"]}]},
    )
    lonely = make(merchant, "Lonely", kind=SegmentKind.MANUAL)
    services.segment_members_add(segment=lonely, customers=[CustomerFactory(merchant=merchant).pk])

    plan = selectors.segment_removal_plan(segments=[base, lonely])
    together = selectors.segment_removal_plan(segments=[base, user])

    # then the plan names what blocks, and counts what goes
    assert not plan.allowed
    assert plan.messages() == ['"Base" is used by "Uses base"; remove it from their rules first.']
    assert together.allowed
    only_lonely = selectors.segment_removal_plan(segments=[lonely])
    assert (only_lonely.members, only_lonely.events) == (1, 1)
    confirm = staff_client.get(reverse("segments:remove", args=[lonely.pk]))
    assert "deletes 1 membership, 1 entry and exit record and 0 saved versions" in (
        confirm.content.decode()
    )
    with pytest.raises(services.SegmentInUseError):
        services.segments_remove(segments=[base, lonely])
    assert Segment.objects.filter(pk=lonely.pk).exists()


def test_the_filter_panel_keeps_the_usual_filters_open_and_folds_the_rest(staff_client, catalogue):
    def panel(**params):
        body = staff_client.get(reverse("segments:list"), params).content.decode()
        form = body.split('id="segment-filter"')[1].split("</form>")[0]
        return form.split("<details", 1)

    open_part, folded = panel()
    assert 'name="q"' in open_part and 'name="active"' in open_part
    assert 'name="members_min"' in folded and 'name="members_min"' not in open_part
    assert folded.startswith(' class="mb-3 more-filters">')  # closed

    _, folded = panel(members_min="1", clv_max="5")
    assert folded.startswith(' class="mb-3 more-filters" open>')  # a filter in it is in use
    assert "2 in use" in folded


def test_an_empty_list_says_what_to_do_without_bulk_actions_or_exports(staff_client, merchant):
    empty = staff_client.get(reverse("segments:list")).content.decode()

    assert "No segments yet" in empty and "Build your first segment" in empty
    assert 'id="bulk-form"' not in empty and "Export CSV" not in empty

    make(merchant, "Alpha")
    filtered = staff_client.get(reverse("segments:list"), {"q": "nothing like it"})
    body = filtered.content.decode()
    assert "No segments match these filters" in body and "Clear the filters" in body
    assert 'id="bulk-form"' not in body


def test_the_bulk_action_must_be_chosen(staff_client, catalogue):
    page = staff_client.get(reverse("segments:list")).content.decode()
    response = staff_client.post(
        reverse("segments:bulk"), {"action": "", "ids": [catalogue["alpha"].pk]}, follow=True
    )

    assert '<option value="" selected>Choose an action…</option>' in page
    assert "Choose an action first" in response.content.decode()
    assert Segment.objects.get(pk=catalogue["alpha"].pk).is_active  # nothing was done
