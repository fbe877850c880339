"""The report pages through Django's test client: the branch limit of a store manager, another
merchant's ids, the exports against the tables on the page, bad parameters, a merchant
without data, and the period a page shows.

Time is pinned to noon on Tuesday 30 June 2026 in Toronto (the merchant's zone), so "the
last 30 days" are 1 to 30 June and the previous period 2 to 31 May. Every expected figure
is worked out in the comments from the rows the fixture writes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from analytics.periods import Preset, preset_period
from analytics.tables import Linked, ReportTable
from customers.models import Branch, Customer, CustomerMetrics, Merchant, Role
from segments.models import (
    MembershipEvent,
    MembershipReason,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentSizeSnapshot,
)
from segments.services.statistics import segment_stats_refresh
from tests.factories import (
    DEMO_PASSWORD,
    BranchFactory,
    CustomerFactory,
    MerchantFactory,
    RedemptionFactory,
    StaffMembershipFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

TORONTO = ZoneInfo("America/Toronto")
D = Decimal
NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=TORONTO)
JUNE = {"period": "custom", "from": "2026-06-01", "to": "2026-06-30"}
JUNE_LABEL = "1 Jun 2026 to 30 Jun 2026"
MAY_LABEL = "2 May 2026 to 31 May 2026"


def local(month: int, day: int, hour: int = 12) -> dt.datetime:
    """An aware instant from Toronto wall-clock fields, in 2026."""
    return dt.datetime(2026, month, day, hour, tzinfo=TORONTO)


# --- Reading the pages -----------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every element's attributes and text (tags stripped, entities decoded)."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.open: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.found: list[tuple[dict[str, str | None], str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append((tag, dict(attrs), []))

    def handle_endtag(self, tag: str) -> None:
        if tag not in {name for name, _, _ in self.open}:
            return
        while self.open:
            name, attrs, parts = self.open.pop()
            text = "".join(parts)
            if self.open:
                self.open[-1][2].append(text)
            self.found.append((attrs, " ".join(text.split())))
            if name == tag:
                return

    def handle_data(self, data: str) -> None:
        if self.open:
            self.open[-1][2].append(data)


def text_by_id(response, element_id: str) -> str | None:
    """The text of the element with this id, None when the page has none."""
    for attrs, text in _Elements(response.content.decode()).found:
        if attrs.get("id") == element_id:
            return text
    return None


def texts_by_class(response, name: str) -> list[str]:
    return [
        text
        for attrs, text in _Elements(response.content.decode()).found
        if name in (attrs.get("class") or "").split()
    ]


def table_named(response, name: str) -> ReportTable:
    return next(t for t in response.context["tables"] if t.name == name)


def raw(value: Any) -> Any:
    return value.value if isinstance(value, Linked) else value


def csv_cell(value: Any) -> str:
    """A raw table value as the CSV writes it: the number as it is, nothing for None."""
    value = raw(value)
    return "" if value is None else str(value)


def expected_csv(table: ReportTable) -> list[list[str]]:
    rows = [*table.rows, *([table.total] if table.total else [])]
    return [[c.title for c in table.columns], *[[csv_cell(v) for v in row] for row in rows]]


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


def xlsx_rows(response) -> list[tuple[Any, ...]]:
    workbook = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    return list(workbook.active.iter_rows(values_only=True))


def get(client: Client, name: str, params: dict[str, Any] | None = None, *args: Any):
    return client.get(reverse(name, args=args), params or {})


# --- The shop ----------------------------------------------------------------------------------


@pytest.fixture
def pinned_now(monkeypatch):
    """Noon on 30 June 2026 in Toronto: `merchant.today()` is 30 June."""
    monkeypatch.setattr(timezone, "now", lambda: NOW.astimezone(dt.UTC))
    return NOW


def client_for(merchant, role, *branches, username):
    user = UserFactory(username=username)
    membership = StaffMembershipFactory(user=user, merchant=merchant, role=role)
    membership.branches.set(branches)
    client = Client()
    assert client.login(username=username, password=DEMO_PASSWORD)
    return client


def make_segment(merchant: Merchant, name: str, *members: Customer) -> Segment:
    # Manual, so that no purchase starts a refresh that moves the members.
    made = Segment.objects.create(
        merchant=merchant,
        name=name,
        slug=name.lower().replace(" ", "-"),
        kind=SegmentKind.MANUAL,
        member_count=len(members),
    )
    SegmentMembership.objects.bulk_create(
        SegmentMembership(segment=made, customer=customer) for customer in members
    )
    return made


def buy(customer, when, total, branch=None, *, refund=False):
    return TransactionFactory(
        customer=customer, occurred_at=when, total=D(total), branch=branch, refund=refund
    )


def move(segment: Segment, customer: Customer, kind: str, when: dt.datetime) -> None:
    MembershipEvent.objects.create(
        segment=segment,
        customer=customer,
        kind=kind,
        reason=MembershipReason.MANUAL,
        occurred_at=when,
    )


@dataclass
class Shop:
    """Acme's two branches, four customers and two segments, and a rival's.

    | customer | stage | May (previous period) | June (the period)                            |
    |----------|-------|-----------------------|----------------------------------------------|
    | a        | loyal | 5th: Downtown 200     | 10th: Downtown 100; 12th: Uptown 50          |
    | b        | new   | 6th: Uptown 30        | 15th: Downtown 40; 16th: Downtown refund 10  |
    | c        | new   |                       | 20th: no branch 20 (her first order ever)    |
    | d        | none  |                       |                                              |

    June: revenue 210 - 10 = 200 from 4 orders (gross 210), active a b c, new c. Downtown
    only: 100 + 40 - 10 = 130 from 2 orders (gross 140), active a b, new nobody. May: 230
    from 2 orders, a and b new; Downtown only: 200 from 1 order, a new. a redeemed a reward
    on 12 June. The rival sells 700 at its own branch on 10 June.

    Segments: Buyers (a b c) and "A and B" (a b). Growth in June: Buyers had 1 member on
    31 May, 2 from 10 June, 3 from 20 June; A and B has no size before 10 June, then 2.
    Entries and exits: week of 8 June, Buyers b (10th), A and B a (9th), b (10th), d (11th);
    week of 15 June, Buyers c (20th), A and B d left (16th).
    """

    merchant: Merchant
    downtown: Branch
    uptown: Branch
    a: Customer
    b: Customer
    c: Customer
    d: Customer
    buyers: Segment
    pair: Segment
    rival_segment: Segment


@pytest.fixture
def shop(merchant, other_merchant, pinned_now):
    # Uptown first: the branch columns follow the names, not the ids.
    uptown = BranchFactory(merchant=merchant, name="Uptown")
    downtown = BranchFactory(merchant=merchant, name="Downtown")
    a, b, c, d = (CustomerFactory(merchant=merchant) for _ in range(4))
    buy(a, local(5, 5), "200.00", downtown)
    buy(a, local(6, 10), "100.00", downtown)
    buy(a, local(6, 12), "50.00", uptown)
    buy(b, local(5, 6), "30.00", uptown)
    buy(b, local(6, 15), "40.00", downtown)
    buy(b, local(6, 16), "10.00", downtown, refund=True)
    buy(c, local(6, 20), "20.00")
    RedemptionFactory(customer=a, redeemed_at=local(6, 12))
    # Each purchase moves the stage: the stages are set last.
    for customer, stage in ((a, "loyal"), (b, "new"), (c, "new"), (d, None)):
        CustomerMetrics.objects.filter(pk=customer.pk).update(lifecycle_stage=stage)
    buyers = make_segment(merchant, "Buyers", a, b, c)
    pair = make_segment(merchant, "A and B", a, b)
    SegmentSizeSnapshot.objects.bulk_create(
        SegmentSizeSnapshot(segment=segment, day=dt.date(2026, month, day), member_count=n)
        for segment, month, day, n in (
            (buyers, 5, 31, 1),
            (buyers, 6, 10, 2),
            (buyers, 6, 20, 3),
            (pair, 6, 10, 2),
        )
    )
    move(buyers, b, "entry", local(6, 10))
    move(buyers, c, "entry", local(6, 20))
    move(pair, a, "entry", local(6, 9))
    move(pair, b, "entry", local(6, 10))
    move(pair, d, "entry", local(6, 11))
    move(pair, d, "exit", local(6, 16))
    rival = CustomerFactory(merchant=other_merchant)
    buy(rival, local(6, 10), "700.00", BranchFactory(merchant=other_merchant, name="Rival shop"))
    rival_segment = make_segment(other_merchant, "Rival VIPs", rival)
    # The statistics a refresh stores (the dashboard's segments with the most revenue).
    for segment in (buyers, pair, rival_segment):
        segment_stats_refresh(segment=segment)
    return Shop(
        merchant=merchant,
        downtown=downtown,
        uptown=uptown,
        a=a,
        b=b,
        c=c,
        d=d,
        buyers=buyers,
        pair=pair,
        rival_segment=rival_segment,
    )


@pytest.fixture
def manager(shop) -> Client:
    """A store manager whose membership is limited to Downtown."""
    return client_for(shop.merchant, Role.MANAGER, shop.downtown, username="downtown-manager")


@pytest.fixture
def owner(shop) -> Client:
    """An owner without a branch limit."""
    return client_for(shop.merchant, Role.OWNER, username="owner")


def two_segments(shop: Shop) -> dict[str, Any]:
    return {"segments": [shop.buyers.pk, shop.pair.pk]}


# --- 1. The branch limit ---------------------------------------------------------------------


def assert_limited_to_downtown(response) -> None:
    notice = text_by_id(response, "branch-limit")
    assert notice is not None, "no #branch-limit on the page"
    assert "those of Downtown only" in notice
    assert "Uptown" not in notice


def test_the_dashboard_counts_only_the_managers_branch(shop, manager, owner):
    # when both open the dashboard (the last 30 days: June)
    limited, everything = manager.get(reverse("home")), owner.get(reverse("home"))

    # then the manager's revenue is Downtown's, 130 from 2 orders against 200 in May; the
    # owner's is 200 from 4 orders against 230 (Uptown's 50 and c's 20 without a branch)
    cards = {card["label"]: card for card in limited.context["cards"]}
    assert (cards["Revenue"]["value"], cards["Revenue"]["previous"]) == (D("130.00"), D("200.00"))
    assert cards["Revenue"]["change"] == D("-0.35")
    assert (cards["Orders"]["value"], cards["Active customers"]["value"]) == (2, 2)
    cards = {card["label"]: card for card in everything.context["cards"]}
    assert (cards["Revenue"]["value"], cards["Revenue"]["previous"]) == (D("200.00"), D("230.00"))
    assert (cards["Orders"]["value"], cards["Active customers"]["value"]) == (4, 3)
    # the top segments' revenue follows the limit, their member counts do not
    assert [[raw(v) for v in row] for row in table_named(limited, "top-segments").rows] == [
        ["Buyers", 3, D("130.00"), D("1"), 2],  # a 100, b 40 - 10
        ["A and B", 2, D("130.00"), D("1"), 2],
    ]
    assert [[raw(v) for v in row] for row in table_named(everything, "top-segments").rows] == [
        ["Buyers", 3, D("200.00"), D("1"), 3],
        ["A and B", 2, D("180.00"), D("0.9"), 2],  # a 150, b 30
    ]
    # the lifecycle distribution is the whole merchant's for both
    stages = [[raw(v) for v in row] for row in table_named(limited, "lifecycle").rows]
    assert stages == [[raw(v) for v in row] for row in table_named(everything, "lifecycle").rows]
    assert [row[1] for row in stages] == [2, 0, 0, 1, 0, 0, 1]
    # and the page says so, to the manager only
    assert_limited_to_downtown(limited)
    assert text_by_id(everything, "branch-limit") is None
    assert "130.00" in (text_by_id(limited, "key-cards") or "")


def test_the_segment_analysis_counts_only_the_managers_branch(shop, manager, owner):
    limited = get(manager, "analytics:segment_analysis", JUNE)
    everything = get(owner, "analytics:segment_analysis", JUNE)

    # Downtown: new b 40 - 10 = 30 (c's 20 had no branch), loyal a 100; May: a's 200
    mine, all_ = limited.context["analysis"], everything.context["analysis"]
    assert (mine.revenue, mine.orders, mine.prev_revenue) == (D("130.00"), 2, D("200.00"))
    assert (all_.revenue, all_.orders, all_.prev_revenue) == (D("200.00"), 4, D("230.00"))
    assert {row.key: row.revenue for row in mine.rows if row.revenue} == {
        "new": D("30.00"),
        "loyal": D("100.00"),
    }
    # the groups' sizes are the merchant's for both: 4 customers, 2 new, 1 loyal, 1 unplaced
    sizes = [(row.key, row.customers) for row in mine.rows]
    assert sizes == [(row.key, row.customers) for row in all_.rows]
    assert mine.customers == all_.customers == 4
    assert_limited_to_downtown(limited)
    assert text_by_id(everything, "branch-limit") is None
    assert "130.00" in (text_by_id(limited, "table-groups") or "")


def test_revenue_by_branch_shows_only_the_managers_branch(shop, manager, owner):
    params = {**JUNE, "interval": "week"}
    limited = get(manager, "analytics:branch_revenue", params)
    everything = get(owner, "analytics:branch_revenue", params)

    mine, all_ = limited.context["report"], everything.context["report"]
    assert mine.branches == [(shop.downtown.pk, "Downtown")]
    assert (mine.total.revenue, mine.total.orders, mine.total.customers) == (D("130.00"), 2, 2)
    assert all_.branches == [
        (shop.downtown.pk, "Downtown"),
        (shop.uptown.pk, "Uptown"),
        (None, "No branch"),
    ]
    assert (all_.total.revenue, all_.total.orders, all_.total.customers) == (D("200.00"), 4, 3)
    assert_limited_to_downtown(limited)
    assert text_by_id(everything, "branch-limit") is None
    assert "Uptown" not in (text_by_id(limited, "table-revenue") or "")


def test_key_figures_count_only_the_managers_branch(shop, manager, owner):
    params = {**JUNE, "segment": shop.pair.pk}
    limited = get(manager, "analytics:key_figures", params)
    everything = get(owner, "analytics:key_figures", params)

    mine, all_ = limited.context["figures"], everything.context["figures"]
    assert (mine.revenue, mine.orders, mine.active_customers) == (D("130.00"), 2, 2)
    assert (all_.revenue, all_.orders, all_.active_customers) == (D("200.00"), 4, 3)
    # redemptions have no branch: the limit leaves them
    assert mine.redemptions == all_.redemptions == 1
    # the segment's column (a and b): Downtown 100 + 40 - 10 = 130; everywhere 150 + 30
    revenue = table_named(limited, "figures").rows[0]
    assert (revenue[0], revenue[4]) == ("Revenue", D("130.00"))
    assert table_named(everything, "figures").rows[0][4] == D("180.00")
    assert_limited_to_downtown(limited)
    assert text_by_id(everything, "branch-limit") is None


def test_segment_growth_says_so_and_keeps_the_sizes(shop, manager, owner):
    params = {**JUNE, **two_segments(shop)}
    limited = get(manager, "analytics:growth", params)
    everything = get(owner, "analytics:growth", params)

    sizes = [series.sizes for series in limited.context["growth"].series]
    assert sizes == [series.sizes for series in everything.context["growth"].series]
    assert (sizes[0][0], sizes[0][-1], sizes[1][-1]) == (1, 3, 2)
    assert_limited_to_downtown(limited)
    assert text_by_id(everything, "branch-limit") is None


def test_overlap_says_so_and_keeps_the_sizes(shop, manager, owner):
    limited = get(manager, "analytics:overlap", two_segments(shop))
    everything = get(owner, "analytics:overlap", two_segments(shop))

    assert limited.context["overlap"].regions == everything.context["overlap"].regions
    assert [limited.context["overlap"].size(i) for i in (0, 1)] == [3, 2]
    assert_limited_to_downtown(limited)
    assert text_by_id(everything, "branch-limit") is None


def test_the_growth_changes_list_the_same_moves_for_a_limited_manager(shop, manager, owner):
    url = reverse("analytics:growth_changes", args=[shop.pair.pk])
    params = {"week": "2026-06-08", "kind": "entry"}

    limited, everything = manager.get(url, params), owner.get(url, params)

    # a (9th), b (10th), d (11th): memberships are merchant-wide
    assert [event.customer for event in limited.context["page"]] == [shop.d, shop.b, shop.a]
    assert [event.pk for event in limited.context["page"]] == [
        event.pk for event in everything.context["page"]
    ]
    assert text_by_id(everything, "branch-limit") is None


def test_the_growth_changes_page_says_the_managers_figures_are_limited(shop, manager):
    url = reverse("analytics:growth_changes", args=[shop.pair.pk])

    response = manager.get(url, {"week": "2026-06-08", "kind": "entry"})

    assert response.status_code == 200
    assert_limited_to_downtown(response)


# --- 2. Another merchant's ids ---------------------------------------------------------------


def _rival(shop: Shop) -> str:
    return str(shop.rival_segment.pk)


OTHER_MERCHANTS_IDS: list[tuple[str, Callable[[Shop], dict[str, Any]]]] = [
    ("analytics:segment_analysis", lambda s: {"group_by": "segment", "segments": _rival(s)}),
    (
        "analytics:segment_analysis",
        lambda s: {"group_by": "segment", "segments": [s.buyers.pk, _rival(s)]},
    ),
    (
        "analytics:segment_analysis",
        lambda s: {
            "group_by": "segment",
            "segments": _rival(s),
            "export": "csv",
            "table": "groups",
        },
    ),
    ("analytics:growth", lambda s: {"segments": _rival(s)}),
    ("analytics:overlap", lambda s: {"segments": [s.buyers.pk, _rival(s)]}),
    ("analytics:branch_revenue", lambda s: {"segment": _rival(s)}),
    ("analytics:key_figures", lambda s: {"segment": _rival(s)}),
]


@pytest.mark.parametrize(("name", "params"), OTHER_MERCHANTS_IDS)
def test_another_merchants_segment_is_not_found(shop, owner, name, params):
    assert get(owner, name, params(shop)).status_code == 404


def test_another_merchants_segment_has_no_growth_changes(shop, owner):
    response = get(
        owner,
        "analytics:growth_changes",
        {"week": "2026-11-30", "kind": "entry"},
        shop.rival_segment.pk,
    )

    assert response.status_code == 404


NOT_IDS = ["abc", "-1", "1.5", "0", "9223372036854775807"]
# TRICKY: "²" is a digit to str.isdigit() but not to int() (ValueError).
NOT_DECIMAL_DIGITS = ["²", "¹²"]
# Beyond a 64-bit integer (SQLite's driver could not even bind it).
TOO_LARGE = "99999999999999999999"
ID_PARAMETERS = [
    ("analytics:segment_analysis", "segments", {"group_by": "segment"}),
    ("analytics:growth", "segments", {}),
    ("analytics:overlap", "segments", {}),
    ("analytics:branch_revenue", "segment", {}),
    ("analytics:key_figures", "segment", {}),
]


@pytest.mark.parametrize(
    "value",
    [
        *NOT_IDS,
        *NOT_DECIMAL_DIGITS,
        TOO_LARGE,
    ],
)
@pytest.mark.parametrize(("name", "parameter", "extra"), ID_PARAMETERS)
def test_an_id_that_is_no_segment_is_not_found(shop, owner, name, parameter, extra, value):
    assert get(owner, name, {**extra, parameter: value}).status_code == 404


@pytest.mark.parametrize("name", ["analytics:branch_revenue", "analytics:key_figures"])
def test_a_blank_segment_means_all_customers(shop, owner, name):
    response = get(owner, name, {**JUNE, "segment": " "})

    assert response.status_code == 200
    assert response.context["segment"] is None


def test_blank_segments_are_left_out(shop, owner):
    # the picker's empty value: the growth report falls back to the largest segments
    response = get(owner, "analytics:growth", {**JUNE, "segments": [" ", ""]})

    assert response.status_code == 200
    assert response.context["chosen_ids"] == [shop.buyers.pk, shop.pair.pk]


@pytest.mark.parametrize("pk", ["abc", "-1", "0", "99999999999999999999"])
def test_growth_changes_of_no_segment_are_not_found(shop, owner, pk):
    url = f"/reports/growth/{pk}/changes/"

    assert owner.get(url, {"week": "2026-11-30", "kind": "entry"}).status_code == 404


@pytest.mark.parametrize(
    "params", [{"week": "someday", "kind": "entry"}, {"week": "2026-11-30", "kind": "both"}]
)
def test_growth_changes_with_a_bad_week_or_kind_are_not_found(shop, owner, params):
    assert get(owner, "analytics:growth_changes", params, shop.pair.pk).status_code == 404


# --- 3. Exports ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    name: str
    params: Callable[[Shop], dict[str, Any]]
    table: str
    report: str  # the file name's prefix

    def __str__(self) -> str:
        return f"{self.report}-{self.table}"


def june(**extra: Any) -> Callable[[Shop], dict[str, Any]]:
    return lambda s: {**JUNE, **extra}


EXPORTS = [
    Export("home", lambda s: {}, "lifecycle", "dashboard"),
    Export("home", lambda s: {}, "top-segments", "dashboard"),
    Export("analytics:segment_analysis", june(), "groups", "segment-analysis"),
    Export(
        "analytics:segment_analysis",
        lambda s: {**JUNE, "group_by": "segment", "segments": [s.pair.pk, s.buyers.pk]},
        "groups",
        "segment-analysis",
    ),
    Export("analytics:branch_revenue", june(interval="week"), "revenue", "revenue-by-branch"),
    Export("analytics:branch_revenue", june(interval="week"), "branches", "revenue-by-branch"),
    Export("analytics:branch_revenue", june(interval="week"), "details", "revenue-by-branch"),
    Export(
        "analytics:key_figures", lambda s: {**JUNE, "segment": s.pair.pk}, "figures", "key-figures"
    ),
    Export("analytics:growth", lambda s: {**JUNE, **two_segments(s)}, "summary", "segment-growth"),
    Export("analytics:growth", lambda s: {**JUNE, **two_segments(s)}, "weeks", "segment-growth"),
    Export("analytics:growth", lambda s: {**JUNE, **two_segments(s)}, "sizes", "segment-growth"),
    Export("analytics:overlap", two_segments, "matrix", "segment-overlap"),
]


@pytest.mark.parametrize("export", EXPORTS, ids=str)
def test_the_csv_export_holds_the_tables_rows(shop, owner, export):
    params = export.params(shop)
    page = get(owner, export.name, params)
    table = table_named(page, export.table)

    response = get(owner, export.name, {**params, "export": "csv", "table": export.table})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Disposition"] == (
        f'attachment; filename="{export.report}-{export.table}-acme-2026-06-01-2026-06-30.csv"'
    )
    assert table.rows, "a table with rows, or the comparison proves little"
    assert csv_rows(response) == expected_csv(table)
    # and the page shows that table (the overlap draws its own grid)
    shown = "overlap-matrix" if export.table == "matrix" else f"table-{export.table}"
    assert text_by_id(page, shown) is not None


def export_csv(client: Client, name: str, params: dict[str, Any], table: str) -> list[list[str]]:
    response = get(client, name, {**params, "export": "csv", "table": table})
    assert response.status_code == 200
    return csv_rows(response)


def test_the_dashboard_exports_hold_the_hand_computed_figures(shop, owner):
    # four customers: new b c, loyal a, d without an order
    assert export_csv(owner, "home", {}, "lifecycle") == [
        ["Stage", "Customers", "Share"],
        ["New", "2", "0.500000"],
        ["Repeat", "0", "0.000000"],
        ["Regular", "0", "0.000000"],
        ["Loyal", "1", "0.250000"],
        ["At risk", "0", "0.000000"],
        ["Dormant", "0", "0.000000"],
        ["No order yet", "1", "0.250000"],
    ]
    # Buyers: a 150, b 30, c 20 = 200 of June's 200; A and B 180; the rival's is not here
    assert export_csv(owner, "home", {}, "top-segments") == [
        ["Segment", "Members", "Revenue", "Share of revenue", "Members who ordered"],
        ["Buyers", "3", "200.00", "1.000000", "3"],
        ["A and B", "2", "180.00", "0.900000", "2"],
    ]


def test_the_segment_analysis_export_holds_the_hand_computed_figures(shop, owner):
    rows = export_csv(owner, "analytics:segment_analysis", JUNE, "groups")

    # new (b c): 30 + 20 = 50 of 200, orders 40 and 20, May b 30: (50 - 30) / 30;
    # loyal (a): 150 of 200, orders 100 and 50, May 200; d: nothing; total: 210 / 4 orders
    assert rows == [
        [
            "Group",
            "Customers",
            "Share of customers",
            "Revenue",
            "Share of revenue",
            "Orders",
            "Average order value",
            "Revenue, previous period",
            "Change in revenue",
        ],
        ["New", "2", "0.500000", "50.00", "0.250000", "2", "30.00", "30.00", "0.666667"],
        ["Repeat", "0", "0.000000", "0.00", "0.000000", "0", "", "0.00", ""],
        ["Regular", "0", "0.000000", "0.00", "0.000000", "0", "", "0.00", ""],
        ["Loyal", "1", "0.250000", "150.00", "0.750000", "2", "75.00", "200.00", "-0.250000"],
        ["At risk", "0", "0.000000", "0.00", "0.000000", "0", "", "0.00", ""],
        ["Dormant", "0", "0.000000", "0.00", "0.000000", "0", "", "0.00", ""],
        ["No order yet", "1", "0.250000", "0.00", "0.000000", "0", "", "0.00", ""],
        [
            "All customers",
            "4",
            "1.000000",
            "200.00",
            "1.000000",
            "4",
            "52.50",
            "230.00",
            "-0.130435",
        ],
    ]


def test_the_segment_analysis_export_by_chosen_segments(shop, owner):
    params = {**JUNE, "group_by": "segment", "segments": [shop.pair.pk, shop.buyers.pk]}

    rows = export_csv(owner, "analytics:segment_analysis", params, "groups")

    # in the order asked, no total row (a customer may be in both). A and B: a 150 + b 30 =
    # 180, orders 100 50 40: 190 / 3 = 63.33; May 200 + 30: (180 - 230) / 230 = -0.2173913
    assert rows[1:] == [
        ["A and B", "2", "0.500000", "180.00", "0.900000", "3", "63.33", "230.00", "-0.217391"],
        ["Buyers", "3", "0.750000", "200.00", "1.000000", "4", "52.50", "230.00", "-0.130435"],
    ]


def test_the_branch_exports_hold_the_hand_computed_figures(shop, owner, manager):
    params = {**JUNE, "interval": "week"}

    # weeks from Monday 1 June; a 100 Downtown and 50 Uptown in the week of 8 June, b 40 - 10
    # Downtown and c 20 without a branch in the week of 15 June
    assert export_csv(owner, "analytics:branch_revenue", params, "revenue") == [
        ["Week", "Downtown", "Uptown", "No branch", "All branches"],
        ["Week of 1 Jun 2026", "0.00", "0.00", "0.00", "0.00"],
        ["Week of 8 Jun 2026", "100.00", "50.00", "0.00", "150.00"],
        ["Week of 15 Jun 2026", "30.00", "0.00", "20.00", "50.00"],
        ["Week of 22 Jun 2026", "0.00", "0.00", "0.00", "0.00"],
        ["Week of 29 Jun 2026", "0.00", "0.00", "0.00", "0.00"],
        ["Total", "130.00", "50.00", "20.00", "200.00"],
    ]
    header = ["Branch", "Revenue", "Share of revenue", "Orders", "Customers", "Average order value"]
    assert export_csv(owner, "analytics:branch_revenue", params, "branches") == [
        header,
        ["Downtown", "130.00", "0.650000", "2", "2", "70.00"],
        ["Uptown", "50.00", "0.250000", "1", "1", "50.00"],
        ["No branch", "20.00", "0.100000", "1", "1", "20.00"],
        ["All branches", "200.00", "1.000000", "4", "3", "52.50"],
    ]
    details = export_csv(owner, "analytics:branch_revenue", params, "details")
    assert len(details) == 1 + 5 * 4  # five weeks, three branches and all of them
    assert details[9:13] == [
        ["Week of 15 Jun 2026", "Downtown", "30.00", "1", "1", "40.00"],
        ["Week of 15 Jun 2026", "Uptown", "0.00", "0", "0", ""],
        ["Week of 15 Jun 2026", "No branch", "20.00", "1", "1", "20.00"],
        ["Week of 15 Jun 2026", "All branches", "50.00", "2", "2", "30.00"],
    ]
    # the manager's export is Downtown's only
    assert export_csv(manager, "analytics:branch_revenue", params, "branches") == [
        header,
        ["Downtown", "130.00", "1.000000", "2", "2", "70.00"],
        ["All branches", "130.00", "1.000000", "2", "2", "70.00"],
    ]


def test_the_key_figures_export_holds_the_hand_computed_figures(shop, owner, manager):
    header = ["Figure", "All customers", "All customers, previous period", "Change"]

    # June against May: 200 / 230, 4 / 2 orders, 3 / 2 active, c new / a and b new,
    # 210 / 4 = 52.50 against 230 / 2 = 115.00: -62.50 / 115 = -0.5434782; one redemption
    assert export_csv(owner, "analytics:key_figures", JUNE, "figures") == [
        header,
        ["Revenue", "200.00", "230.00", "-0.130435"],
        ["Orders", "4", "2", "1.000000"],
        ["Active customers", "3", "2", "0.500000"],
        ["New customers", "1", "2", "-0.500000"],
        ["Average order value", "52.50", "115.00", "-0.543478"],
        ["Redemptions", "1", "0", ""],
    ]
    # Downtown: 130 / 200, 2 / 1 orders, a b / a active, nobody / a new, 70 / 200
    assert export_csv(manager, "analytics:key_figures", JUNE, "figures") == [
        header,
        ["Revenue", "130.00", "200.00", "-0.350000"],
        ["Orders", "2", "1", "1.000000"],
        ["Active customers", "2", "1", "1.000000"],
        ["New customers", "0", "1", "-1.000000"],
        ["Average order value", "70.00", "200.00", "-0.650000"],
        ["Redemptions", "1", "0", ""],
    ]


def test_the_growth_exports_hold_the_hand_computed_figures(shop, owner):
    params = {**JUNE, **two_segments(shop)}

    # Buyers: 1 on 31 May carried to 1 June, 3 at the end: +200%; A and B: no size on 1 June
    assert export_csv(owner, "analytics:growth", params, "summary") == [
        ["Segment", "Members at the start", "Members at the end", "Change", "Entries", "Exits"],
        ["Buyers", "1", "3", "2.000000", "2", "0"],
        ["A and B", "", "2", "", "3", "1"],
    ]
    assert export_csv(owner, "analytics:growth", params, "weeks") == [
        ["Week", "Segment", "Entries", "Exits", "Net"],
        ["Week of 8 Jun 2026", "Buyers", "1", "0", "1"],
        ["Week of 8 Jun 2026", "A and B", "3", "0", "3"],
        ["Week of 15 Jun 2026", "Buyers", "1", "0", "1"],
        ["Week of 15 Jun 2026", "A and B", "0", "1", "-1"],
    ]
    sizes = export_csv(owner, "analytics:growth", params, "sizes")
    assert sizes[0] == ["Day", "Buyers", "A and B"]
    assert len(sizes) == 1 + 30
    assert [sizes[day] for day in (1, 9, 10, 19, 20, 30)] == [
        ["2026-06-01", "1", ""],
        ["2026-06-09", "1", ""],
        ["2026-06-10", "2", "2"],
        ["2026-06-19", "2", "2"],
        ["2026-06-20", "3", "2"],
        ["2026-06-30", "3", "2"],
    ]


def test_the_overlap_export_holds_the_hand_computed_figures(shop, owner):
    # Buyers a b c, A and B a b: 2 shared, 2 of 3 and 2 of 2
    assert export_csv(owner, "analytics:overlap", two_segments(shop), "matrix") == [
        ["Segment", "Members", "Also in Buyers", "% in Buyers", "Also in A and B", "% in A and B"],
        ["Buyers", "3", "3", "1.000000", "2", "0.666667"],
        ["A and B", "2", "2", "1.000000", "2", "1.000000"],
    ]


def test_the_xlsx_export_has_the_csvs_header_and_rows(shop, owner):
    params = {**JUNE, "interval": "week"}
    csv_export = export_csv(owner, "analytics:branch_revenue", params, "branches")

    response = get(
        owner, "analytics:branch_revenue", {**params, "export": "xlsx", "table": "branches"}
    )

    assert response.status_code == 200
    assert response["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Disposition"] == (
        'attachment; filename="revenue-by-branch-branches-acme-2026-06-01-2026-06-30.xlsx"'
    )
    rows = xlsx_rows(response)
    assert [list(rows[0])] == csv_export[:1]
    # numbers are numbers in the sheet: compare them as numbers
    assert [[row[0], *[D(str(v)) for v in row[1:]]] for row in rows[1:]] == [
        [row[0], *[D(v) for v in row[1:]]] for row in csv_export[1:]
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"export": "csv", "table": "nothing"},
        {"export": "csv"},
        {"export": "pdf", "table": "groups"},
        {"export": "", "table": "groups"},
    ],
)
def test_an_unknown_table_or_format_is_not_found(shop, owner, params):
    assert get(owner, "analytics:segment_analysis", {**JUNE, **params}).status_code == 404


def test_a_table_of_another_report_is_not_found(shop, owner):
    # the dashboard's lifecycle table is not one of the key figures
    params = {**JUNE, "export": "csv", "table": "lifecycle"}

    assert get(owner, "analytics:key_figures", params).status_code == 404


@pytest.mark.parametrize("export", EXPORTS, ids=str)
def test_staff_may_view_a_report_but_not_export_it(shop, export):
    staff = client_for(shop.merchant, Role.STAFF, username="clerk")
    params = export.params(shop)

    assert get(staff, export.name, params).status_code == 200
    refused = get(staff, export.name, {**params, "export": "csv", "table": export.table})
    assert refused.status_code == 403
    assert "Content-Disposition" not in refused


def test_the_dashboards_export_is_named_after_the_last_30_days(shop, owner):
    # when a dashboard export is asked for with a period in the query (as a link from a
    # report page might carry), the figures are still the last 30 days'
    response = get(owner, "home", {"period": "7d", "export": "csv", "table": "top-segments"})

    assert csv_rows(response)[1] == ["Buyers", "3", "200.00", "1.000000", "3"]
    assert response["Content-Disposition"] == (
        'attachment; filename="dashboard-top-segments-acme-2026-06-01-2026-06-30.csv"'
    )


# --- 4. Bad parameters -----------------------------------------------------------------------


PERIOD_PAGES = [
    ("analytics:segment_analysis", Preset.LAST_30),
    ("analytics:branch_revenue", Preset.LAST_365),
    ("analytics:key_figures", Preset.LAST_30),
    ("analytics:growth", Preset.LAST_90),
]
BAD_PERIODS = [
    (
        {"period": "bogus"},
        "Unknown period 'bogus': use one of 7d, 30d, 90d, 365d, this_month, last_month, custom.",
    ),
    ({"from": "2026-13-40"}, "from: '2026-13-40' is not a date (use YYYY-MM-DD)."),
    (
        {"period": "custom", "from": "2026-13-40", "to": "2026-06-30"},
        "from: '2026-13-40' is not a date (use YYYY-MM-DD).",
    ),
    (
        {"period": "custom", "from": "2026-06-10", "to": "2026-06-01"},
        "The period ends (2026-06-01) before it starts (2026-06-10).",
    ),
    ({"period": "custom"}, "Custom dates need a start (from) and an end (to)."),
    (
        {"period": "custom", "from": "2010-01-01", "to": "2026-06-30"},
        "The period is 6,025 days long; a report covers at most 3,660 days.",
    ),
]


@pytest.mark.parametrize(("params", "message"), BAD_PERIODS)
@pytest.mark.parametrize(("name", "default"), PERIOD_PAGES)
def test_a_bad_period_is_shown_and_the_default_period_is_used(
    shop, owner, name, default, params, message
):
    response = get(owner, name, params)

    assert response.status_code == 200
    assert texts_by_class(response, "report-error") == [message]
    fallback = preset_period(default, dt.date(2026, 6, 30), TORONTO)
    assert response.context["period"] == fallback
    assert fallback.label() in (text_by_id(response, "period-label") or "")


@pytest.mark.parametrize("params", [params for params, _ in BAD_PERIODS])
@pytest.mark.parametrize("name", ["home", "analytics:overlap"])
def test_a_bad_period_does_not_break_the_pages_without_a_period(shop, owner, name, params):
    response = get(owner, name, {**params, **two_segments(shop)})

    assert response.status_code == 200
    assert response.context["tables"], "the page still shows its tables"


def test_a_bad_interval_is_shown(shop, owner):
    response = get(owner, "analytics:branch_revenue", {**JUNE, "interval": "fortnight"})

    assert response.status_code == 200
    assert texts_by_class(response, "report-error") == [
        "Unknown interval 'fortnight': use one of auto, day, week, month, year."
    ]
    assert JUNE_LABEL in (text_by_id(response, "period-label") or "")


def test_a_bad_grouping_is_shown(shop, owner):
    response = get(owner, "analytics:segment_analysis", {**JUNE, "group_by": "tier"})

    assert response.status_code == 200
    assert texts_by_class(response, "report-error") == [
        "Unknown grouping 'tier': use one of lifecycle_stage, rfm_group, smart_segment, segment."
    ]


@pytest.mark.parametrize("count", [1, 13])
def test_too_few_or_too_many_segments_to_overlap_is_shown(shop, owner, count):
    extra = [make_segment(shop.merchant, f"Extra {n}") for n in range(max(0, count - 2))]
    chosen = [shop.buyers, shop.pair, *extra][:count]

    response = get(owner, "analytics:overlap", {"segments": [s.pk for s in chosen]})

    assert response.status_code == 200
    assert texts_by_class(response, "report-error") == [
        f"Pick 2 to 12 segments to compare (picked {count})."
    ]


def test_segment_analysis_by_segment_without_segments_asks_for_them(shop, owner):
    response = get(owner, "analytics:segment_analysis", {**JUNE, "group_by": "segment"})

    assert response.status_code == 200
    assert text_by_id(response, "pick-segments") is not None
    export = {"group_by": "segment", "export": "csv", "table": "groups"}
    assert get(owner, "analytics:segment_analysis", export).status_code == 404


# --- 5. A merchant without data --------------------------------------------------------------


@pytest.fixture
def empty(pinned_now):
    merchant = MerchantFactory(slug="empty", name="Empty Shop", time_zone="America/Toronto")
    return client_for(merchant, Role.OWNER, username="empty-owner")


@pytest.mark.parametrize(
    "name",
    [
        "home",
        "analytics:segment_analysis",
        "analytics:branch_revenue",
        "analytics:key_figures",
        "analytics:growth",
        "analytics:overlap",
    ],
)
def test_every_report_answers_for_a_merchant_without_data(empty, name):
    response = empty.get(reverse(name))

    assert response.status_code == 200
    assert texts_by_class(response, "report-error") == []


def test_the_empty_dashboard_shows_zeros(empty):
    response = empty.get(reverse("home"))

    cards = {card["label"]: card["value"] for card in response.context["cards"]}
    assert cards == {
        "Revenue": D("0.00"),
        "Orders": 0,
        "Active customers": 0,
        "New customers": 0,
        "Average order value": None,
        "Redemptions": 0,
    }
    assert [[raw(v) for v in row][1:] for row in table_named(response, "lifecycle").rows] == [
        [0, None]
    ] * 7
    assert table_named(response, "top-segments").rows == []
    assert text_by_id(response, "no-top-segments") is not None


def test_the_empty_segment_analysis_shows_its_groups_with_zeros(empty):
    response = empty.get(reverse("analytics:segment_analysis"))

    rows = export_csv(empty, "analytics:segment_analysis", {}, "groups")
    assert [row[0] for row in rows[1:]] == [
        "New",
        "Repeat",
        "Regular",
        "Loyal",
        "At risk",
        "Dormant",
        "All customers",
    ]
    assert rows[1] == ["New", "0", "", "0.00", "", "0", "", "0.00", ""]
    assert rows[-1] == ["All customers", "0", "", "0.00", "", "0", "", "0.00", ""]
    assert text_by_id(response, "table-groups") is not None


def test_the_empty_overlap_asks_for_segments_and_growth_says_there_are_none(empty):
    overlap = empty.get(reverse("analytics:overlap"))
    growth = empty.get(reverse("analytics:growth"))

    assert "Pick 2 to 12 segments" in (text_by_id(overlap, "pick-segments") or "")
    assert "No segments yet" in (text_by_id(growth, "no-segments") or "")


def test_the_empty_branch_report_and_key_figures_show_zeros(empty):
    branches = empty.get(reverse("analytics:branch_revenue"))
    figures = empty.get(reverse("analytics:key_figures"))

    # no branch: one column, All branches, at zero; the last 365 days in months
    assert export_csv(empty, "analytics:branch_revenue", {}, "branches") == [
        ["Branch", "Revenue", "Share of revenue", "Orders", "Customers", "Average order value"],
        ["All branches", "0.00", "", "0", "0", ""],
    ]
    assert branches.context["report"].branches == []
    assert [(row[0], raw(row[1])) for row in table_named(figures, "figures").rows] == [
        ("Revenue", D("0.00")),
        ("Orders", 0),
        ("Active customers", 0),
        ("New customers", 0),
        ("Average order value", None),
        ("Redemptions", 0),
    ]


# --- 6. Periods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "analytics:segment_analysis",
        "analytics:branch_revenue",
        "analytics:key_figures",
        "analytics:growth",
    ],
)
def test_custom_dates_show_that_period_and_the_one_before(shop, owner, name):
    response = get(owner, name, {"period": "custom", "from": "2026-06-01", "to": "2026-06-10"})

    label = text_by_id(response, "period-label") or ""
    # ten days; the ten before end on 31 May
    assert label.startswith("1 Jun 2026 to 10 Jun 2026 (10 days, America/Toronto dates)")
    assert label.endswith("compared with 22 May 2026 to 31 May 2026.")
    period, previous = response.context["period"], response.context["previous"]
    assert (period.start, period.end) == (dt.date(2026, 6, 1), dt.date(2026, 6, 10))
    assert (previous.start, previous.end) == (dt.date(2026, 5, 22), dt.date(2026, 5, 31))
    assert texts_by_class(response, "report-error") == []


def test_custom_dates_select_the_figures_of_that_period(shop, owner):
    params = {"period": "custom", "from": "2026-06-01", "to": "2026-06-10"}

    # a's 100 Downtown on 10 June only; nothing from 22 to 31 May
    assert export_csv(owner, "analytics:key_figures", params, "figures")[1:3] == [
        ["Revenue", "100.00", "0.00", ""],
        ["Orders", "1", "0", ""],
    ]


def test_dates_without_a_preset_mean_custom_dates(shop, owner):
    response = get(owner, "analytics:key_figures", {"from": "2026-06-20", "to": "2026-06-20"})

    assert (text_by_id(response, "period-label") or "").startswith("20 Jun 2026 (1 day,")
    assert response.context["figures"].revenue == D("20.00")  # c's order


def test_a_preset_ends_on_the_merchants_today(shop, owner):
    response = get(owner, "analytics:key_figures", {"period": "7d"})

    assert "24 Jun 2026 to 30 Jun 2026 (7 days" in (text_by_id(response, "period-label") or "")


def test_the_dashboard_is_always_the_last_30_days(shop, owner):
    response = get(owner, "home", {"period": "custom", "from": "2026-01-01", "to": "2026-01-31"})

    assert response.status_code == 200
    period, previous = response.context["period"], response.context["previous"]
    assert (period.start, period.end) == (dt.date(2026, 6, 1), dt.date(2026, 6, 30))
    assert (previous.start, previous.end) == (dt.date(2026, 5, 2), dt.date(2026, 5, 31))
    text = text_by_id(response, "dashboard-period") or ""
    assert f"({JUNE_LABEL}) against the 30 before ({MAY_LABEL})" in text
    revenue = next(c for c in response.context["cards"] if c["label"] == "Revenue")
    assert revenue["value"] == D("200.00")  # June's, not January's
