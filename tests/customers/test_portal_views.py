"""The customer list (search, filters, sorting, paging, export) and the customer detail page."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from customers.models import CustomerMetrics
from customers.views.portal import CustomerListView
from tests.factories import (
    DEMO_PASSWORD,
    BranchFactory,
    CustomerFactory,
    LineItemFactory,
    MerchantFactory,
    ProductFactory,
    RedemptionFactory,
    StaffMembershipFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

LIST_URL = reverse("customers:list")
UTC = dt.UTC
TORONTO = ZoneInfo("America/Toronto")


def set_metrics(customer, **values):
    # The list only reads the metrics row; writing it directly keeps each test's numbers plain.
    CustomerMetrics.objects.filter(customer=customer).update(**values)


def listed(response) -> list[str]:
    """External ids of the rows on the page, in order."""
    return [row.record.external_id for row in response.context["table"].paginated_rows]


def get_list(client, **params):
    response = client.get(LIST_URL, params)
    assert response.status_code == 200
    return response


def show_every_column(client):
    """As a user who ticked every column in the column chooser."""
    client.cookies["customers_columns"] = ".".join(CustomerListView.optional_columns)


def headers(response) -> list[str]:
    return [column.header for column in response.context["table"].columns]


# ----------------------------------------------------------------------------------------------
# A small merchant whose four customers differ in every column.
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def people(merchant):
    gold = TierFactory(merchant=merchant, name="Gold", rank=3)
    silver = TierFactory(merchant=merchant, name="Silver", rank=2)
    bronze = TierFactory(merchant=merchant, name="Bronze", rank=1)
    uptown = BranchFactory(merchant=merchant, code="UP", name="Uptown")
    midtown = BranchFactory(merchant=merchant, code="MID", name="Midtown")
    downtown = BranchFactory(merchant=merchant, code="DT", name="Downtown")
    vip = TagFactory(merchant=merchant, name="vip")
    alpha = TagFactory(merchant=merchant, name="alpha")
    zeta = TagFactory(merchant=merchant, name="zeta")
    beta = TagFactory(merchant=merchant, name="Beta")

    def at(y, m, d):
        return dt.datetime(y, m, d, 12, tzinfo=UTC)

    c1 = CustomerFactory(
        merchant=merchant,
        external_id="C-001",
        first_name="Ann",
        last_name="Brown",
        email="mid@example.com",
        phone="+1 416 555 0003",
        tier=gold,
        customer_type="wholesale",
        home_branch=uptown,
        joined_at=at(2024, 3, 1),
        email_opt_in=True,
        tags=[vip],
    )
    c2 = CustomerFactory(
        merchant=merchant,
        external_id="C-002",
        first_name="Zoe",
        last_name="Adams",
        email="zz@example.com",
        phone="+1 416 555 0001",
        tier=bronze,
        customer_type="retail",
        home_branch=midtown,
        joined_at=at(2024, 1, 1),
        sms_opt_in=True,
        push_opt_in=True,
        tags=[alpha, zeta],
    )
    c3 = CustomerFactory(
        merchant=merchant,
        external_id="C-003",
        first_name="Bob",
        last_name="Clark",
        email="aa@example.com",
        phone="+1 416 555 0002",
        tier=silver,
        customer_type="medical",
        home_branch=downtown,
        joined_at=at(2024, 2, 1),
        email_opt_in=True,
        sms_opt_in=True,
        tags=[beta],
    )
    CustomerFactory(
        merchant=merchant,
        external_id="C-004",
        first_name="Eve",
        last_name="Davis",
        email="bb@example.com",
        phone="+1 416 555 0004",
        customer_type="",
        joined_at=at(2024, 4, 1),
    )
    set_metrics(
        c1,
        orders_count=5,
        net_spend=Decimal("100.00"),
        avg_order_value=Decimal("20.00"),
        last_purchase_at=at(2025, 6, 1),
        lifecycle_stage="dormant",
        rfm_recency=5,
        rfm_frequency=5,
        rfm_monetary=3,
        rfm_group="champions",
    )
    set_metrics(
        c2,
        orders_count=1,
        net_spend=Decimal("300.00"),
        avg_order_value=Decimal("300.00"),
        last_purchase_at=at(2025, 1, 1),
        lifecycle_stage="new",
        rfm_recency=3,
        rfm_frequency=1,
        rfm_monetary=5,
        rfm_group="needs_attention",
    )
    set_metrics(
        c3,
        orders_count=3,
        net_spend=Decimal("200.00"),
        avg_order_value=Decimal("66.67"),
        last_purchase_at=at(2025, 3, 1),
        lifecycle_stage="regular",
        rfm_recency=4,
        rfm_frequency=3,
        rfm_monetary=4,
        rfm_group="loyal",
    )
    return {
        "tiers": {"gold": gold, "silver": silver, "bronze": bronze},
        "branches": {"uptown": uptown, "midtown": midtown, "downtown": downtown},
        "tags": {"vip": vip, "alpha": alpha, "zeta": zeta, "beta": beta},
    }


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------


def test_list_shows_every_column_formatted_for_the_merchant(staff_client, people):
    show_every_column(staff_client)
    response = get_list(staff_client, sort="external_id")
    html = response.content.decode()

    assert listed(response) == ["C-001", "C-002", "C-003", "C-004"]
    for header in (
        "External id",
        "Name",
        "Email",
        "Phone",
        "Tier",
        "Type",
        "Home branch",
        "Joined",
        "Orders",
        "Net spend (CAD)",
        "Avg order (CAD)",
        "Last purchase",
        "Stage",
        "RFM",
        "RFM group",
        "Opt-ins",
        "Tags",
    ):
        assert header in html
    # the scores as people read them: the stage and group names, the score as R-F-M
    assert "Needs attention" in html and "Dormant" in html
    assert "5-5-3" in html and "3-1-5" in html
    ann = response.context["table"].paginated_rows[0].record
    detail = reverse("customers:detail", args=[ann.pk])
    assert f'<a href="{detail}" hx-boost="false">Ann Brown</a>' in html
    assert "100.00 CAD" in html
    assert "66.67 CAD" in html
    # 2024-03-01 12:00 UTC is 07:00 in Toronto, same day; 2025-06-01 12:00 UTC is 08:00 EDT.
    assert "2024-03-01" in html
    assert "2025-06-01 08:00" in html


def test_joined_and_last_purchase_are_merchant_local(staff_client, merchant):
    # 03:30 UTC on 2 March is still 1 March (22:30) in Toronto.
    customer = CustomerFactory(
        merchant=merchant, joined_at=dt.datetime(2025, 3, 2, 3, 30, tzinfo=UTC)
    )
    set_metrics(customer, last_purchase_at=dt.datetime(2025, 3, 2, 3, 30, tzinfo=UTC))

    html = get_list(staff_client).content.decode()

    assert "2025-03-01" in html
    assert "2025-03-01 22:30" in html
    assert "2025-03-02" not in html


def test_htmx_request_gets_only_the_table_partial(staff_client, people):
    response = staff_client.get(LIST_URL, {"q": "ann"}, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert "Ann Brown" in html
    assert "Zoe Adams" not in html
    assert "HX-Request" in response["Vary"]


def test_htmx_history_restore_gets_the_whole_page(staff_client, people):
    response = staff_client.get(
        LIST_URL, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )

    assert "<html" in response.content.decode()


def test_filter_form_lists_only_the_merchants_choices(staff_client, people, other_merchant):
    TierFactory(merchant=other_merchant, name="Platinum")
    TagFactory(merchant=other_merchant, name="rival-tag")
    BranchFactory(merchant=other_merchant, name="Paris Opera")
    CustomerFactory(merchant=other_merchant, customer_type="export-only")

    form = get_list(staff_client).context["filter"].form

    assert {t.name for t in form.fields["tier"].queryset} == {"Gold", "Silver", "Bronze"}
    assert {t.name for t in form.fields["tags"].queryset} == {"vip", "alpha", "zeta", "Beta"}
    assert {b.name for b in form.fields["home_branch"].queryset} == {
        "Uptown",
        "Midtown",
        "Downtown",
    }
    assert [v for v, _ in form.fields["customer_type"].choices] == [
        "medical",
        "retail",
        "wholesale",
    ]


# ----------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ann", ["C-001"]),  # first name, any case
        ("ADAMS", ["C-002"]),  # last name
        ("Ann Brown", ["C-001"]),  # full name
        ("  bob   clark ", ["C-003"]),  # full name, spaces collapsed
        ("brown ann", []),  # not the reversed name
        ("zz@EXAMPLE", ["C-002"]),  # email
        ("555 0002", ["C-003"]),  # phone
        ("c-004", ["C-004"]),  # external id
        ("example.com", ["C-001", "C-002", "C-003", "C-004"]),
        ("nobody", []),
    ],
)
def test_search(staff_client, people, q, expected):
    assert listed(get_list(staff_client, q=q, sort="external_id")) == expected


# ----------------------------------------------------------------------------------------------
# Filters
# ----------------------------------------------------------------------------------------------


def test_filter_by_tier_is_multi(staff_client, people):
    tiers = people["tiers"]

    response = get_list(
        staff_client, tier=[tiers["gold"].pk, tiers["bronze"].pk], sort="external_id"
    )

    assert listed(response) == ["C-001", "C-002"]


def test_filter_by_customer_type_is_multi(staff_client, people):
    response = get_list(staff_client, customer_type=["retail", "medical"], sort="external_id")

    assert listed(response) == ["C-002", "C-003"]


def test_filter_by_tags_is_any_of_without_duplicates(staff_client, people):
    tags = people["tags"]

    response = get_list(
        staff_client,
        tags=[tags["alpha"].pk, tags["zeta"].pk, tags["vip"].pk],
        sort="external_id",
    )

    assert listed(response) == ["C-001", "C-002"]


def test_filter_by_home_branch_is_multi(staff_client, people):
    branches = people["branches"]

    response = get_list(
        staff_client,
        home_branch=[branches["uptown"].pk, branches["downtown"].pk],
        sort="external_id",
    )

    assert listed(response) == ["C-001", "C-003"]


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        ("email_opt_in", "yes", ["C-001", "C-003"]),
        ("email_opt_in", "no", ["C-002", "C-004"]),
        ("email_opt_in", "", ["C-001", "C-002", "C-003", "C-004"]),
        ("sms_opt_in", "yes", ["C-002", "C-003"]),
        ("sms_opt_in", "no", ["C-001", "C-004"]),
        ("push_opt_in", "yes", ["C-002"]),
        ("push_opt_in", "no", ["C-001", "C-003", "C-004"]),
    ],
)
def test_filter_by_opt_in(staff_client, people, param, value, expected):
    assert listed(get_list(staff_client, **{param: value}, sort="external_id")) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"spend_min": "200"}, ["C-002", "C-003"]),  # inclusive
        ({"spend_max": "100"}, ["C-001", "C-004"]),  # inclusive; no purchases is 0
        ({"spend_min": "100", "spend_max": "200"}, ["C-001", "C-003"]),
        ({"spend_min": "100.01", "spend_max": "199.99"}, []),
    ],
)
def test_filter_by_net_spend_range(staff_client, people, params, expected):
    assert listed(get_list(staff_client, **params, sort="external_id")) == expected


@pytest.fixture
def joiners(merchant):
    """Customers around the local midnights of 15 and 16 January 2025 in Toronto (UTC-5)."""

    def joined(ext, *utc):
        return CustomerFactory(
            merchant=merchant, external_id=ext, joined_at=dt.datetime(*utc, tzinfo=UTC)
        )

    joined("J-14-late", 2025, 1, 15, 4, 59, 59)  # 14 Jan 23:59:59 local
    joined("J-15-start", 2025, 1, 15, 5, 0, 0)  # 15 Jan 00:00:00 local
    joined("J-15-late", 2025, 1, 16, 4, 59, 59)  # 15 Jan 23:59:59 local
    joined("J-16-start", 2025, 1, 16, 5, 0, 0)  # 16 Jan 00:00:00 local


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"joined_from": "2025-01-15", "joined_to": "2025-01-15"}, ["J-15-late", "J-15-start"]),
        ({"joined_from": "2025-01-15"}, ["J-15-late", "J-15-start", "J-16-start"]),
        ({"joined_to": "2025-01-14"}, ["J-14-late"]),
        ({"joined_from": "2025-01-16", "joined_to": "2025-01-16"}, ["J-16-start"]),
    ],
)
def test_joined_range_is_whole_merchant_local_days(staff_client, joiners, params, expected):
    assert listed(get_list(staff_client, **params, sort="external_id")) == expected


def test_joined_range_covers_a_short_dst_day_whole(staff_client, merchant):
    # 9 March 2025 has 23 hours in Toronto; it ends at 04:00 UTC on 10 March (EDT, UTC-4).
    CustomerFactory(
        merchant=merchant,
        external_id="in",
        joined_at=dt.datetime(2025, 3, 10, 3, 59, 59, tzinfo=UTC),
    )
    CustomerFactory(
        merchant=merchant, external_id="out", joined_at=dt.datetime(2025, 3, 10, 4, tzinfo=UTC)
    )

    response = get_list(staff_client, joined_from="2025-03-09", joined_to="2025-03-09")

    assert listed(response) == ["in"]


def test_joined_range_uses_the_merchant_time_zone_not_the_servers(staff_client, merchant, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    CustomerFactory(
        merchant=merchant,
        external_id="x",
        joined_at=dt.datetime(2025, 1, 15, 5, tzinfo=UTC),  # 15 Jan 00:00 in Toronto
    )

    assert listed(get_list(staff_client, joined_from="2025-01-15")) == ["x"]
    assert listed(get_list(staff_client, joined_to="2025-01-14")) == []


@pytest.mark.parametrize("field", ["tags", "tier", "home_branch"])
def test_another_merchants_choice_is_a_form_error_not_a_leak(
    staff_client, people, other_merchant, field
):
    foreign = {
        "tags": TagFactory,
        "tier": TierFactory,
        "home_branch": BranchFactory,
    }[field](merchant=other_merchant)
    CustomerFactory(
        merchant=other_merchant,
        external_id="R-1",
        **({"tags": [foreign]} if field == "tags" else {field: foreign}),
    )

    response = get_list(staff_client, **{field: foreign.pk})

    assert listed(response) == []
    assert response.context["filter"].errors[field]
    assert "Some filters are not valid" in response.content.decode()
    assert "R-1" not in response.content.decode()


def test_an_invalid_value_is_shown_as_an_error_not_a_500(staff_client, people):
    response = get_list(staff_client, joined_from="not-a-date", spend_min="lots")

    assert listed(response) == []
    assert set(response.context["filter"].errors) == {"joined_from", "spend_min"}


# ----------------------------------------------------------------------------------------------
# Sorting
# ----------------------------------------------------------------------------------------------

# Ascending and descending order of the `people` rows per column. Empty values (no tier, no
# branch, no purchase, no tags) come last in both directions; a blank type sorts first.
SORT_CASES = {
    "external_id": (["C-001", "C-002", "C-003", "C-004"], None),
    "name": (["C-002", "C-001", "C-003", "C-004"], None),
    "email": (["C-003", "C-004", "C-001", "C-002"], None),
    "phone": (["C-002", "C-003", "C-001", "C-004"], None),
    "tier": (["C-002", "C-003", "C-001", "C-004"], ["C-001", "C-003", "C-002", "C-004"]),
    "customer_type": (["C-004", "C-003", "C-002", "C-001"], None),
    "home_branch": (["C-003", "C-002", "C-001", "C-004"], ["C-001", "C-002", "C-003", "C-004"]),
    "joined": (["C-002", "C-003", "C-001", "C-004"], None),
    "orders": (["C-004", "C-002", "C-003", "C-001"], None),
    "net_spend": (["C-004", "C-001", "C-003", "C-002"], None),
    "avg_order_value": (
        ["C-001", "C-003", "C-002", "C-004"],
        ["C-002", "C-003", "C-001", "C-004"],
    ),
    "last_purchase": (
        ["C-002", "C-003", "C-001", "C-004"],
        ["C-001", "C-003", "C-002", "C-004"],
    ),
    # (email, sms, push) opt-ins as booleans: none < sms+push < email < email+sms.
    "opt_ins": (["C-004", "C-002", "C-001", "C-003"], None),
    # By the stage's place in a customer's life: new < regular < dormant; none last.
    "lifecycle_stage": (
        ["C-002", "C-003", "C-001", "C-004"],
        ["C-001", "C-003", "C-002", "C-004"],
    ),
    # By R, then F, then M; no scores last.
    "rfm_score": (["C-002", "C-003", "C-001", "C-004"], ["C-001", "C-003", "C-002", "C-004"]),
    # By the group's name; the unscored are "prospects".
    "rfm_group": (["C-001", "C-003", "C-002", "C-004"], ["C-004", "C-002", "C-003", "C-001"]),
    # By the first tag name, case-insensitively: alpha < beta < vip; untagged last.
    "tags": (["C-002", "C-003", "C-001", "C-004"], ["C-001", "C-003", "C-002", "C-004"]),
}


def test_the_first_view_fits_a_laptop_and_says_how_it_is_sorted(staff_client, people):
    response = get_list(staff_client)
    html = response.content.decode()

    assert headers(response) == [
        "External id",
        "Name",
        "Email",
        "Tier",
        "Orders",
        "Net spend (CAD)",
        "Last purchase",
    ]
    assert listed(response) == ["C-001", "C-002", "C-003", "C-004"]
    assert html.count("\N{BLACK UP-POINTING TRIANGLE}") == 1
    assert "External id&nbsp;\N{BLACK UP-POINTING TRIANGLE}" in html


def test_chosen_columns_are_shown_and_remembered_but_not_carried_in_links(staff_client, people):
    chosen = get_list(staff_client, columns="set", show=["external_id", "phone", "tags"], q="Ann")
    later = get_list(staff_client)

    assert headers(chosen) == ["External id", "Name", "Phone", "Tags"]
    assert listed(chosen) == ["C-001"]  # the filters sent with the choice still apply
    assert chosen.cookies["customers_columns"].value == "external_id.phone.tags"
    assert "show=" not in chosen.content.decode()  # sort links carry no chooser parameters
    assert headers(later) == ["External id", "Name", "Phone", "Tags"]
    assert 'id="show-phone" checked' in later.content.decode()
    # ticking nothing leaves the name, which is always shown
    assert headers(get_list(staff_client, columns="set")) == ["Name"]


def test_exports_have_every_column_whatever_is_shown(staff_client, people):
    get_list(staff_client, columns="set", show=["email"])

    rows = export_csv(staff_client)

    assert rows[0] == EXPORT_HEADERS


def test_an_empty_list_says_what_to_do(staff_client, merchant):
    empty = get_list(staff_client).content.decode()
    CustomerFactory(merchant=merchant, first_name="Ann")
    unmatched = get_list(staff_client, q="nobody like this").content.decode()

    assert "No customers yet" in empty and "Export CSV" not in empty
    assert "No customers match" in unmatched and "Clear the search and filters" in unmatched


def test_every_column_is_sortable():
    from customers.tables import CustomerTable

    assert set(SORT_CASES) == set(CustomerTable.base_columns)


@pytest.mark.parametrize("column", sorted(SORT_CASES))
def test_sorting_ascending_and_descending(staff_client, people, column):
    show_every_column(staff_client)
    ascending, descending = SORT_CASES[column]
    if descending is None:
        descending = list(reversed(ascending))

    assert listed(get_list(staff_client, sort=column)) == ascending
    assert listed(get_list(staff_client, sort=f"-{column}")) == descending


def test_sort_links_keep_filters_and_go_back_to_page_one(staff_client, merchant):
    for i in range(30):
        CustomerFactory(merchant=merchant, external_id=f"P{i:02d}", customer_type="retail")

    html = get_list(staff_client, customer_type="retail", page=2).content.decode()

    assert 'href="?customer_type=retail&amp;sort=net_spend"' in html


# ----------------------------------------------------------------------------------------------
# Paging
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def thirty(merchant):
    for i in range(30):
        CustomerFactory(merchant=merchant, external_id=f"P{i:02d}")


def test_pages_of_25_by_default(staff_client, thirty):
    first = get_list(staff_client, sort="external_id")
    second = get_list(staff_client, sort="external_id", page=2)

    assert listed(first) == [f"P{i:02d}" for i in range(25)]
    assert listed(second) == [f"P{i:02d}" for i in range(25, 30)]
    assert "Showing 1\N{EN DASH}25 of 30 customers" in first.content.decode()


@pytest.mark.parametrize(("per_page", "expected"), [("10", 10), ("50", 30), ("1000", 25)])
def test_page_size_is_one_of_the_offered_sizes(staff_client, thirty, per_page, expected):
    assert len(listed(get_list(staff_client, per_page=per_page))) == expected


@pytest.mark.parametrize(("page", "expected_first"), [("999", "P25"), ("x", "P00")])
def test_bad_page_numbers_do_not_fail(staff_client, thirty, page, expected_first):
    assert listed(get_list(staff_client, sort="external_id", page=page))[0] == expected_first


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------

EXPORT_HEADERS = [
    "External id",
    "Name",
    "Email",
    "Phone",
    "Tier",
    "Type",
    "Home branch",
    "Joined",
    "Orders",
    "Net spend (CAD)",
    "Avg order (CAD)",
    "Last purchase",
    "Stage",
    "RFM",
    "RFM group",
    "Opt-ins",
    "Tags",
]


def export_csv(client, **params) -> list[list[str]]:
    response = client.get(LIST_URL, {**params, "_export": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


def test_csv_export_has_every_filtered_sorted_row_not_just_the_page(staff_client, thirty):
    rows = export_csv(staff_client, sort="-external_id", per_page=10, page=2)

    assert rows[0] == EXPORT_HEADERS
    assert [r[0] for r in rows[1:]] == [f"P{i:02d}" for i in reversed(range(30))]


def test_csv_export_values(staff_client, people):
    rows = export_csv(staff_client, q="Ann Brown")

    assert len(rows) == 2
    assert dict(zip(rows[0], rows[1], strict=True)) == {
        "External id": "C-001",
        "Name": "Ann Brown",  # text, not the link
        "Email": "mid@example.com",
        "Phone": "'+1 416 555 0003",  # neutralised: a leading + is a formula to a spreadsheet
        "Tier": "Gold",
        "Type": "wholesale",
        "Home branch": "Uptown",
        "Joined": "2024-03-01",
        "Orders": "5",
        "Net spend (CAD)": "100.00",
        "Avg order (CAD)": "20.00",
        "Last purchase": "2025-06-01 08:00:00",
        "Stage": "Dormant",
        "RFM": "5-5-3",
        "RFM group": "Champions",
        "Opt-ins": "Email",
        "Tags": "vip",
    }


def test_the_export_file_is_named_after_the_filters(staff_client, merchant, people):
    today = merchant.today().isoformat()
    tiers = people["tiers"]

    def filename(**params):
        response = staff_client.get(LIST_URL, {**params, "_export": "csv"})
        return response["Content-Disposition"].split("filename=")[1].strip('"')

    assert filename() == f"customers-acme-{today}.csv"
    assert filename(q="Zhang", tier=[tiers["gold"].pk], email_opt_in="yes") == (
        f"customers-search-zhang-tier-gold-email-opt-in-yes-acme-{today}.csv"
    )
    long = filename(q="x" * 200)
    assert long.startswith("customers-search-") and len(long) < 100


def test_export_applies_the_filters(staff_client, people):
    tiers = people["tiers"]

    rows = export_csv(staff_client, tier=[tiers["silver"].pk, tiers["gold"].pk], sort="tier")

    assert [r[0] for r in rows[1:]] == ["C-003", "C-001"]


@pytest.fixture
def hostile(merchant):
    tag = TagFactory(merchant=merchant, name="@SUM(A1)")
    CustomerFactory(
        merchant=merchant,
        external_id="-2+3",
        first_name='=HYPERLINK("http://evil","x")',
        last_name="",
        email="+cmd@example.com",
        phone="-1",
        customer_type="=1+1",
        tags=[tag],
    )


def test_csv_export_neutralises_formulas(staff_client, hostile):
    rows = export_csv(staff_client)
    row = dict(zip(rows[0], rows[1], strict=True))

    assert row["External id"] == "'-2+3"
    assert row["Name"] == '\'=HYPERLINK("http://evil","x")'
    assert row["Email"] == "'+cmd@example.com"
    assert row["Phone"] == "'-1"
    assert row["Type"] == "'=1+1"
    assert row["Tags"] == "'@SUM(A1)"
    assert row["Net spend (CAD)"] == "0.00"  # numbers are not text: untouched


def test_exports_keep_phone_numbers_in_e164_form(staff_client, merchant):
    CustomerFactory(merchant=merchant, external_id="SMS-1", phone="+16472000037")

    csv_row = dict(zip(*export_csv(staff_client), strict=True))
    response = staff_client.get(LIST_URL, {"_export": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    header, row = sheet.iter_rows(min_row=1, max_row=2)
    xlsx_row = {h.value: cell for h, cell in zip(header, row, strict=True)}

    assert csv_row["Phone"] == "+16472000037"
    assert (xlsx_row["Phone"].value, xlsx_row["Phone"].data_type) == ("+16472000037", "s")


def test_xlsx_export_rows_types_and_escaping(staff_client, people, hostile):
    response = staff_client.get(LIST_URL, {"_export": "xlsx", "sort": "external_id"})

    assert response.status_code == 200
    assert response["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == EXPORT_HEADERS
    assert [r[0] for r in rows[1:]] == ["'-2+3", "C-001", "C-002", "C-003", "C-004"]
    ann = dict(zip(rows[0], rows[2], strict=True))
    assert ann["Net spend (CAD)"] == 100
    assert ann["Orders"] == 5
    assert ann["Joined"] == dt.datetime(2024, 3, 1)
    assert ann["Last purchase"] == dt.datetime(2025, 6, 1, 8, 0)
    # No cell of the hostile row became a formula.
    for cell in next(sheet.iter_rows(min_row=2, max_row=2)):
        assert cell.data_type != "f"
    assert rows[1][1] == '\'=HYPERLINK("http://evil","x")'


@pytest.mark.parametrize("fmt", ["json", "yaml", "xls", "latex"])
def test_other_export_formats_are_not_offered(staff_client, people, fmt):
    response = staff_client.get(LIST_URL, {"_export": fmt})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_export_links_carry_the_current_filters(staff_client, people):
    html = get_list(staff_client, q="ann", page=1).content.decode()

    assert 'href="?q=ann&amp;_export=csv"' in html
    assert 'href="?q=ann&amp;_export=xlsx"' in html


# ----------------------------------------------------------------------------------------------
# Query count
# ----------------------------------------------------------------------------------------------


def _populate(merchant, n):
    tier = TierFactory(merchant=merchant)
    branch = BranchFactory(merchant=merchant)
    tags = [TagFactory(merchant=merchant) for _ in range(3)]
    for _ in range(n):
        CustomerFactory(merchant=merchant, tier=tier, home_branch=branch, tags=tags)


# session, user, membership (middleware), switcher memberships (context processor), customer
# types, whether there are tiers, tags and branches (the panel leaves out empty lists), tiers,
# tags, branches (filter form), count, page rows (joined), page tags (prefetch).
LIST_PAGE_QUERIES = 13


@pytest.mark.parametrize("rows", [2, 25])
def test_list_page_query_count_does_not_grow_with_rows(staff_client, merchant, rows):
    _populate(merchant, rows)

    with CaptureQueriesContext(connection) as queries:
        response = get_list(staff_client)

    assert len(listed(response)) == rows
    assert len(queries) == LIST_PAGE_QUERIES, "\n".join(q["sql"] for q in queries)


def test_export_query_count_does_not_grow_with_rows(staff_client, merchant):
    _populate(merchant, 3)
    with CaptureQueriesContext(connection) as few:
        staff_client.get(LIST_URL, {"_export": "csv"})
    _populate(merchant, 40)
    with CaptureQueriesContext(connection) as many:
        staff_client.get(LIST_URL, {"_export": "csv"})

    assert len(many) == len(few)


# ----------------------------------------------------------------------------------------------
# Detail
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def detailed(merchant):
    tier = TierFactory(merchant=merchant, name="Gold")
    branch = BranchFactory(merchant=merchant, code="DT", name="Downtown")
    customer = CustomerFactory(
        merchant=merchant,
        external_id="D-1",
        first_name="Dana",
        last_name="Lee",
        email="dana@example.com",
        phone="+1 647 555 0100",
        gender="female",
        birth_date=dt.date(1990, 5, 17),
        customer_type="medical",
        tier=tier,
        home_branch=branch,
        joined_at=dt.datetime(2024, 1, 1, 3, 0, tzinfo=UTC),  # 31 Dec 2023 22:00 local
        email_opt_in=True,
        points_balance=420,
        lifetime_points=1337,
        last_contacted_at=dt.datetime(2025, 7, 4, 16, 30, tzinfo=UTC),  # 12:30 EDT
        tags=[TagFactory(merchant=merchant, name="loyal"), TagFactory(merchant=merchant)],
    )
    old = TransactionFactory(
        customer=customer,
        external_id="T-OLD",
        occurred_at=dt.datetime(2025, 1, 10, 15, tzinfo=UTC),
        total=Decimal("40.00"),
        branch=branch,
    )
    product = ProductFactory(
        merchant=merchant, sku="SKU-PR", name="Blue Dream 1g", brand="Phat Panda"
    )
    LineItemFactory(transaction=old, product=product, quantity=2, amount=Decimal("25.00"))
    LineItemFactory(transaction=old, quantity=1, amount=Decimal("15.00"))
    TransactionFactory(
        customer=customer,
        external_id="T-NEW",
        occurred_at=dt.datetime(2025, 2, 10, 15, tzinfo=UTC),
        total=Decimal("60.00"),
    )
    TransactionFactory(
        customer=customer,
        refund=True,
        external_id="T-REF",
        occurred_at=dt.datetime(2025, 2, 11, 15, tzinfo=UTC),
        total=Decimal("10.00"),
    )
    RedemptionFactory(
        customer=customer,
        external_id="R-1",
        reward="Free pre-roll",
        points=250,
        redeemed_at=dt.datetime(2025, 2, 12, 15, tzinfo=UTC),
    )
    return customer


def test_detail_shows_profile_in_merchant_time(staff_client, detailed):
    response = staff_client.get(reverse("customers:detail", args=[detailed.pk]))
    html = response.content.decode()

    assert response.status_code == 200
    for text in (
        "Dana Lee",
        "D-1",
        "dana@example.com",
        "+1 647 555 0100",
        "Female",
        "1990-05-17",
        "medical",
        "Gold",
        "loyal",
        "Downtown (DT)",
        "2023-12-31 22:00",
        "Email yes · SMS no · Push no",
        "420",
        "1337",
        "2025-07-04 12:30",
        "America/Toronto",
    ):
        assert text in html, text


def test_detail_shows_metrics(staff_client, detailed):
    response = staff_client.get(reverse("customers:detail", args=[detailed.pk]))
    metrics = response.context["metrics"]
    html = response.content.decode()

    assert metrics.orders_count == 2
    assert metrics.net_spend == Decimal("90.00")
    assert "100.00 CAD" in html  # gross
    assert "1 (10.00 CAD)" in html  # refunds
    assert "90.00 CAD" in html  # net
    assert "50.00 CAD" in html  # average order
    assert "2025-01-10 10:00" in html  # first purchase, EST
    assert "2025-02-10 10:00" in html  # last purchase


def test_detail_lists_transactions_newest_first_with_line_items(staff_client, detailed):
    response = staff_client.get(reverse("customers:detail", args=[detailed.pk]))
    html = response.content.decode()

    assert [t.external_id for t in response.context["transactions"]] == [
        "T-REF",
        "T-NEW",
        "T-OLD",
    ]
    assert html.index("T-REF") < html.index("T-NEW") < html.index("T-OLD")
    assert "Blue Dream 1g" in html
    assert "SKU-PR" in html
    assert "Phat Panda" in html
    # two units at 12.50 each, 25.00 for the line: both said, and which is which
    assert "Line total" in html
    assert "\N{MULTIPLICATION SIGN} 12.50 CAD" in html
    assert "25.00 CAD" in html
    assert 'text-bg-danger">Refund' in html
    assert 'text-bg-success">Purchase' in html
    assert "Free pre-roll" in html
    assert "250" in html


def test_detail_paginates_transactions(staff_client, merchant):
    customer = CustomerFactory(merchant=merchant)
    for i in range(23):
        TransactionFactory(
            customer=customer,
            external_id=f"T{i:02d}",
            occurred_at=dt.datetime(2025, 1, 1, tzinfo=UTC) + dt.timedelta(days=i),
        )
    url = reverse("customers:detail", args=[customer.pk])

    first = staff_client.get(url).context["transactions"]
    second = staff_client.get(url, {"page": 2}).context["transactions"]

    assert [t.external_id for t in first][:2] == ["T22", "T21"]
    assert len(first) == 20
    assert [t.external_id for t in second] == ["T02", "T01", "T00"]


def test_detail_query_count_does_not_grow_with_transactions(staff_client, merchant):
    customer = CustomerFactory(merchant=merchant)
    url = reverse("customers:detail", args=[customer.pk])

    def add_transactions(n):
        for _ in range(n):
            txn = TransactionFactory(customer=customer, branch=BranchFactory(merchant=merchant))
            LineItemFactory(transaction=txn)
            LineItemFactory(transaction=txn)
            RedemptionFactory(customer=customer)

    add_transactions(1)
    with CaptureQueriesContext(connection) as few:
        staff_client.get(url)
    add_transactions(10)
    with CaptureQueriesContext(connection) as many:
        staff_client.get(url)

    assert len(many) == len(few)


def test_detail_of_another_merchants_customer_is_404(staff_client, other_merchant):
    foreign = CustomerFactory(merchant=other_merchant)

    response = staff_client.get(reverse("customers:detail", args=[foreign.pk]))

    assert response.status_code == 404


def test_money_uses_the_merchants_currency(client, db):
    merchant = MerchantFactory(slug="eu", currency="EUR", time_zone="Europe/Berlin")
    user = UserFactory(username="eu-staff")
    StaffMembershipFactory(user=user, merchant=merchant)
    customer = CustomerFactory(merchant=merchant)
    set_metrics(customer, net_spend=Decimal("1234.5"))
    assert client.login(username="eu-staff", password=DEMO_PASSWORD)

    html = client.get(LIST_URL).content.decode()

    assert "1,234.50 EUR" in html
    assert "Net spend (EUR)" in html


def test_a_filter_with_nothing_to_choose_is_left_out_of_the_panel(staff_client, merchant):
    CustomerFactory(merchant=merchant, customer_type="")  # no tiers, tags, branches or types

    bare = get_list(staff_client).content.decode()
    TierFactory(merchant=merchant, name="Gold")
    with_tier = get_list(staff_client).content.decode()

    assert 'name="q"' in bare and 'name="email_opt_in"' in bare  # the filters that always apply
    for name in ("tier", "customer_type", "tags", "home_branch"):
        assert f'name="{name}"' not in bare, name
    assert 'name="tier"' in with_tier
