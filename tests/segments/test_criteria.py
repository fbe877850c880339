"""Every criterion, and its negation, against hand-built data at a pinned `as_of`.

`check()` asserts the exact path, the fast path, and that the negated condition matches
exactly the other customers (missing data included: no birth date, no orders, no tier...).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from customers.models import Gender
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    LineItemFactory,
    ProductFactory,
    RedemptionFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
)
from tests.segments.conftest import AS_OF, cond, rules, toronto

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)


def customer(merchant, ext, **kwargs):
    kwargs.setdefault("joined_at", AS_OF - 400 * DAY)
    return CustomerFactory(merchant=merchant, external_id=ext, **kwargs)


def order(c, when, total="10.00", **kwargs):
    return TransactionFactory(customer=c, occurred_at=when, total=Decimal(total), **kwargs)


@pytest.fixture
def blank(merchant):
    """A customer with nothing: no birth date, orders, tier, branch, tags or type."""
    return customer(merchant, "blank")


# -- profile ------------------------------------------------------------------------------------


def test_gender(merchant, blank, check):
    customer(merchant, "f", gender=Gender.FEMALE)
    customer(merchant, "m", gender=Gender.MALE)
    check(cond("gender", "in", ["female", "male"]), ["f", "m"])
    check(cond("gender", "not_in", ["female"]), ["blank", "m"])


def test_customer_type_is_case_insensitive_and_blank_never_matches_in(merchant, blank, check):
    customer(merchant, "emp", customer_type="Employee")
    customer(merchant, "vip", customer_type="vip")
    check(cond("customer_type", "in", ["employee"]), ["emp"])
    check(cond("customer_type", "not_in", ["employee"]), ["blank", "vip"])


def test_tier_without_tier_never_in_always_not_in(merchant, blank, check):
    gold = TierFactory(merchant=merchant, name="Gold")
    silver = TierFactory(merchant=merchant, name="Silver")
    customer(merchant, "g", tier=gold)
    customer(merchant, "s", tier=silver)
    check(cond("tier", "in", ["gold"]), ["g"])
    check(cond("tier", "not_in", ["Gold"]), ["blank", "s"])


def test_home_branch(merchant, blank, check):
    main = BranchFactory(merchant=merchant, code="MAIN")
    customer(merchant, "main", home_branch=main)
    customer(merchant, "east", home_branch=BranchFactory(merchant=merchant, code="EAST"))
    check(cond("home_branch", "in", ["MAIN"]), ["main"])
    check(cond("home_branch", "not_in", ["MAIN"]), ["blank", "east"])


def test_tags_any_all_none_case_insensitive(merchant, blank, check):
    staff, vip = (
        TagFactory(merchant=merchant, name="Staff"),
        TagFactory(merchant=merchant, name="VIP"),
    )
    customer(merchant, "both", tags=[staff, vip])
    customer(merchant, "staff", tags=[staff])
    check(cond("tags", "has_any", ["staff", "nobody"]), ["both", "staff"])
    check(cond("tags", "has_all", ["STAFF", "vip"]), ["both"])
    check(cond("tags", "has_none", ["vip"]), ["blank", "staff"])


def test_age_completed_years_and_no_birth_date_never_matches(merchant, blank, check):
    # today is 2026-06-15
    customer(merchant, "30-today", birth_date=dt.date(1996, 6, 15))
    customer(merchant, "29-tomorrow", birth_date=dt.date(1996, 6, 16))
    customer(merchant, "21", birth_date=dt.date(2005, 1, 1))
    check(cond("age", "eq", 30), ["30-today"])
    check(cond("age", "gte", 30), ["30-today"])
    check(cond("age", "gt", 29), ["30-today"])
    check(cond("age", "lt", 30), ["21", "29-tomorrow"])
    check(cond("age", "lte", 29), ["21", "29-tomorrow"])
    check(cond("age", "between", [21, 29]), ["21", "29-tomorrow"])
    check(cond("age", "ne", 30), ["21", "29-tomorrow"])


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("today", None, ["today"]),
        ("this_week", None, ["sunday", "today"]),  # Mon 15 .. Sun 21 June
        ("this_month", None, ["june-1", "next-monday", "sunday", "today"]),
        ("next_days", 7, ["sunday", "today"]),
        ("next_days", 1, ["today"]),
    ],
)
def test_birthday(merchant, blank, check, op, value, expected):
    customer(merchant, "today", birth_date=dt.date(1990, 6, 15))
    customer(merchant, "sunday", birth_date=dt.date(1980, 6, 21))
    customer(merchant, "june-1", birth_date=dt.date(1980, 6, 1))
    customer(merchant, "next-monday", birth_date=dt.date(1980, 6, 22))
    check(cond("birthday", op, value), expected)


def test_birthday_29_february_counts_as_28_in_non_leap_years(merchant, evaluate):
    customer(merchant, "leap", birth_date=dt.date(2000, 2, 29))
    customer(merchant, "28", birth_date=dt.date(2001, 2, 28))
    feb28 = toronto(2027, 2, 28, 9, 0)
    assert evaluate(rules(cond("birthday", "today")), as_of=feb28) == ["28", "leap"]
    leap_feb28 = toronto(2028, 2, 28, 9, 0)
    assert evaluate(rules(cond("birthday", "today")), as_of=leap_feb28) == ["28"]
    assert evaluate(rules(cond("birthday", "today")), as_of=toronto(2028, 2, 29, 9)) == ["leap"]


def test_today_is_the_merchant_local_date(merchant, evaluate):
    customer(merchant, "16th", birth_date=dt.date(1990, 6, 16))
    # 02:30 UTC on the 16th is still the 15th in Toronto.
    late = dt.datetime(2026, 6, 16, 2, 30, tzinfo=dt.UTC)
    assert evaluate(rules(cond("birthday", "today")), as_of=late) == []
    assert evaluate(rules(cond("birthday", "next_days", 2)), as_of=late) == ["16th"]


def test_member_since(merchant, check):
    customer(merchant, "new", joined_at=AS_OF - 5 * DAY)
    customer(merchant, "old", joined_at=toronto(2020, 1, 1, 0, 0))
    check(cond("member_since", "within_days", 30), ["new"])
    check(cond("member_since", "before_days", 30), ["old"])
    check(cond("member_since", "before", "2020-01-02"), ["old"])
    check(cond("member_since", "after", "2020-01-02"), ["new"])
    check(cond("member_since", "between", ["2019-12-31", "2020-01-01"]), ["old"])


def test_opt_ins(merchant, blank, check):
    customer(merchant, "in", opted_in=True)
    for field in ("email_opt_in", "sms_opt_in", "push_opt_in"):
        check(cond(field, "is", True), ["in"])
        check(cond(field, "is", False), ["blank"])


def test_points(merchant, blank, check):
    customer(merchant, "rich", points_balance=500, lifetime_points=2000)
    check(cond("points_balance", "gte", 500), ["rich"])
    check(cond("points_balance", "eq", 0), ["blank"])
    check(cond("lifetime_points", "between", [1000, 2000]), ["rich"])


def test_last_contacted_never_and_time_ops(merchant, blank, check):
    customer(merchant, "recent", last_contacted_at=AS_OF - 3 * DAY)
    customer(merchant, "long-ago", last_contacted_at=AS_OF - 60 * DAY)
    check(cond("last_contacted", "within_days", 30), ["recent"])
    check(cond("last_contacted", "before_days", 30), ["long-ago"])
    check(cond("last_contacted", "never"), ["blank"])
    check(cond("last_contacted", "exists"), ["long-ago", "recent"])


# -- purchases ----------------------------------------------------------------------------------


@pytest.fixture
def shoppers(merchant, blank):
    """big: 3 orders (100, 200, 300) and a refund of 50; once: one order of 40 long ago."""
    big = customer(merchant, "big")
    order(big, AS_OF - 2 * DAY, "100.00")
    order(big, AS_OF - 20 * DAY, "200.00")
    order(big, AS_OF - 100 * DAY, "300.00")
    order(big, AS_OF - 1 * DAY, "50.00", kind="refund")
    once = customer(merchant, "once")
    order(once, AS_OF - 400 * DAY, "40.00")
    return big, once


def test_orders_count(shoppers, check):
    check(cond("orders_count", "eq", 0), ["blank"])
    check(cond("orders_count", "gte", 3), ["big"])
    check(cond("orders_count", "eq", 2, window_days=30), ["big"])
    check(cond("orders_count", "eq", 0, window_days=30), ["blank", "once"])


def test_total_spend_deducts_refunds_and_no_orders_is_zero(shoppers, check):
    check(cond("total_spend", "eq", "550"), ["big"])
    check(cond("total_spend", "eq", 0), ["blank"])
    check(cond("total_spend", "lt", 100), ["blank", "once"])
    check(cond("total_spend", "between", ["250", 250], window_days=30), ["big"])  # 300 - 50
    check(cond("total_spend", "gte", 500.5), ["big"])


def test_avg_order_value_undefined_without_orders(shoppers, check):
    check(cond("avg_order_value", "eq", 200), ["big"])
    check(cond("avg_order_value", "ne", 200), ["once"])
    check(cond("avg_order_value", "lt", 1000), ["big", "once"])
    check(cond("avg_order_value", "eq", 150, window_days=30), ["big"])
    check(cond("avg_order_value", "between", ["39.99", "40"]), ["once"])


def test_avg_order_value_is_exact_not_rounded(merchant, check):
    c = customer(merchant, "thirds")
    for total in ("10.00", "10.00", "10.01"):
        order(c, AS_OF - DAY, total)
    check(cond("avg_order_value", "gt", "10.003"), ["thirds"])
    check(cond("avg_order_value", "lt", "10.004"), ["thirds"])


def test_last_and_first_purchase(shoppers, check):
    check(cond("last_purchase", "within_days", 30), ["big"])
    check(cond("last_purchase", "before_days", 30), ["once"])
    check(cond("last_purchase", "never"), ["blank"])
    check(cond("last_purchase", "exists"), ["big", "once"])
    check(cond("first_purchase", "within_days", 200), ["big"])
    check(cond("first_purchase", "before", "2026-01-01"), ["once"])
    check(cond("first_purchase", "never"), ["blank"])


def test_within_days_boundary_and_local_dates(merchant, check):
    # 23:30 Toronto on 2026-06-10 is 03:30 UTC on the 11th: its local date is the 10th.
    c = customer(merchant, "late")
    order(c, toronto(2026, 6, 10, 23, 30))
    customer(merchant, "none")
    check(cond("last_purchase", "before", "2026-06-11"), ["late"])
    check(cond("last_purchase", "before", "2026-06-10"), [])
    check(cond("last_purchase", "after", "2026-06-11"), [])
    check(cond("last_purchase", "after", "2026-06-10"), ["late"])
    check(cond("last_purchase", "between", ["2026-06-10", "2026-06-10"]), ["late"])
    check(cond("last_purchase", "between", ["2026-06-11", "2026-06-15"]), [])
    # within_days is inclusive of as_of - N days exactly.
    exact = customer(merchant, "exact")
    order(exact, AS_OF - 30 * DAY)
    check(cond("last_purchase", "within_days", 30), ["exact", "late"])
    check(cond("last_purchase", "within_days", 29), ["late"])


def test_visited_branch(merchant, shoppers, check):
    main = BranchFactory(merchant=merchant, code="MAIN")
    big, once = shoppers
    order(once, AS_OF - 300 * DAY, branch=main)
    order(big, AS_OF - 3 * DAY, branch=BranchFactory(merchant=merchant, code="EAST"))
    check(cond("visited_branch", "in", ["MAIN"]), ["once"])
    check(cond("visited_branch", "in", ["MAIN", "EAST"], window_days=30), ["big"])


def test_rewards_redeemed(merchant, blank, check):
    c = customer(merchant, "redeemer")
    RedemptionFactory(customer=c, redeemed_at=AS_OF - 2 * DAY)
    RedemptionFactory(customer=c, redeemed_at=AS_OF - 200 * DAY)
    check(cond("rewards_redeemed", "eq", 2), ["redeemer"])
    check(cond("rewards_redeemed", "eq", 1, window_days=30), ["redeemer"])
    check(cond("rewards_redeemed", "eq", 0), ["blank"])


@pytest.fixture
def pandas(merchant, blank):
    """fan: 16 Phat Panda prerolls (10 five days ago, 6 forty days ago); gummy: edibles."""
    preroll = ProductFactory(merchant=merchant, product_type="Preroll", brand="Phat Panda")
    other = ProductFactory(merchant=merchant, product_type="preroll", brand="Other")
    gummy = ProductFactory(merchant=merchant, product_type="edible", brand="Munchie", sku="G1")
    fan = customer(merchant, "fan")
    LineItemFactory(transaction=order(fan, AS_OF - 5 * DAY), product=preroll, quantity=10)
    LineItemFactory(transaction=order(fan, AS_OF - 40 * DAY), product=preroll, quantity=6)
    LineItemFactory(transaction=order(fan, AS_OF - 1 * DAY), product=other, quantity=3)
    eater = customer(merchant, "gummy")
    LineItemFactory(transaction=order(eater, AS_OF - 60 * DAY), product=gummy, quantity=2)
    # A refund's line items are not purchases.
    LineItemFactory(transaction=order(eater, AS_OF - DAY, kind="refund"), product=preroll)
    return fan, eater


PHAT_PREROLL = {
    "product_types": ["preroll"],
    "brands": ["phat panda"],
    "categories": [],
    "skus": [],
}


def test_purchased_units_with_all_lists_and_recency(pandas, check):
    check(cond("purchased", "gt", 15, products=PHAT_PREROLL, last_within_days=14), ["fan"])
    check(cond("purchased", "gt", 15, products=PHAT_PREROLL, last_within_days=3), [])
    check(cond("purchased", "eq", 10, products=PHAT_PREROLL, window_days=30), ["fan"])
    check(cond("purchased", "eq", 0, products=PHAT_PREROLL), ["blank", "gummy"])
    check(cond("purchased", "gte", 1, products={"product_types": ["Preroll"]}), ["fan"])
    check(cond("purchased", "gte", 1, products={"skus": ["g1"]}), ["gummy"])
    check(cond("purchased", "gte", 1, products={"product_types": ["edible"]}, window_days=30), [])


def test_transactions_after_as_of_are_ignored(pandas, merchant, evaluate):
    _fan, eater = pandas
    order(eater, AS_OF + DAY, "1000.00")
    past = AS_OF - 10 * DAY
    assert evaluate(rules(cond("total_spend", "gte", 1000))) == []
    assert evaluate(rules(cond("orders_count", "eq", 1)), as_of=past) == ["fan", "gummy"]
    assert evaluate(rules(cond("purchased", "gte", 16, products=PHAT_PREROLL)), as_of=past) == []
    assert evaluate(rules(cond("last_purchase", "within_days", 29)), as_of=past) == []
    assert evaluate(rules(cond("purchased", "eq", 6, products=PHAT_PREROLL)), as_of=past) == ["fan"]
