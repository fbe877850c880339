"""The reports' reads (`analytics.selectors`) against figures worked out by hand.

Every expected number below is computed in the comments from the rows the test writes;
nothing is read back from the code under test. Times are Toronto wall-clock times, the
merchant's zone: 23:30 local is 03:30 (EDT) or 04:30 (EST) UTC on the next day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.periods import Granularity, Period
from analytics.selectors import (
    Analysis,
    KeyFigures,
    ReportError,
    SalesCell,
    Scope,
    key_figures,
    overlap,
    revenue_by_branch,
    segment_analysis,
    segment_growth,
    top_segments,
    week_changes,
)
from customers.models import Branch, Customer, CustomerMetrics, Transaction
from customers.scores.definitions import RFM_GROUP_NAMES, STAGE_DISPLAY_ORDER
from customers.scores.smart import SMART_SEGMENT_NAMES
from segments.models import (
    MembershipEvent,
    MembershipEventKind,
    MembershipReason,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentSizeSnapshot,
)
from tests.factories import BranchFactory, CustomerFactory, RedemptionFactory, TransactionFactory

pytestmark = pytest.mark.django_db

TORONTO = ZoneInfo("America/Toronto")
UTC = dt.UTC
D = Decimal


def local(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    """An aware instant from Toronto wall-clock fields."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=TORONTO)


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def period(start: str, end: str) -> Period:
    return Period(start=day(start), end=day(end), tz=TORONTO)


def buy(customer, when, total, branch=None):
    return TransactionFactory(customer=customer, occurred_at=when, total=D(total), branch=branch)


def refund(customer, when, total, branch=None):
    return TransactionFactory(
        customer=customer, occurred_at=when, total=D(total), branch=branch, refund=True
    )


def segment(merchant, name, *members, is_active=True):
    # Manual segments: no purchase written afterwards can start a refresh that moves members.
    made = Segment.objects.create(
        merchant=merchant,
        name=name,
        slug=name.lower().replace(" ", "-"),
        kind=SegmentKind.MANUAL,
        is_active=is_active,
    )
    SegmentMembership.objects.bulk_create(
        SegmentMembership(segment=made, customer=customer) for customer in members
    )
    return made


def scores(customer, **columns):
    """Set a customer's score columns directly, after the purchases (each purchase moves the
    lifecycle stage, so this comes last)."""
    CustomerMetrics.objects.filter(pk=customer.pk).update(**columns)


def cell(revenue: str, gross: str, orders: int, customers: int) -> SalesCell:
    return SalesCell(revenue=D(revenue), gross=D(gross), orders=orders, customers=customers)


def no_figures() -> KeyFigures:
    return KeyFigures(
        revenue=D("0.00"),
        gross=D("0.00"),
        refunds=D("0.00"),
        orders=0,
        active_customers=0,
        new_customers=0,
        redemptions=0,
    )


def table(analysis: Analysis) -> dict[str, tuple[Any, ...]]:
    """key -> (customers, customers_share, revenue, revenue_share, orders, avg_order_value,
    prev_revenue, prev_orders, revenue_change)."""
    return {
        row.key: (
            row.customers,
            row.customers_share,
            row.revenue,
            row.revenue_share,
            row.orders,
            row.avg_order_value,
            row.prev_revenue,
            row.prev_orders,
            row.revenue_change,
        )
        for row in analysis.rows
    }


#: A group without members, of a merchant with revenue in both periods: shares of 0.
EMPTY_GROUP = (0, D("0"), D("0"), D("0"), 0, None, D("0"), 0, None)


def test_23_30_local_is_the_next_day_in_utc():
    # the premise of the boundary tests below
    assert local(2026, 6, 30, 23, 30) == dt.datetime(2026, 7, 1, 3, 30, tzinfo=UTC)
    assert local(2026, 11, 7, 23, 30) == dt.datetime(2026, 11, 8, 4, 30, tzinfo=UTC)


# --- June: key figures and segment analysis --------------------------------------------------


@dataclass
class June:
    """Five customers of `merchant` with sales in May and June 2026, and a rival's customer.

    | customer | May (the previous period: 2 to 31 May) | June (the period)                   |
    |----------|----------------------------------------|-------------------------------------|
    | ann      | 10th: 40                               | 3rd: 100; 20th: 50; 21st: refund 30 |
    | bob      |                                        | 5th: 80 (first order ever); 25th: 20 |
    | cat      | 2nd at 00:30: 10                       | 15th: 60                            |
    | dan      | 1st at 23:30: 999 (out); 20th: 200     | 10th: refund 25                     |
    | eve      | no orders                              | no orders                           |

    Redemptions: ann on 12 June and eve on 28 June (in); bob at 23:30 on 31 May and ann
    at 00:30 on 1 July (out). The rival: 5,000 and a redemption on 10 June.
    """

    ann: Customer
    bob: Customer
    cat: Customer
    dan: Customer
    eve: Customer


JUNE = period("2026-06-01", "2026-06-30")


@pytest.fixture
def june(merchant, other_merchant):
    ann, bob, cat, dan, eve = (CustomerFactory(merchant=merchant) for _ in range(5))
    buy(ann, local(2026, 5, 10), "40.00")
    buy(ann, local(2026, 6, 3), "100.00")
    buy(ann, local(2026, 6, 20), "50.00")
    refund(ann, local(2026, 6, 21), "30.00")
    buy(bob, local(2026, 6, 5), "80.00")
    buy(bob, local(2026, 6, 25), "20.00")
    buy(cat, local(2026, 5, 2, 0, 30), "10.00")
    buy(cat, local(2026, 6, 15), "60.00")
    buy(dan, local(2026, 5, 1, 23, 30), "999.00")
    buy(dan, local(2026, 5, 20), "200.00")
    refund(dan, local(2026, 6, 10), "25.00")
    RedemptionFactory(customer=ann, redeemed_at=local(2026, 6, 12))
    RedemptionFactory(customer=eve, redeemed_at=local(2026, 6, 28))
    RedemptionFactory(customer=bob, redeemed_at=local(2026, 5, 31, 23, 30))
    RedemptionFactory(customer=ann, redeemed_at=local(2026, 7, 1, 0, 30))
    rival = CustomerFactory(merchant=other_merchant)
    buy(rival, local(2026, 6, 10), "5000.00")
    RedemptionFactory(customer=rival, redeemed_at=local(2026, 6, 10))
    return June(ann=ann, bob=bob, cat=cat, dan=dan, eve=eve)


