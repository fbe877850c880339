"""The customer-score definitions of `shared/spec/customer-scores.md`, as pure functions.

No ORM here: these read plain numbers and dates, so every definition can be tested on
hand-built values, and the service (`customers.scores.service`) uses them for a few
customers at a time (a purchase) while its set-based SQL does the same for a whole
merchant. Tests check that the two agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# -- lifecycle stages -------------------------------------------------------------------------

#: The six stages, in the order the definitions test them (first match wins), with the
#: wording the builder and the settings page show.
STAGES: tuple[tuple[str, str], ...] = (
    ("dormant", "Dormant"),
    ("at_risk", "At risk"),
    ("new", "New"),
    ("loyal", "Loyal"),
    ("regular", "Regular"),
    ("repeat", "Repeat"),
)
STAGE_NAMES = tuple(name for name, _ in STAGES)
STAGE_LABELS = dict(STAGES)
#: The stages in the order a customer usually lives through them (lists and matrices).
STAGE_DISPLAY_ORDER = ("new", "repeat", "regular", "loyal", "at_risk", "dormant")


@dataclass(frozen=True)
class LifecycleRules:
    """A merchant's lifecycle thresholds (the contract's defaults)."""

    dormant_days: int = 180
    at_risk_days: int = 90
    window_days: int = 365
    loyal_orders: int = 8
    regular_orders: int = 4

    def stage(self, *, orders: int, days_since_last: int | None, window_orders: int) -> str | None:
        """The stage of a customer with `orders` orders, the latest `days_since_last` days
        before today (merchant-local dates), `window_orders` of them within `window_days`.
        None for a customer without orders."""
        if orders <= 0 or days_since_last is None:
            return None
        if days_since_last > self.dormant_days:
            return "dormant"
        if days_since_last > self.at_risk_days:
            return "at_risk"
        if orders == 1:
            return "new"
        if window_orders >= self.loyal_orders:
            return "loyal"
        if window_orders >= self.regular_orders:
            return "regular"
        return "repeat"

    def definitions(self) -> dict[str, str]:
        """Each stage's definition in words, with these thresholds (help text)."""
        window = f"the last {self.window_days} days"
        return {
            "new": f"exactly one order, the latest within {self.at_risk_days} days",
            "repeat": f"more than one order, fewer than {self.regular_orders} in {window}",
            "regular": f"{self.regular_orders} to {self.loyal_orders - 1} orders in {window}",
            "loyal": f"{self.loyal_orders} or more orders in {window}",
            "at_risk": f"latest order more than {self.at_risk_days} days ago "
            f"(up to {self.dormant_days})",
            "dormant": f"latest order more than {self.dormant_days} days ago",
        }


# -- RFM --------------------------------------------------------------------------------------

#: The eleven RFM groups, with their wording.
RFM_GROUPS: tuple[tuple[str, str], ...] = (
    ("champions", "Champions"),
    ("loyal", "Loyal"),
    ("active", "Active"),
    ("promising", "Promising"),
    ("new", "New"),
    ("needs_attention", "Needs attention"),
    ("at_risk", "At risk"),
    ("almost_lost", "Almost lost"),
    ("previously_loyal", "Previously loyal"),
    ("dormant", "Dormant"),
    ("prospects", "Prospects"),
)
RFM_GROUP_NAMES = tuple(name for name, _ in RFM_GROUPS)
RFM_GROUP_LABELS = dict(RFM_GROUPS)
#: The group of a customer without scores (no order yet, or none when last computed).
UNSCORED_GROUP = "prospects"
#: What each group usually means (help text next to the grid and in the builder).
RFM_GROUP_HELP = {
    "champions": "bought recently, often and for much",
    "loyal": "buy often and for much, not the most recently",
    "active": "bought recently, middling frequency and spend",
    "promising": "bought recently, little so far",
    "new": "bought very recently, once or for little",
    "needs_attention": "middling recency, frequency and spend",
    "at_risk": "used to buy fairly often, not for a while",
    "almost_lost": "little and not for a while",
    "previously_loyal": "used to buy often and for much, not for a long while",
    "dormant": "little, long ago",
    "prospects": "no order yet (no scores)",
}

