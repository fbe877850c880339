"""Segmentify's ten smart segments (`shared/spec/customer-scores.md`, "Smart segments"), as
pure numpy over arrays of customers: every customer gets exactly one, the first step of the
rule that matches. The same function scores a million customers in a computation and one
customer on a purchase, and says which step decided ("why in, why out").
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: The ten segments with their wording, in the order the segment list shows them.
SMART_SEGMENTS: tuple[tuple[str, str], ...] = (
    ("active_loyal", "Active loyal"),
    ("big_spender", "Big spender"),
    ("richie_rich", "Richie rich"),
    ("bulk_shopper", "Bulk shopper"),
    ("loyal_at_risk", "Loyal at risk"),
    ("sleeping_opportunist", "Sleeping opportunist"),
    ("churn_candidate", "Churn candidate"),
    ("one_time_shopper", "One-time shopper"),
    ("waiting_first_order", "Waiting for the first order"),
    ("lost", "Lost"),
)
SMART_SEGMENT_NAMES = tuple(name for name, _ in SMART_SEGMENTS)
SMART_SEGMENT_LABELS = dict(SMART_SEGMENTS)
#: Everyone starts here (the metrics row's default): no order yet.
NO_ORDER_SEGMENT = "waiting_first_order"

#: The rule's steps, in the order they are tried (first match wins): the segment each
#: gives. Step 2 has two outcomes (lost or one-time shopper), numbered 2 for both.
STEPS: tuple[tuple[int, str], ...] = (
    (1, "waiting_first_order"),
    (2, "lost"),
    (2, "one_time_shopper"),
    (3, "lost"),
    (4, "sleeping_opportunist"),
    (5, "loyal_at_risk"),
    (6, "churn_candidate"),
    (7, "richie_rich"),
    (8, "big_spender"),
    (9, "bulk_shopper"),
    (10, "active_loyal"),
)
#: P(alive) below which a customer is lost (step 3), and at risk (steps 4 to 6).
LOST_BELOW = 0.2
AT_RISK_BELOW = 0.5
#: Without a fit: lost after this many of the customer's own gaps between orders, at risk
#: after `AT_RISK_GAPS`.
LOST_GAPS = 4
AT_RISK_GAPS = 2
#: The one-time cut-off is the merchant's 90th percentile of days from first to second
#: order, and never less than this.
MIN_ONE_TIME_DAYS = 90


@dataclass(frozen=True)
class SmartCutoffs:
    """A merchant's cut-offs, over its customers with an order (linear interpolation,
    as PostgreSQL's `percentile_cont`)."""

    #: Days after their only order from which a one-time shopper is lost.
    one_time_days: int = MIN_ONE_TIME_DAYS
    #: The 90th percentile of the mean price per unit (None: nobody has line items).
    unit_price_p90: float | None = None
    #: The 80th percentile of spend (None: nobody has an order).
    spend_p80: float | None = None

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "one_time_days": self.one_time_days,
            "unit_price_p90": self.unit_price_p90,
            "spend_p80": self.spend_p80,
        }

    @classmethod
    def from_json(cls, data: dict | None) -> SmartCutoffs:
        data = data or {}
        return cls(
            one_time_days=int(data.get("one_time_days", MIN_ONE_TIME_DAYS)),
            unit_price_p90=data.get("unit_price_p90"),
            spend_p80=data.get("spend_p80"),
        )


def _percentile(values: NDArray[np.float64], q: float) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if values.size else None


def smart_cutoffs(
    *, n: ArrayLike, spend: ArrayLike, unit_price: ArrayLike, second_order_days: ArrayLike
) -> SmartCutoffs:
    """The merchant's cut-offs from every customer's orders `n`, `spend`, mean price per
    unit (NaN without line items) and days from first to second order (NaN with fewer
    than two orders). Customers without an order are left out."""
    n = np.asarray(n, dtype=float)
    ordered = n > 0
    gap = _percentile(np.asarray(second_order_days, dtype=float)[ordered], 90)
    return SmartCutoffs(
        one_time_days=max(MIN_ONE_TIME_DAYS, math.ceil(gap) if gap is not None else 0),
        unit_price_p90=_percentile(np.asarray(unit_price, dtype=float)[ordered], 90),
        spend_p80=_percentile(np.asarray(spend, dtype=float)[ordered], 80),
    )