def test_key_figures_for_all_customers(merchant, june):
    figures = key_figures(Scope(merchant), JUNE)

    # orders 100 + 50 + 80 + 20 + 60 = 310; refunds 30 + 25 = 55; active: ann, bob, cat;
    # new: bob only (ann's first order was in May, cat's on 2 May)
    assert figures == KeyFigures(
        revenue=D("255.00"),
        gross=D("310.00"),
        refunds=D("55.00"),
        orders=5,
        active_customers=3,
        new_customers=1,
        redemptions=2,
    )
    assert figures.avg_order_value == D("62.00")  # 310 / 5


def test_key_figures_for_a_segments_members(merchant, june):
    vips = segment(merchant, "VIPs", june.ann, june.dan, june.eve)
    newcomers = segment(merchant, "Newcomers", june.bob, june.cat)

    # ann 150 - 30, dan - 25: 95; ann's and eve's redemptions
    figures = key_figures(Scope(merchant), JUNE, segment=vips)
    assert figures == KeyFigures(
        revenue=D("95.00"),
        gross=D("150.00"),
        refunds=D("55.00"),
        orders=2,
        active_customers=1,
        new_customers=0,
        redemptions=2,
    )
    assert figures.avg_order_value == D("75.00")

    # bob 80 + 20, cat 60; bob's redemption was at 23:30 on 31 May, outside
    figures = key_figures(Scope(merchant), JUNE, segment=newcomers)
    assert figures == KeyFigures(
        revenue=D("160.00"),
        gross=D("160.00"),
        refunds=D("0.00"),
        orders=3,
        active_customers=2,
        new_customers=1,
        redemptions=0,
    )
    assert figures.avg_order_value == D("53.33")  # 160 / 3 = 53.333...


def test_key_figures_of_an_empty_period_are_zeros(merchant, june):
    figures = key_figures(Scope(merchant), period("2026-01-01", "2026-01-31"))

    assert figures == no_figures()
    assert figures.avg_order_value is None


def test_key_figures_of_a_segment_without_members_are_zeros(merchant, june):
    nobody = segment(merchant, "Nobody")

    figures = key_figures(Scope(merchant), JUNE, segment=nobody)

    assert figures == no_figures()
    assert figures.avg_order_value is None


def test_the_last_local_evening_is_in_and_the_evening_before_the_start_is_out(merchant):
    # given an order at 23:30 on 31 May (03:30 UTC on 1 June) and one at 23:30 on 30 June
    # (03:30 UTC on 1 July), each next to one just inside the other boundary
    early, late, prompt = (CustomerFactory(merchant=merchant) for _ in range(3))
    buy(early, local(2026, 5, 31, 23, 30), "70.00")  # out: the day before the start
    buy(early, local(2026, 6, 1, 0, 0), "5.00")  # in: the first instant
    buy(late, local(2026, 6, 30, 23, 30), "30.00")  # in: the last evening
    buy(late, local(2026, 7, 1, 0, 0), "100.00")  # out: the instant after
    buy(prompt, local(2026, 6, 1, 0, 0), "1.00")  # a first order ever at the first instant

    figures = key_figures(Scope(merchant), JUNE)

    # 5 + 30 + 1; all three active; late's and prompt's first orders ever are in June
    assert (figures.revenue, figures.orders, figures.active_customers) == (D("36.00"), 3, 3)
    assert figures.new_customers == 2
    by_day = revenue_by_branch(Scope(merchant), JUNE, granularity=Granularity.DAY)
    assert by_day.bucket_totals == {
        day("2026-06-01"): cell("6.00", "6.00", 2, 2),
        day("2026-06-30"): cell("30.00", "30.00", 1, 1),
    }
    # the evening of 31 May is the last of the previous period (2 to 31 May)
    analysis = segment_analysis(Scope(merchant), JUNE, group_by="lifecycle_stage")
    assert (analysis.revenue, analysis.prev_revenue) == (D("36.00"), D("70.00"))


