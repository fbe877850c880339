"""The score definitions of `shared/spec/customer-scores.md`, on hand-built values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from customers.scores.definitions import (
    DEFAULT_RFM_GRID,
    LifecycleRules,
    TierThreshold,
    grid_problems,
    lifecycle_problems,
    period_start,
    rfm_fm,
    rfm_group,
    rfm_score,
    rfm_scores,
    score_cutoffs,
    tier_for,
    tier_move,
)

RULES = LifecycleRules()


@pytest.mark.parametrize(
    ("orders", "days", "window", "stage"),
    [
        (0, None, 0, None),
        (1, 0, 1, "new"),
        (1, 90, 1, "new"),  # d > 90 is at risk; 90 is not yet
        (1, 91, 1, "at_risk"),
        (9, 180, 9, "at_risk"),  # at risk wins over loyal: first match
        (9, 181, 9, "dormant"),
        (2, 5, 2, "repeat"),
        (4, 5, 3, "repeat"),  # counted in the window, not over the lifetime
        (4, 5, 4, "regular"),
        (7, 5, 7, "regular"),
        (8, 5, 8, "loyal"),
        (30, 1, 30, "loyal"),
    ],
)
def test_lifecycle_stage_first_match_wins(orders, days, window, stage):
    assert RULES.stage(orders=orders, days_since_last=days, window_orders=window) == stage


def test_lifecycle_thresholds_are_the_merchants():
    rules = LifecycleRules(dormant_days=60, at_risk_days=30, loyal_orders=3, regular_orders=2)
    assert rules.stage(orders=3, days_since_last=31, window_orders=3) == "at_risk"
    assert rules.stage(orders=3, days_since_last=30, window_orders=3) == "loyal"
    assert rules.stage(orders=2, days_since_last=61, window_orders=2) == "dormant"


def test_rfm_score_formula_in_integers():
    # N = 11: ranks 1..11 spread over 1..5 as 1 + 5(rank-1) // 10.
    assert [rfm_score(rank, 11) for rank in range(1, 12)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
    assert rfm_score(1, 1) == 1  # a single scored customer
    assert rfm_score(2, 2) == 5


def test_rfm_ties_share_a_score_and_the_lowest_value_scores_one():
    # given six values with a tie at a boundary (rank 4 would score 3 alone)
    values = [10, 20, 30, 40, 40, 50]
    # then ties share the rank of 1 + the number strictly lower
    assert rfm_scores(values) == [1, 2, 3, 4, 4, 5]
    assert rfm_scores([7, 7, 7]) == [1, 1, 1]
    assert rfm_scores([Decimal("-5.00"), Decimal("0"), Decimal("12.50")]) == [1, 3, 5]


def test_rfm_groups_follow_the_contract_grid():
    assert rfm_fm(5, 4) == 5 and rfm_fm(1, 2) == 2 and rfm_fm(1, 1) == 1
    assert rfm_group(DEFAULT_RFM_GRID, 5, 5, 5) == "champions"
    assert rfm_group(DEFAULT_RFM_GRID, 5, 1, 1) == "new"
    assert rfm_group(DEFAULT_RFM_GRID, 4, 4, 3) == "loyal"  # FM = 4
    assert rfm_group(DEFAULT_RFM_GRID, 3, 2, 3) == "needs_attention"
    assert rfm_group(DEFAULT_RFM_GRID, 2, 5, 5) == "previously_loyal"
    assert rfm_group(DEFAULT_RFM_GRID, 1, 1, 2) == "dormant"
    assert rfm_group(DEFAULT_RFM_GRID, 1, 3, 2) == "at_risk"


def test_grid_problems_name_the_cell():
    grid = [list(row) for row in DEFAULT_RFM_GRID]
    assert grid_problems(grid) == []
    grid[1][2] = "winners"
    assert grid_problems(grid) == [
        "Cell R = 4, FM = 3: 'winners' is not one of active, almost_lost, at_risk, champions, "
        "dormant, loyal, needs_attention, new, previously_loyal, promising."
    ]
    assert grid_problems(grid[:4]) == ["The RFM grid must have 5 rows (R = 5 down to 1)."]


def test_lifecycle_problems():
    assert lifecycle_problems(LifecycleRules()) == {}
    problems = lifecycle_problems(LifecycleRules(dormant_days=90, at_risk_days=90))
    assert "must exceed at-risk days" in problems["dormant_days"]
    assert "loyal_orders" in lifecycle_problems(LifecycleRules(loyal_orders=4))


BRONZE = TierThreshold(1, "Bronze", 1, "spend", "lifetime", Decimal("500"))
GOLD = TierThreshold(2, "Gold", 3, "spend", "lifetime", Decimal("1000"))


def test_tier_for_takes_the_highest_rank_reached():
    assert tier_for([BRONZE, GOLD], {"spend_lifetime": Decimal("499.99")}) is None
    assert tier_for([BRONZE, GOLD], {"spend_lifetime": Decimal("500")}) == BRONZE
    assert tier_for([BRONZE, GOLD], {"spend_lifetime": Decimal("1000")}) == GOLD


def test_tier_upgrade_is_immediate_and_downgrade_waits_for_the_grace_period():
    today = dt.date(2026, 6, 1)
    common = {"today": today, "grace_days": 30}
    up = tier_move(
        current_id=1, current_rank=1, target=GOLD, below_since=None, scheduled=False, **common
    )
    assert (up.tier_id, up.changed) == (2, True)
    # a purchase never downgrades
    kept = tier_move(
        current_id=2, current_rank=3, target=BRONZE, below_since=None, scheduled=False, **common
    )
    assert (kept.tier_id, kept.changed, kept.below_since) == (2, False, None)
    # a computation starts the grace period ...
    pending = tier_move(
        current_id=2, current_rank=3, target=BRONZE, below_since=None, scheduled=True, **common
    )
    assert (pending.tier_id, pending.changed, pending.below_since) == (2, False, today)
    # ... keeps the tier 29 days later and downgrades after 30
    later = tier_move(
        current_id=2,
        current_rank=3,
        target=BRONZE,
        below_since=today - dt.timedelta(days=29),
        scheduled=True,
        **common,
    )
    assert (later.tier_id, later.changed) == (2, False)
    due = tier_move(
        current_id=2,
        current_rank=3,
        target=None,
        below_since=today - dt.timedelta(days=30),
        scheduled=True,
        **common,
    )
    assert (due.tier_id, due.changed) == (None, True)
    # reaching the tier again ends the grace period
    back = tier_move(
        current_id=2, current_rank=3, target=GOLD, below_since=today, scheduled=True, **common
    )
    assert (back.tier_id, back.changed, back.below_since) == (2, False, None)


def test_period_start_in_the_merchants_time_zone():
    tz = dt.timezone(dt.timedelta(hours=-5))
    as_of = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.UTC)  # still 2025 in UTC-5
    assert period_start("calendar_year", as_of=as_of, tz=tz) == dt.datetime(
        2025, 1, 1, 5, 0, tzinfo=dt.UTC
    )
    assert period_start("lifetime", as_of=as_of, tz=tz) is None
    assert period_start("last_12_months", as_of=as_of, tz=tz) == as_of - dt.timedelta(days=365)


def test_score_cutoffs_give_the_contracts_scores():
    # The computation scores by thresholds (a value scores at least s when it exceeds the
    # cutoff-th smallest value): the same scores as the contract's rank formula, ties and
    # all, for every N and many value sets.
    import random

    rnd = random.Random(12)
    for scored in range(2, 80):
        for _ in range(5):
            values = [rnd.randint(0, rnd.choice([1, 3, 10, 1000])) for _ in range(scored)]
            ordered = sorted(values)
            cutoffs = score_cutoffs(scored)
            by_threshold = [1 + sum(v > ordered[c - 1] for c in cutoffs) for v in values]
            assert by_threshold == rfm_scores(values), (scored, values)