def own_gap_days(*, n: ArrayLike, span_days: ArrayLike) -> NDArray[np.float64]:
    """`ipd`: the customer's mean gap between orders, max(1, (last - first) / (n - 1))
    days (1 with fewer than two orders)."""
    n, span = np.asarray(n, dtype=float), np.asarray(span_days, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(n > 1, span / np.maximum(n - 1, 1), 1.0)
    return np.maximum(1.0, gap)


def smart_steps(
    cutoffs: SmartCutoffs,
    *,
    n: ArrayLike,
    d: ArrayLike,
    span_days: ArrayLike,
    p_alive: ArrayLike | None,
    redeemed_orders: ArrayLike,
    spend: ArrayLike,
    unit_price: ArrayLike,
    mean_quantity: ArrayLike,
) -> NDArray[np.int64]:
    """For each customer, the index into `STEPS` of the step that decided their segment.

    `n` orders, `d` days since the latest (NaN without orders), `span_days` from the first
    to the latest order, `p_alive` (None: the merchant has no fit, and the recency ratio
    rule stands in), `redeemed_orders` orders that redeemed points, `spend`, `unit_price`
    (line-item amounts over units, NaN without line items) and `mean_quantity` per line
    item (NaN without line items)."""
    orders = np.asarray(n, dtype=float)
    days = np.nan_to_num(np.asarray(d, dtype=float), nan=0.0)
    spent = np.asarray(spend, dtype=float)
    price = np.asarray(unit_price, dtype=float)
    quantity = np.asarray(mean_quantity, dtype=float)
    none = np.zeros(orders.shape, dtype=bool)
    if p_alive is None:
        ipd = own_gap_days(n=orders, span_days=span_days)
        lost, at_risk = days > LOST_GAPS * ipd, days > AT_RISK_GAPS * ipd
    else:
        p = np.asarray(p_alive, dtype=float)
        # NaN (no prediction) compares false: never lost or at risk by the model.
        with np.errstate(invalid="ignore"):
            lost, at_risk = p < LOST_BELOW, p < AT_RISK_BELOW
    with np.errstate(invalid="ignore"):
        rich = price >= cutoffs.unit_price_p90 if cutoffs.unit_price_p90 is not None else none
        big = spent >= cutoffs.spend_p80 if cutoffs.spend_p80 is not None else none
        bulk = quantity >= 2
    conditions = [
        orders == 0,
        (orders == 1) & (days > cutoffs.one_time_days),
        orders == 1,
        lost,
        at_risk & (2 * np.asarray(redeemed_orders, dtype=float) >= orders),
        at_risk & (orders >= 4),
        at_risk,
        rich,
        big,
        bulk,
    ]
    return np.select(conditions, np.arange(len(conditions)), default=len(conditions)).astype(
        np.int64
    )


def smart_segment_names(steps: NDArray[np.int64]) -> NDArray[np.object_]:
    """The segment of each step index (from `smart_steps`)."""
    names = np.array([name for _, name in STEPS], dtype=object)
    return names[steps]


def churn_cutoff_days(
    cutoffs: SmartCutoffs,
    *,
    n: ArrayLike,
    span_days: ArrayLike,
    fit_days: ArrayLike | None,
) -> NDArray[np.float64]:
    """Days after the customer's *latest* order from which they count as lost without a
    new order (NaN: never, or no order): the one-time cut-off for a single order; with a
    fit, the first day P(alive) is below 0.2 (`fit_days`: days after the *first* order at
    which it reaches 0.2, from `bgnbd.alive_until_weeks`; infinite when it never does);
    without one, the first day past 4 of their own gaps."""
    orders = np.asarray(n, dtype=float)
    span = np.asarray(span_days, dtype=float)
    if fit_days is None:
        after_last = np.floor(LOST_GAPS * own_gap_days(n=orders, span_days=span)) + 1
    else:
        # Counted from the first order, then from the latest.
        after_last = np.floor(np.asarray(fit_days, dtype=float)) + 1 - span
    after_last = np.where(orders == 1, cutoffs.one_time_days + 1, after_last)
    return np.where((orders > 0) & np.isfinite(after_last), after_last, np.nan)


def cutoff_date(last: dt.date | None, days: float) -> dt.date | None:
    """The churn cut-off date from the latest order's date and `churn_cutoff_days`."""
    if last is None or math.isnan(days):
        return None
    return last + dt.timedelta(days=int(days))


def step_reason(step: int, cutoffs: SmartCutoffs, *, fitted: bool) -> str:
    """The rule of a step (an index into `STEPS`) in words, with the merchant's cut-offs:
    what "why in, why out" and the docs say decided a customer's segment."""
    lost = (
        f"P(alive) below {LOST_BELOW}"
        if fitted
        else f"no order for more than {LOST_GAPS} of their own gaps between orders"
    )
    at_risk = (
        f"P(alive) below {AT_RISK_BELOW}"
        if fitted
        else f"no order for more than {AT_RISK_GAPS} of their own gaps between orders"
    )
    price = f"{cutoffs.unit_price_p90:,.2f}" if cutoffs.unit_price_p90 is not None else "none yet"
    spend = f"{cutoffs.spend_p80:,.2f}" if cutoffs.spend_p80 is not None else "none yet"
    number, _ = STEPS[step]
    text = (
        "no order yet",
        f"one order, more than {cutoffs.one_time_days} days ago",
        f"one order, within {cutoffs.one_time_days} days",
        lost,
        f"{at_risk}, and at least half the orders redeemed points",
        f"{at_risk}, with 4 or more orders",
        at_risk,
        f"mean price per unit at or above the merchant's 90th percentile ({price})",
        f"spend at or above the merchant's 80th percentile ({spend})",
        "2 or more units per line item on average",
        "none of the steps before matched",
    )[step]
    return f"step {number}: {text}"


def segment_rules(model: Mapping[str, Any] | None) -> dict[str, str]:
    """Each smart segment's rule in words: the steps that give it, with the merchant's
    cut-offs from its stored fit (`ScoreSettings.model`; the defaults before any)."""
    model = model if isinstance(model, Mapping) else {}
    cutoffs = SmartCutoffs.from_json(model.get("cutoffs"))
    fitted = bool(model.get("bgnbd"))
    steps: dict[str, list[str]] = {}
    for index, (_, name) in enumerate(STEPS):
        steps.setdefault(name, []).append(step_reason(index, cutoffs, fitted=fitted))
    return {name: "; or ".join(steps[name]) for name in SMART_SEGMENT_NAMES}