def test_a_dst_change_inside_the_period_moves_nothing(merchant):
    # given two weeks, Sunday 25 October to Saturday 7 November 2026; daylight saving time
    # ends on Sunday 1 November (EDT, UTC-4, before; EST, UTC-5, after)
    fortnight = period("2026-10-25", "2026-11-07")
    shop = BranchFactory(merchant=merchant, name="Shop")
    customer = CustomerFactory(merchant=merchant)
    buy(customer, local(2026, 10, 24, 23, 30), "1000.00", shop)  # out
    buy(customer, local(2026, 10, 25, 0, 30), "10.00", shop)  # first day
    buy(customer, local(2026, 11, 1, 23, 30), "40.00", shop)  # 04:30 UTC on 2 Nov
    buy(customer, local(2026, 11, 2, 0, 30), "5.00", shop)
    buy(customer, local(2026, 11, 7, 23, 30), "20.00", shop)  # last day
    buy(customer, local(2026, 11, 8, 0, 30), "2000.00", shop)  # out

    figures = key_figures(Scope(merchant), fortnight)
    by_day = revenue_by_branch(Scope(merchant), fortnight, granularity=Granularity.DAY)
    by_week = revenue_by_branch(Scope(merchant), fortnight, granularity=Granularity.WEEK)

    assert (figures.revenue, figures.orders) == (D("75.00"), 4)  # 10 + 40 + 5 + 20
    assert by_day.buckets == [day("2026-10-25") + dt.timedelta(days=n) for n in range(14)]
    assert by_day.cells == {
        (day("2026-10-25"), shop.pk): cell("10.00", "10.00", 1, 1),
        (day("2026-11-01"), shop.pk): cell("40.00", "40.00", 1, 1),
        (day("2026-11-02"), shop.pk): cell("5.00", "5.00", 1, 1),
        (day("2026-11-07"), shop.pk): cell("20.00", "20.00", 1, 1),
    }
    assert by_day.total == cell("75.00", "75.00", 4, 1)
    # weeks from Monday: 25 Oct and 1 Nov are Sundays, the last days of their weeks
    assert by_week.buckets == [day("2026-10-19"), day("2026-10-26"), day("2026-11-02")]
    assert by_week.bucket_totals == {
        day("2026-10-19"): cell("10.00", "10.00", 1, 1),
        day("2026-10-26"): cell("40.00", "40.00", 1, 1),
        day("2026-11-02"): cell("25.00", "25.00", 2, 1),
    }


@pytest.fixture
def staged(june):
    """june with the score columns set: ann loyal / champions / active loyal; bob and cat
    new / new / big spender; dan at risk / at risk / lost; eve without a stage (no order),
    prospects, waiting for the first order."""
    scores(june.ann, lifecycle_stage="loyal", rfm_group="champions", smart_segment="active_loyal")
    for customer in (june.bob, june.cat):
        scores(customer, lifecycle_stage="new", rfm_group="new", smart_segment="big_spender")
    scores(june.dan, lifecycle_stage="at_risk", rfm_group="at_risk", smart_segment="lost")
    scores(
        june.eve,
        lifecycle_stage=None,
        rfm_group="prospects",
        smart_segment="waiting_first_order",
    )
    return june


# June's revenue per customer: ann 120 (gross 150, 2 orders), bob 100 (2 orders), cat 60
# (1 order), dan -25 (0 orders), eve 0: 255 in all, 5 orders. The previous period (2 to 31
# May): ann 40, cat 10 (00:30 on 2 May), dan 200 (not 999, at 23:30 on 1 May): 250.
# Five customers: each is a share of 0.2.
NEW_ROW = (2, D("0.4"), D("160.00"), D("0.627451"), 3, D("53.33"), D("10.00"), 1, D("15"))
LOYAL_ROW = (1, D("0.2"), D("120.00"), D("0.470588"), 2, D("75.00"), D("40.00"), 1, D("2"))
AT_RISK_ROW = (1, D("0.2"), D("-25.00"), D("-0.098039"), 0, None, D("200.00"), 1, D("-1.125"))
EVE_ROW = (1, D("0.2"), D("0"), D("0"), 0, None, D("0"), 0, None)


def test_segment_analysis_by_lifecycle_stage(merchant, staged):
    analysis = segment_analysis(Scope(merchant), JUNE, group_by="lifecycle_stage")

    # new: bob and cat, 160 of 255 (0.6274509...), 160 / 3 orders, 10 before: +1,500%;
    # loyal: ann, 120 / 255 = 0.4705882..., 40 before: +200%; at risk: dan, -25 / 255 =
    # -0.0980392..., 200 before: (-25 - 200) / 200 = -1.125; eve: no stage, the last row
    assert [row.key for row in analysis.rows] == [*STAGE_DISPLAY_ORDER, ""]
    assert table(analysis) == {
        "new": NEW_ROW,
        "repeat": EMPTY_GROUP,
        "regular": EMPTY_GROUP,
        "loyal": LOYAL_ROW,
        "at_risk": AT_RISK_ROW,
        "dormant": EMPTY_GROUP,
        "": EVE_ROW,
    }
    assert analysis.rows[-1].label == "No order yet"
    assert (analysis.customers, analysis.revenue, analysis.orders) == (5, D("255.00"), 5)
    assert analysis.prev_revenue == D("250.00")
    assert analysis.revenue_change == D("0.02")  # 5 / 250
    assert (analysis.previous.start, analysis.previous.end) == (
        day("2026-05-02"),
        day("2026-05-31"),
    )


def test_segment_analysis_has_no_unplaced_row_when_every_customer_has_a_stage(merchant, staged):
    scores(staged.eve, lifecycle_stage="dormant")

    analysis = segment_analysis(Scope(merchant), JUNE, group_by="lifecycle_stage")

    assert [row.key for row in analysis.rows] == list(STAGE_DISPLAY_ORDER)
    assert table(analysis)["dormant"] == EVE_ROW


def test_segment_analysis_by_rfm_group(merchant, staged):
    analysis = segment_analysis(Scope(merchant), JUNE, group_by="rfm_group")

    # every customer has a group (prospects by default): no unplaced row
    assert [row.key for row in analysis.rows] == list(RFM_GROUP_NAMES)
    rows = table(analysis)
    assert rows["champions"] == LOYAL_ROW
    assert rows["new"] == NEW_ROW
    assert rows["at_risk"] == AT_RISK_ROW
    assert rows["prospects"] == EVE_ROW
    others = set(RFM_GROUP_NAMES) - {"champions", "new", "at_risk", "prospects"}
    assert {rows[key] for key in others} == {EMPTY_GROUP}


