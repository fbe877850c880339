"""The smart segments' rule (`customers.scores.smart`), step by step, on hand-built values."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from customers.scores.bgnbd import BgNbdFit, alive_until_weeks, p_alive
from customers.scores.smart import (
    SMART_SEGMENT_NAMES,
    STEPS,
    SmartCutoffs,
    churn_cutoff_days,
    cutoff_date,
    own_gap_days,
    smart_cutoffs,
    smart_segment_names,
    smart_steps,
    step_reason,
)

CUTOFFS = SmartCutoffs(one_time_days=120, unit_price_p90=30.0, spend_p80=500.0)
#: A customer who falls through to the last step, changed one field at a time below.
PLAIN = dict(
    n=5, d=3, span_days=100, p_alive=0.9, redeemed_orders=0, spend=100.0, unit_price=10.0,
    mean_quantity=1.0,
)  # fmt: skip


def segment_of(cutoffs: SmartCutoffs = CUTOFFS, *, fitted: bool = True, **changes) -> str:
    values = {**PLAIN, **changes}
    p = values.pop("p_alive")
    steps = smart_steps(
        cutoffs,
        **{k: np.array([v], dtype=float) for k, v in values.items()},
        p_alive=np.array([p], dtype=float) if fitted else None,
    )
    return str(smart_segment_names(steps)[0])


@pytest.mark.parametrize(
    ("changes", "segment"),
    [
        ({"n": 0, "d": math.nan}, "waiting_first_order"),
        ({"n": 1, "d": 121, "p_alive": 1.0}, "lost"),
        ({"n": 1, "d": 120, "p_alive": 1.0}, "one_time_shopper"),
        ({"p_alive": 0.19}, "lost"),
        ({"p_alive": 0.49, "redeemed_orders": 3}, "sleeping_opportunist"),
        ({"p_alive": 0.49, "redeemed_orders": 2}, "loyal_at_risk"),
        ({"p_alive": 0.49, "n": 3, "redeemed_orders": 1}, "churn_candidate"),
        ({"p_alive": 0.5, "unit_price": 30.0, "spend": 900.0}, "richie_rich"),
        ({"unit_price": math.nan, "spend": 500.0}, "big_spender"),
        ({"spend": 499.99, "mean_quantity": 2.0}, "bulk_shopper"),
        ({}, "active_loyal"),
    ],
)
def test_each_step_first_match_wins(changes, segment):
    assert segment_of(**changes) == segment


def test_without_a_fit_the_recency_ratio_rule_stands_in():
    # 5 orders over 100 days: a gap of 25 days; lost after 4 gaps, at risk after 2
    assert own_gap_days(n=np.array([5.0]), span_days=np.array([100.0]))[0] == 25
    assert segment_of(fitted=False, d=101) == "lost"
    assert segment_of(fitted=False, d=100) == "loyal_at_risk"
    assert segment_of(fitted=False, d=51, n=3, span_days=50) == "churn_candidate"
    assert segment_of(fitted=False, d=50) == "active_loyal"
    # a gap shorter than a day counts as a day
    assert segment_of(fitted=False, n=3, span_days=0, d=5) == "lost"


def test_without_line_items_or_orders_the_percentile_steps_never_match():
    nobody = SmartCutoffs(one_time_days=90, unit_price_p90=None, spend_p80=None)
    assert segment_of(nobody, unit_price=1e9, spend=1e9) == "active_loyal"


@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),
            st.floats(0, 900),
            st.floats(0, 1),
            st.integers(0, 30),
            st.floats(-50, 5000),
            st.one_of(st.just(math.nan), st.floats(0.5, 200)),
            st.one_of(st.just(math.nan), st.floats(1, 5)),
        ),
        min_size=1,
        max_size=40,
    ),
    st.booleans(),
)
def test_every_customer_gets_exactly_one_of_the_ten(rows, fitted):
    n, d, p, redeemed, spend, price, quantity = (
        np.array(c, dtype=float) for c in zip(*rows, strict=True)
    )
    d = np.where(n == 0, np.nan, d)
    cutoffs = smart_cutoffs(
        n=n, spend=spend, unit_price=price, second_order_days=np.where(n > 1, d, np.nan)
    )
    steps = smart_steps(
        cutoffs,
        n=n,
        d=d,
        span_days=np.where(n > 1, d, 0),
        p_alive=p if fitted else None,
        redeemed_orders=np.minimum(redeemed, n),
        spend=spend,
        unit_price=price,
        mean_quantity=quantity,
    )
    names = smart_segment_names(steps)
    assert len(names) == len(rows)
    assert set(names) <= set(SMART_SEGMENT_NAMES)
    assert all(
        (name == "waiting_first_order") == (orders == 0)
        for name, orders in zip(names, n, strict=True)
    )


def test_cutoffs_are_linear_percentiles_over_customers_with_an_order():
    # given spends 100..500 of five buyers and one customer without an order
    cutoffs = smart_cutoffs(
        n=[1, 2, 3, 4, 5, 0],
        spend=[100, 200, 300, 400, 500, 10_000],
        unit_price=[10, math.nan, 20, 30, 40, 1000],
        second_order_days=[math.nan, 100, 200, 300, 400, math.nan],
    )
    # then percentile_cont: 80th of 100..500 is 420; 90th of 10, 20, 30, 40 is 37;
    # 90th of 100..400 days is 370
    assert cutoffs.spend_p80 == pytest.approx(420)
    assert cutoffs.unit_price_p90 == pytest.approx(37)
    assert cutoffs.one_time_days == 370
    # and the one-time cut-off is never below 90 days
    assert (
        smart_cutoffs(n=[2], spend=[1], unit_price=[1], second_order_days=[3]).one_time_days == 90
    )


def test_churn_cutoff_from_the_fit_is_the_first_day_p_alive_is_below_02():
    # given the CDNOW fit and a customer with 2 repeat days, the latest 30 weeks after the first
    fit = BgNbdFit(r=0.2426, alpha=4.4135, a=0.7929, b=2.4258, log_likelihood=0.0, customers=0)
    weeks = alive_until_weeks(fit, 0.2, [2], [30.0])[0]
    days = churn_cutoff_days(
        CUTOFFS, n=np.array([3.0]), span_days=np.array([210.0]), fit_days=np.array([weeks * 7])
    )[0]
    # then on that day (days after the latest order) P(alive) is below 0.2, the day before not
    since_first = 210 + days
    assert p_alive(fit, [2], [30.0], [since_first / 7])[0] < 0.2
    assert p_alive(fit, [2], [30.0], [(since_first - 1) / 7])[0] >= 0.2
    assert cutoff_date(dt.date(2026, 1, 1), days) == dt.date(2026, 1, 1) + dt.timedelta(days)
    # one order: the one-time cut-off; no repeat day: the model keeps them alive (never)
    one, same_day = churn_cutoff_days(
        CUTOFFS,
        n=np.array([1.0, 2.0]),
        span_days=np.array([0.0, 0.0]),
        fit_days=alive_until_weeks(fit, 0.2, [0, 0], [0.0, 0.0]) * 7,
    )
    assert one == 121 and math.isnan(same_day)
    assert cutoff_date(dt.date(2026, 1, 1), same_day) is None


def test_each_step_has_its_rule_in_words():
    texts = [step_reason(i, CUTOFFS, fitted=True) for i in range(len(STEPS))]
    assert texts[0] == "step 1: no order yet"
    assert texts[1] == "step 2: one order, more than 120 days ago"
    assert texts[3] == "step 3: P(alive) below 0.2"
    assert "(500.00)" in texts[8] and "(30.00)" in texts[7]
    assert "own gaps" in step_reason(3, CUTOFFS, fitted=False)