#: `GRID[5 - R][FM - 1]`: rows R = 5 down to 1, columns FM = 1 to 5 (the contract's table).
DEFAULT_RFM_GRID: tuple[tuple[str, ...], ...] = (
    ("new", "promising", "active", "champions", "champions"),
    ("promising", "promising", "active", "loyal", "champions"),
    ("needs_attention", "needs_attention", "needs_attention", "loyal", "loyal"),
    ("almost_lost", "almost_lost", "at_risk", "at_risk", "previously_loyal"),
    ("dormant", "dormant", "at_risk", "previously_loyal", "previously_loyal"),
)


def rfm_score(rank: int, scored: int) -> int:
    """The 1-to-5 score of a value whose `rank` is 1 + the number of the `scored`
    customers with a strictly lower value (exact integer arithmetic; ties share a score)."""
    if scored <= 1:
        return 1
    return min(5, 1 + (5 * (rank - 1)) // (scored - 1))


def rfm_scores(values: Sequence[Any]) -> list[int]:
    """The score of each value among `values` (any comparable type: dates, counts, money)."""
    ordered = sorted(values)
    lower: dict[Any, int] = {}
    for index, value in enumerate(ordered):
        lower.setdefault(value, index)
    return [rfm_score(lower[value] + 1, len(ordered)) for value in values]


def score_cutoffs(scored: int) -> list[int]:
    """For each score s = 2..5, how many scored customers must have a strictly lower value
    for a value to score at least s: `score >= s` exactly when `5 * (rank - 1) // (N - 1)`
    reaches `s - 1`, i.e. when `rank - 1 >= ceil((s - 1) * (N - 1) / 5)`. With N >= 2."""
    return [-(-(s - 1) * (scored - 1) // 5) for s in range(2, 6)]


def rfm_fm(frequency: int, monetary: int) -> int:
    """The combined frequency-monetary score, `(F + M + 1) // 2`."""
    return (frequency + monetary + 1) // 2


def rfm_group(grid: Sequence[Sequence[str]], recency: int, frequency: int, monetary: int) -> str:
    """The group of scores (R, F, M) in `grid` (rows R = 5..1, columns FM = 1..5)."""
    return grid[5 - recency][rfm_fm(frequency, monetary) - 1]


def grid_problems(grid: Any) -> list[str]:
    """What is wrong with a stored or submitted grid (empty when it is a valid 5x5 grid of
    group names; `prospects` is not a cell value, it is the group of the unscored)."""
    cell_names = set(RFM_GROUP_NAMES) - {UNSCORED_GROUP}
    if not isinstance(grid, (list, tuple)) or len(grid) != 5:
        return ["The RFM grid must have 5 rows (R = 5 down to 1)."]
    problems = []
    for row_index, row in enumerate(grid):
        recency = 5 - row_index
        if not isinstance(row, (list, tuple)) or len(row) != 5:
            problems.append(f"Row R = {recency} must have 5 cells (FM = 1 to 5).")
            continue
        for column_index, cell in enumerate(row):
            if cell not in cell_names:
                problems.append(
                    f"Cell R = {recency}, FM = {column_index + 1}: {cell!r} is not one of "
                    f"{', '.join(sorted(cell_names))}."
                )
    return problems


# -- tiers ------------------------------------------------------------------------------------

TIER_METRICS: tuple[tuple[str, str], ...] = (
    ("spend", "Spend"),
    ("orders", "Orders"),
    ("points", "Lifetime points"),
)
TIER_PERIODS: tuple[tuple[str, str], ...] = (
    ("lifetime", "Lifetime"),
    ("calendar_year", "This calendar year"),
    ("last_12_months", "The last 12 months"),
)


@dataclass(frozen=True)
class TierThreshold:
    """One tier rule: reach `threshold` of `metric` over `period` to hold tier `tier_id`."""

    tier_id: int
    name: str
    rank: int
    metric: str
    period: str
    threshold: Decimal

    @property
    def key(self) -> str:
        """The input the rule reads, e.g. `spend_lifetime`."""
        return f"{self.metric}_{self.period}"

    @property
    def reached(self) -> str:
        """Why a customer got this tier, for the history: "reached Gold: spend lifetime >=
        1000.00"."""
        period = self.period.replace("_", " ")
        return f"reached {self.name}: {self.metric} {period} >= {self.threshold}"


def downgrade_reason(grace_days: int) -> str:
    """Why a customer lost a tier, for the history."""
    return f"below the threshold for {grace_days} days or more"


def tier_for(
    rules: Sequence[TierThreshold], values: Mapping[str, Decimal | int]
) -> TierThreshold | None:
    """The highest-ranked rule whose threshold `values` reach (None: no tier)."""
    reached = [rule for rule in rules if Decimal(values.get(rule.key, 0)) >= rule.threshold]
    return max(reached, key=lambda rule: (rule.rank, rule.threshold), default=None)


def period_start(period: str, *, as_of: dt.datetime, tz: dt.tzinfo) -> dt.datetime | None:
    """The instant a tier period starts as of `as_of`: None for the lifetime, local
    midnight of 1 January for the calendar year, the same instant a year earlier for the
    last 12 months (365 days: the contract's `within_days`)."""
    if period == "lifetime":
        return None
    if period == "calendar_year":
        local = as_of.astimezone(tz)
        return dt.datetime(local.year, 1, 1, tzinfo=tz).astimezone(dt.UTC)
    if period == "last_12_months":
        return as_of - dt.timedelta(days=365)
    raise ValueError(f"unknown tier period {period!r}")


@dataclass(frozen=True)
class TierMove:
    """What the tier rules do to one customer: the tier to hold, and since when a lower
    target has been pending (the grace period's start)."""

    tier_id: int | None
    below_since: dt.date | None
    changed: bool
    reason: str = ""


def tier_move(
    *,
    current_id: int | None,
    current_rank: int | None,
    target: TierThreshold | None,
    below_since: dt.date | None,
    today: dt.date,
    grace_days: int,
    scheduled: bool,
    reason_prefix: str = "",
) -> TierMove:
    """Apply the tier rules to one customer.

    An upgrade (a target ranked above the current tier, or any target without one) happens
    at once. A lower target (or none) starts a grace period on a scheduled computation; the
    downgrade happens at the first scheduled computation `grace_days` or more after it
    started. A purchase (`scheduled=False`) never downgrades nor starts the grace period.
    The reason of a change is prefixed with `reason_prefix` (what moved the customer).
    """
    prefix = f"{reason_prefix}: " if reason_prefix else ""
    target_id = target.tier_id if target else None
    target_rank = target.rank if target else -1
    rank = -1 if current_id is None else (current_rank if current_rank is not None else -1)
    if target_id == current_id:
        return TierMove(current_id, None, False)
    if target is not None and (current_id is None or target_rank > rank):
        return TierMove(target_id, None, True, prefix + target.reached)
    if target is not None and target_rank == rank:
        # Another tier of the same rank: keep the one held.
        return TierMove(current_id, None, False)
    if not scheduled:
        return TierMove(current_id, below_since, False)
    since = below_since or today
    if (today - since).days >= grace_days:
        return TierMove(target_id, None, True, prefix + downgrade_reason(grace_days))
    return TierMove(current_id, since, False)


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreRules:
    """Everything a computation needs from a merchant's settings."""

    lifecycle: LifecycleRules = field(default_factory=LifecycleRules)
    grid: tuple[tuple[str, ...], ...] = DEFAULT_RFM_GRID
    tiers: tuple[TierThreshold, ...] = ()
    tier_grace_days: int = 30


def lifecycle_problems(rules: LifecycleRules) -> dict[str, str]:
    """Field-keyed errors of lifecycle thresholds that cannot all hold."""
    problems: dict[str, str] = {}
    if rules.dormant_days <= rules.at_risk_days:
        problems["dormant_days"] = (
            f"Dormant days ({rules.dormant_days}) must exceed at-risk days "
            f"({rules.at_risk_days}): a customer turns at risk before dormant."
        )
    if rules.loyal_orders <= rules.regular_orders:
        problems["loyal_orders"] = (
            f"Loyal orders ({rules.loyal_orders}) must exceed regular orders "
            f"({rules.regular_orders})."
        )
    if rules.regular_orders < 2:
        problems["regular_orders"] = "Regular orders must be at least 2 (one order is new)."
    return problems