def test_segment_analysis_by_smart_segment(merchant, staged):
    analysis = segment_analysis(Scope(merchant), JUNE, group_by="smart_segment")

    assert [row.key for row in analysis.rows] == list(SMART_SEGMENT_NAMES)
    rows = table(analysis)
    assert rows["active_loyal"] == LOYAL_ROW
    assert rows["big_spender"] == NEW_ROW
    assert rows["lost"] == AT_RISK_ROW
    assert rows["waiting_first_order"] == EVE_ROW
    others = set(SMART_SEGMENT_NAMES) - {
        "active_loyal",
        "big_spender",
        "lost",
        "waiting_first_order",
    }
    assert {rows[key] for key in others} == {EMPTY_GROUP}


def test_segment_analysis_by_chosen_segments_counts_a_shared_customer_in_both(merchant, june):
    first = segment(merchant, "First", june.ann, june.bob)
    second = segment(merchant, "Second", june.bob, june.cat, june.eve)

    analysis = segment_analysis(Scope(merchant), JUNE, group_by="segment", segments=[second, first])

    # in the order asked; bob in both. First: ann 120 + bob 100 = 220 of 255 (0.8627450...),
    # gross 150 + 100 over 4 orders, 40 before: (220 - 40) / 40 = 4.5. Second: bob, cat and
    # eve: the figures of the "new" stage, with three customers
    assert [(row.key, row.label, row.segment) for row in analysis.rows] == [
        (str(second.pk), "Second", second),
        (str(first.pk), "First", first),
    ]
    shared = (2, D("0.4"), D("220.00"), D("0.862745"), 4, D("62.50"), D("40.00"), 1, D("4.5"))
    assert table(analysis) == {str(first.pk): shared, str(second.pk): (3, D("0.6"), *NEW_ROW[2:])}
    assert analysis.segments == [second, first]
    # the whole merchant's figures, not the sum of the rows
    assert (analysis.customers, analysis.revenue, analysis.orders) == (5, D("255.00"), 5)


def test_segment_analysis_without_comparison_has_no_previous_figures(merchant, staged):
    analysis = segment_analysis(Scope(merchant), JUNE, group_by="lifecycle_stage", compare=False)

    assert table(analysis)["loyal"] == (*LOYAL_ROW[:6], D("0"), 0, None)
    assert (analysis.revenue, analysis.prev_revenue) == (D("255.00"), D("0"))


def test_segment_analysis_refuses_an_unknown_grouping(merchant):
    with pytest.raises(ReportError) as error:
        segment_analysis(Scope(merchant), JUNE, group_by="tier")
    assert str(error.value) == (
        "Unknown grouping 'tier': use one of lifecycle_stage, rfm_group, smart_segment, segment."
    )


def test_segment_analysis_by_segment_needs_a_segment(merchant):
    with pytest.raises(ReportError) as error:
        segment_analysis(Scope(merchant), JUNE, group_by="segment", segments=[])
    assert str(error.value) == "Pick at least one segment to group by."


# --- Stores: revenue by branch and the branch limit ----------------------------------------


@dataclass
class Stores:
    """Two branches and four customers, Wednesday 3 to Sunday 21 June 2026 (the weeks of
    Monday 1, 8 and 15 June; the previous period is 15 May to 2 June).

    | customer | before       | week of 1 June        | of 8 June          | of 15 June       |
    |----------|--------------|-----------------------|--------------------|------------------|
    | a        | 2 Jun: D 500 | 3rd: D 100; 5th: U 50 | 9th: D refund 30   |                  |
    | b        |              | 4th: D 40 (first)     |                    | 16th: U 60       |
    | c        |              |                       | 10th: none 20 (first) | 21st 23:30: U 10 |
    | d        | no orders    |                       |                    |                  |

    D is Downtown, U Uptown, none: no branch. a has a redemption on 6 June. A rival merchant
    sells 700 at its own branch on 10 June.
    """

    downtown: Branch
    uptown: Branch
    a: Customer
    b: Customer
    c: Customer
    d: Customer


WEEKS = period("2026-06-03", "2026-06-21")
MON_1, MON_8, MON_15 = day("2026-06-01"), day("2026-06-08"), day("2026-06-15")


@pytest.fixture
def stores(merchant, other_merchant):
    # created Uptown first: the columns follow the names, not the ids
    uptown = BranchFactory(merchant=merchant, name="Uptown")
    downtown = BranchFactory(merchant=merchant, name="Downtown")
    a, b, c, d = (CustomerFactory(merchant=merchant) for _ in range(4))
    buy(a, local(2026, 6, 2), "500.00", downtown)
    buy(a, local(2026, 6, 3, 10, 0), "100.00", downtown)
    buy(a, local(2026, 6, 5), "50.00", uptown)
    refund(a, local(2026, 6, 9), "30.00", downtown)
    buy(b, local(2026, 6, 4), "40.00", downtown)
    buy(b, local(2026, 6, 16), "60.00", uptown)
    buy(c, local(2026, 6, 10), "20.00")
    buy(c, local(2026, 6, 21, 23, 30), "10.00", uptown)
    RedemptionFactory(customer=a, redeemed_at=local(2026, 6, 6))
    rival = CustomerFactory(merchant=other_merchant)
    buy(rival, local(2026, 6, 10), "700.00", BranchFactory(merchant=other_merchant))
    scores(a, lifecycle_stage="loyal")
    scores(b, lifecycle_stage="new")
    scores(c, lifecycle_stage="new")
    return Stores(downtown=downtown, uptown=uptown, a=a, b=b, c=c, d=d)


def test_revenue_by_branch_per_week(merchant, stores):
    report = revenue_by_branch(Scope(merchant), WEEKS, granularity=Granularity.WEEK)

    down, up = stores.downtown.pk, stores.uptown.pk
    assert report.buckets == [MON_1, MON_8, MON_15]
    assert report.branches == [(down, "Downtown"), (up, "Uptown"), (None, "No branch")]
    # a's 500 on 2 June is in the week of 1 June but before the period
    assert report.cells == {
        (MON_1, down): cell("140.00", "140.00", 2, 2),  # a 100, b 40
        (MON_1, up): cell("50.00", "50.00", 1, 1),
        (MON_8, down): cell("-30.00", "0.00", 0, 0),  # a refund only
        (MON_8, None): cell("20.00", "20.00", 1, 1),
        (MON_15, up): cell("70.00", "70.00", 2, 2),  # b 60, c 10 (23:30 on the last day)
    }
    assert report.cell(MON_15, down) == SalesCell()
    # a bought at both branches in the week of 1 June: one customer in the week's total
    assert report.bucket_totals == {
        MON_1: cell("190.00", "190.00", 3, 2),
        MON_8: cell("-10.00", "20.00", 1, 1),
        MON_15: cell("70.00", "70.00", 2, 2),
    }
    assert report.branch_totals == {
        down: cell("110.00", "140.00", 2, 2),  # a and b
        up: cell("120.00", "120.00", 3, 3),  # a, b and c
        None: cell("20.00", "20.00", 1, 1),
    }
    assert report.total == cell("250.00", "280.00", 6, 3)
    assert report.total.avg_order_value == D("46.67")  # 280 / 6
    assert report.bucket_label(MON_1) == "Week of 1 Jun 2026"


def test_revenue_by_branch_has_no_no_branch_column_without_such_sales(merchant, stores):
    report = revenue_by_branch(
        Scope(merchant), period("2026-06-15", "2026-06-21"), granularity=Granularity.WEEK
    )

    # both branches are columns, sales or not
    assert report.branches == [(stores.downtown.pk, "Downtown"), (stores.uptown.pk, "Uptown")]
    assert report.total == cell("70.00", "70.00", 2, 2)


def test_revenue_by_branch_per_month_in_local_months(merchant):
    shop = BranchFactory(merchant=merchant, name="Shop")
    customer = CustomerFactory(merchant=merchant)
    buy(customer, local(2026, 5, 14, 23, 30), "32.00", shop)  # out
    buy(customer, local(2026, 5, 31, 23, 30), "1.00", shop)  # May, 1 June in UTC
    buy(customer, local(2026, 6, 30, 23, 30), "2.00", shop)  # June
    buy(customer, local(2026, 7, 1, 0, 30), "4.00", shop)
    buy(customer, local(2026, 7, 10, 23, 30), "8.00", shop)
    buy(customer, local(2026, 7, 11, 0, 30), "16.00", shop)  # out

    report = revenue_by_branch(
        Scope(merchant), period("2026-05-15", "2026-07-10"), granularity=Granularity.MONTH
    )

    may, june, july = day("2026-05-01"), day("2026-06-01"), day("2026-07-01")
    assert report.buckets == [may, june, july]
    assert report.bucket_totals == {
        may: cell("1.00", "1.00", 1, 1),
        june: cell("2.00", "2.00", 1, 1),
        july: cell("12.00", "12.00", 2, 1),
    }
    assert report.bucket_label(july) == "Jul 2026"


def test_revenue_by_branch_per_year_puts_new_years_eve_in_the_old_year(merchant):
    customer = CustomerFactory(merchant=merchant)
    buy(customer, local(2025, 12, 31, 23, 30), "3.00")  # 04:30 UTC on 1 January 2026
    buy(customer, local(2026, 1, 1, 0, 30), "7.00")

    report = revenue_by_branch(
        Scope(merchant), period("2025-12-15", "2026-01-10"), granularity=Granularity.YEAR
    )

    y2025, y2026 = day("2025-01-01"), day("2026-01-01")
    assert report.buckets == [y2025, y2026]
    assert report.cells == {
        (y2025, None): cell("3.00", "3.00", 1, 1),
        (y2026, None): cell("7.00", "7.00", 1, 1),
    }
    assert report.branches == [(None, "No branch")]
    assert report.bucket_label(y2025) == "2025"


def test_revenue_by_branch_of_a_segments_members(merchant, stores):
    members = segment(merchant, "A and C", stores.a, stores.c)

    report = revenue_by_branch(
        Scope(merchant), WEEKS, granularity=Granularity.WEEK, segment=members
    )

    down, up = stores.downtown.pk, stores.uptown.pk
    assert report.cells == {
        (MON_1, down): cell("100.00", "100.00", 1, 1),
        (MON_1, up): cell("50.00", "50.00", 1, 1),
        (MON_8, down): cell("-30.00", "0.00", 0, 0),
        (MON_8, None): cell("20.00", "20.00", 1, 1),
        (MON_15, up): cell("10.00", "10.00", 1, 1),
    }
    assert report.bucket_totals[MON_1] == cell("150.00", "150.00", 2, 1)
    assert report.total == cell("150.00", "180.00", 4, 2)

    only_b = segment(merchant, "B", stores.b)
    report = revenue_by_branch(Scope(merchant), WEEKS, granularity=Granularity.WEEK, segment=only_b)
    assert (None, "No branch") not in report.branches
    assert report.total == cell("100.00", "100.00", 2, 1)


def test_a_branch_limit_counts_only_that_branchs_sales_in_key_figures(merchant, stores):
    everywhere = key_figures(Scope(merchant), WEEKS)
    downtown = key_figures(Scope(merchant, branch_ids=(stores.downtown.pk,)), WEEKS)
    nowhere = key_figures(Scope(merchant, branch_ids=()), WEEKS)

    # all: 100 + 50 + 40 + 60 + 20 + 10 = 280, refund 30; new: b (4 June) and c (10 June)
    assert everywhere == KeyFigures(
        revenue=D("250.00"),
        gross=D("280.00"),
        refunds=D("30.00"),
        orders=6,
        active_customers=3,
        new_customers=2,
        redemptions=1,
    )
    # Downtown: a 100, b 40, a's refund 30; b is new, a's first order was on 2 June.
    # Redemptions have no branch: a limit leaves them (see key_figures' docstring).
    assert downtown == KeyFigures(
        revenue=D("110.00"),
        gross=D("140.00"),
        refunds=D("30.00"),
        orders=2,
        active_customers=2,
        new_customers=1,
        redemptions=1,
    )
    assert downtown.avg_order_value == D("70.00")
    # both branches: everything but c's 20 without a branch; c is still new (her first
    # order ever, without a branch, was in the period, and she bought Uptown)
    both = key_figures(Scope(merchant, branch_ids=(stores.downtown.pk, stores.uptown.pk)), WEEKS)
    assert both == KeyFigures(
        revenue=D("230.00"),
        gross=D("260.00"),
        refunds=D("30.00"),
        orders=5,
        active_customers=3,
        new_customers=2,
        redemptions=1,
    )
    assert nowhere == replace(no_figures(), redemptions=1)
    assert nowhere.avg_order_value is None


def test_a_branch_limit_counts_only_that_branchs_sales_in_segment_analysis(merchant, stores):
    everywhere = segment_analysis(Scope(merchant), WEEKS, group_by="lifecycle_stage")
    downtown = segment_analysis(
        Scope(merchant, branch_ids=(stores.downtown.pk,)), WEEKS, group_by="lifecycle_stage"
    )
    nowhere = segment_analysis(Scope(merchant, branch_ids=()), WEEKS, group_by="lifecycle_stage")

    # four customers (d has no stage) in every scope; previous period: a's 500 Downtown.
    # All: new b 40 + 60, c 20 + 10 = 130 of 250; loyal a 100 + 50 - 30 = 120 of 250.
    rows = table(everywhere)
    assert rows["new"] == (2, D("0.5"), D("130.00"), D("0.52"), 4, D("32.50"), D("0"), 0, None)
    assert rows["loyal"] == (
        1, D("0.25"), D("120.00"), D("0.48"), 2, D("75.00"), D("500.00"), 1, D("-0.76")
    )  # fmt: skip
    assert rows[""] == (1, D("0.25"), D("0"), D("0"), 0, None, D("0"), 0, None)
    # Downtown: new b 40 of 110 (0.363636...), loyal a 100 - 30 = 70 of 110 (0.636363...)
    rows = table(downtown)
    assert rows["new"] == (2, D("0.5"), D("40.00"), D("0.363636"), 1, D("40.00"), D("0"), 0, None)
    assert rows["loyal"] == (
        1, D("0.25"), D("70.00"), D("0.636364"), 1, D("100.00"), D("500.00"), 1, D("-0.86")
    )  # fmt: skip
    assert rows[""] == (1, D("0.25"), D("0"), D("0"), 0, None, D("0"), 0, None)
    assert (downtown.customers, downtown.revenue, downtown.orders) == (4, D("110.00"), 2)
    assert downtown.prev_revenue == D("500.00")
    # no branch: the same groups, no sales, no revenue to share
    assert [(row.key, row.customers) for row in nowhere.rows] == [
        (row.key, row.customers) for row in everywhere.rows
    ]
    assert {(row.revenue, row.orders, row.revenue_share) for row in nowhere.rows} == {
        (D("0"), 0, None)
    }
    assert (nowhere.customers, nowhere.revenue, nowhere.prev_revenue) == (4, D("0"), D("0"))


def test_a_branch_limit_counts_only_that_branchs_sales_by_branch(merchant, stores):
    down = stores.downtown.pk
    scope = Scope(merchant, branch_ids=(down,))

    report = revenue_by_branch(scope, WEEKS, granularity=Granularity.WEEK)

    assert scope.branch_names() == ["Downtown"]
    assert report.branches == [(down, "Downtown")]
    assert report.cells == {
        (MON_1, down): cell("140.00", "140.00", 2, 2),
        (MON_8, down): cell("-30.00", "0.00", 0, 0),
    }
    assert report.bucket_totals == {
        MON_1: cell("140.00", "140.00", 2, 2),
        MON_8: cell("-30.00", "0.00", 0, 0),
    }
    assert report.branch_totals == {down: cell("110.00", "140.00", 2, 2)}
    assert report.total == cell("110.00", "140.00", 2, 2)

    both = revenue_by_branch(
        Scope(merchant, branch_ids=(down, stores.uptown.pk)), WEEKS, granularity=Granularity.WEEK
    )
    assert both.branches == [(down, "Downtown"), (stores.uptown.pk, "Uptown")]
    assert both.total == cell("230.00", "260.00", 5, 3)

    nowhere = revenue_by_branch(Scope(merchant, branch_ids=()), WEEKS, granularity=Granularity.WEEK)
    assert (nowhere.branches, nowhere.cells, nowhere.total) == ([], {}, SalesCell())


def test_a_branch_limit_counts_only_that_branchs_sales_in_top_segments(merchant, stores):
    both = segment(merchant, "A and B", stores.a, stores.b)

    top = top_segments(Scope(merchant, branch_ids=(stores.downtown.pk,)), WEEKS)

    assert [(row.segment, row.revenue, row.buyers) for row in top] == [(both, D("110.00"), 2)]
    assert top_segments(Scope(merchant, branch_ids=()), WEEKS) == []


# --- Segment growth --------------------------------------------------------------------------


def test_segment_growth_sizes_per_day_and_changes_per_week(merchant):
    # given Wednesday 3 to Tuesday 9 June 2026 (the weeks of Monday 1 and 8 June)
    first, second, unasked = (segment(merchant, name) for name in ("First", "Second", "Unasked"))
    sizes = [
        (first, "2026-06-01", 10),
        (first, "2026-06-02", 12),  # the latest before the period
        (first, "2026-06-04", 15),  # none on the 5th
        (first, "2026-06-06", 14),  # none on the 7th and 8th
        (first, "2026-06-09", 20),
        (first, "2026-06-10", 99),  # after
        (second, "2026-06-05", 3),  # none before
        (unasked, "2026-06-04", 1000),
    ]
    SegmentSizeSnapshot.objects.bulk_create(
        SegmentSizeSnapshot(segment=s, day=day(d), member_count=n) for s, d, n in sizes
    )
    customer = CustomerFactory(merchant=merchant)
    events = [
        (first, "entry", local(2026, 6, 2, 23, 30)),  # before the period
        (first, "entry", local(2026, 6, 3, 0, 30)),
        (first, "exit", local(2026, 6, 5)),
        (first, "entry", local(2026, 6, 7, 23, 30)),  # Sunday; Monday 03:30 in UTC
        (first, "entry", local(2026, 6, 8, 0, 30)),
        (first, "entry", local(2026, 6, 9, 23, 30)),  # the last evening
        (first, "entry", local(2026, 6, 10, 0, 30)),  # after
        (second, "exit", local(2026, 6, 9)),
        (unasked, "entry", local(2026, 6, 4)),
    ]
    MembershipEvent.objects.bulk_create(
        MembershipEvent(
            segment=s, customer=customer, kind=kind, reason=MembershipReason.RULE, occurred_at=at
        )
        for s, kind, at in events
    )

    growth = segment_growth(
        Scope(merchant), period("2026-06-03", "2026-06-09"), segments=[first, second]
    )

    assert growth.days == [day("2026-06-03") + dt.timedelta(days=n) for n in range(7)]
    assert [(series.segment, series.sizes) for series in growth.series] == [
        (first, [12, 15, 15, 14, 14, 14, 20]),
        (second, [None, None, 3, 3, 3, 3, 3]),
    ]
    assert [(week.week, week.entries, week.exits) for week in growth.weeks] == [
        (MON_1, {first.pk: 2}, {first.pk: 1}),
        (MON_8, {first.pk: 2}, {second.pk: 1}),
    ]
    # the events behind a week's figure, latest first
    entries = week_changes(
        Scope(merchant), first, week=MON_1, kind=MembershipEventKind.ENTRY, tz=TORONTO
    )
    assert [event.occurred_at for event in entries] == [
        local(2026, 6, 7, 23, 30),
        local(2026, 6, 3, 0, 30),
        local(2026, 6, 2, 23, 30),  # the week, not the period
    ]


def test_segment_growth_without_snapshots_or_events(merchant):
    quiet = segment(merchant, "Quiet")

    growth = segment_growth(Scope(merchant), period("2026-06-08", "2026-06-09"), segments=[quiet])

    assert [series.sizes for series in growth.series] == [[None, None]]
    assert [(week.week, week.entries, week.exits) for week in growth.weeks] == [(MON_8, {}, {})]


# --- Overlap ---------------------------------------------------------------------------------


@pytest.fixture
def trio(merchant):
    """A: c1 c2 c3 c4 c7; B: c3 c4 c5 c8; C: c1 c4 c5 c6 c8; c9 in another segment only.

    Exactly A: c2 c7; A and B: c3; A and C: c1; B and C: c5 c8; C: c6; all three: c4.
    """
    c = {n: CustomerFactory(merchant=merchant) for n in range(1, 10)}
    a = segment(merchant, "A", c[1], c[2], c[3], c[4], c[7])
    b = segment(merchant, "B", c[3], c[4], c[5], c[8])
    c_ = segment(merchant, "C", c[1], c[4], c[5], c[6], c[8])
    segment(merchant, "Elsewhere", c[9], c[1])
    return a, b, c_


def test_overlap_of_three_segments(merchant, trio):
    result = overlap(Scope(merchant), segments=list(trio))

    # bits: A 1, B 2, C 4
    assert result.regions == {1: 2, 3: 1, 5: 1, 6: 2, 4: 1, 7: 1}
    assert [result.size(i) for i in range(3)] == [5, 4, 5]
    assert (result.region(0), result.region(1, 2), result.region(0, 1, 2)) == (2, 2, 1)
    assert result.region(1) == 0
    assert result.union() == 8
    # A and B share c3 c4; A and C c1 c4; B and C c4 c5 c8
    assert result.matrix() == [
        [(5, D("1")), (2, D("0.4")), (2, D("0.4"))],
        [(2, D("0.5")), (4, D("1")), (3, D("0.75"))],
        [(2, D("0.4")), (3, D("0.6")), (5, D("1"))],
    ]


def test_overlap_of_two_segments(merchant, trio):
    a, b, _ = trio

    result = overlap(Scope(merchant), segments=[a, b])

    # only A: c1 c2 c7; only B: c5 c8; both: c3 c4
    assert result.regions == {1: 3, 2: 2, 3: 2}
    assert result.matrix() == [[(5, D("1")), (2, D("0.4"))], [(2, D("0.5")), (4, D("1"))]]
    assert result.union() == 7


def test_overlap_of_an_empty_segment_has_no_share(merchant, trio):
    empty = segment(merchant, "Empty")

    result = overlap(Scope(merchant), segments=[trio[0], empty])

    assert result.matrix() == [[(5, D("1")), (0, D("0"))], [(0, None), (0, None)]]


@pytest.mark.parametrize("count", [0, 1, 13])
def test_overlap_compares_2_to_12_segments(merchant, count):
    chosen = [segment(merchant, f"S{n}") for n in range(count)]

    with pytest.raises(ReportError) as error:
        overlap(Scope(merchant), segments=chosen)
    assert str(error.value) == f"Pick 2 to 12 segments to compare (picked {count})."


# --- Top segments ----------------------------------------------------------------------------


def test_top_segments_by_revenue_in_the_period(merchant, other_merchant):
    a, b, c, d, e = (CustomerFactory(merchant=merchant) for _ in range(5))
    buy(a, local(2026, 6, 3), "300.00")
    buy(b, local(2026, 6, 4), "100.00")
    refund(b, local(2026, 6, 5), "50.00")
    buy(c, local(2026, 6, 6), "80.00")
    buy(c, local(2026, 5, 31, 23, 30), "1000.00")  # before the period
    refund(d, local(2026, 6, 7), "10.00")
    big = segment(merchant, "Big", a, b)
    small = segment(merchant, "Small", c)
    refunders = segment(merchant, "Refunders", d)
    segment(merchant, "Switched off", a, b, c, is_active=False)
    segment(merchant, "No sales", e)
    rival = CustomerFactory(merchant=other_merchant)
    buy(rival, local(2026, 6, 3), "9000.00")
    segment(other_merchant, "Rival", rival)

    top = top_segments(Scope(merchant), JUNE)

    # Big: 300 + 100 - 50 = 350 from two buyers; Small: 80 (not the 1,000 of 31 May);
    # Refunders: -10 and no buyer; no row for a segment whose members had no sales
    assert [(row.segment, row.revenue, row.buyers) for row in top] == [
        (big, D("350.00"), 2),
        (small, D("80.00"), 1),
        (refunders, D("-10.00"), 0),
    ]
    assert [row.segment for row in top_segments(Scope(merchant), JUNE, limit=2)] == [big, small]


# --- Money --------------------------------------------------------------------------------


def test_refunds_that_cancel_the_orders_leave_zero_not_minus_zero(merchant):
    # given an order of 0.30 and refunds of 0.10 and 0.20 in the week of 1 June
    customer = CustomerFactory(merchant=merchant)
    buy(customer, local(2026, 6, 3), "0.30")
    refund(customer, local(2026, 6, 4), "0.10")
    refund(customer, local(2026, 6, 5), "0.20")
    scores(customer, lifecycle_stage="new")

    analysis = segment_analysis(Scope(merchant), WEEKS, group_by="lifecycle_stage")
    by_branch = revenue_by_branch(Scope(merchant), WEEKS, granularity=Granularity.WEEK)

    # str(), not ==: Decimal("-0.00") == 0, but it reads "-0.00"
    assert str(key_figures(Scope(merchant), WEEKS).revenue) == "0.00"
    assert str(analysis.revenue) == "0.00"
    assert str(table(analysis)["new"][2]) == "0.00"
    assert str(by_branch.total.revenue) == "0.00"
    assert str(by_branch.bucket_totals[MON_1].revenue) == "0.00"


# --- Query counts --------------------------------------------------------------------------


def reads(run) -> int:
    """The statements `run()` sends that read data (not the transaction and the work_mem
    setting that wrap each report statement on PostgreSQL)."""
    with CaptureQueriesContext(connection) as queries:
        run()
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "SET LOCAL", "BEGIN", "COMMIT")
    return sum(1 for q in queries.captured_queries if not q["sql"].startswith(control))


def test_each_report_reads_in_a_fixed_number_of_queries(merchant, staged):
    scope = Scope(merchant)
    vips = segment(merchant, "VIPs", staged.ann, staged.bob)
    others = segment(merchant, "Others", staged.cat)

    # the sales, the new customers and the redemptions
    assert reads(lambda: key_figures(scope, JUNE, segment=vips)) == 3
    # the group sizes (which add up to the merchant's customers), the sales of every group
    # in both periods
    assert reads(lambda: segment_analysis(scope, JUNE, group_by="lifecycle_stage")) == 2
    # ...the merchant's customers and the total of the segments' sales, which may overlap
    assert (
        reads(lambda: segment_analysis(scope, JUNE, group_by="segment", segments=[vips, others]))
        == 4
    )
    assert reads(lambda: overlap(scope, segments=[vips, others])) == 1
    # the statement and the segments it names
    assert reads(lambda: top_segments(scope, JUNE)) == 2


# --- Another merchant ------------------------------------------------------------------------


def test_another_merchants_rows_never_count(merchant, other_merchant):
    # given a merchant with one customer and no sales, and a rival with everything
    CustomerFactory(merchant=merchant)
    rival_branch = BranchFactory(merchant=other_merchant, name="Rival shop")
    rival = CustomerFactory(merchant=other_merchant)
    buy(rival, local(2026, 6, 10), "900.00", rival_branch)
    refund(rival, local(2026, 6, 11), "100.00")
    RedemptionFactory(customer=rival, redeemed_at=local(2026, 6, 10))
    scores(rival, lifecycle_stage="new")
    segment(other_merchant, "Rival VIPs", rival)
    scope = Scope(merchant)

    assert key_figures(scope, JUNE) == no_figures()
    analysis = segment_analysis(scope, JUNE, group_by="lifecycle_stage")
    assert (analysis.customers, analysis.revenue, analysis.orders) == (1, D("0"), 0)
    assert [(row.key, row.customers) for row in analysis.rows if row.customers] == [("", 1)]
    by_branch = revenue_by_branch(scope, JUNE, granularity=Granularity.WEEK)
    assert (by_branch.branches, by_branch.cells, by_branch.total) == ([], {}, SalesCell())
    assert top_segments(scope, JUNE) == []
    # even a limit naming the rival's branch finds nothing
    limited = Scope(merchant, branch_ids=(rival_branch.pk,))
    assert key_figures(limited, JUNE) == no_figures()
    assert revenue_by_branch(limited, JUNE, granularity=Granularity.DAY).branches == []
    assert Transaction.objects.filter(merchant=other_merchant).count() == 2
