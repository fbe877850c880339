"""Predictions and smart segments of `shared/spec/customer-scores.md` over arrays of
customers, without the ORM: the service (`customers.scores.service`) gathers the inputs in
SQL, and these fit the models, score every customer and check the fit on a holdout period.

Time is in weeks for the models (as in the paper) and in days everywhere else.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from customers.scores import bgnbd
from customers.scores.bgnbd import BgNbdFit, GammaGammaFit
from customers.scores.smart import (
    LOST_BELOW,
    SmartCutoffs,
    churn_cutoff_days,
    smart_cutoffs,
    smart_segment_names,
    smart_steps,
)

#: The contract's minimum data for a fit.
MIN_CUSTOMERS = 50
MIN_REPEATERS = 10
#: Why a fit is missing (`prediction_error`).
TOO_FEW_CUSTOMERS = (
    f"too little data for predictions: the model needs at least {MIN_CUSTOMERS} customers "
    "with an order, there are {n}"
)
TOO_FEW_REPEATERS = (
    f"too little data for predictions: the model needs at least {MIN_REPEATERS} customers "
    "with a repeat purchase (on a second day), there are {n}"
)
NO_CONVERGENCE = "the BG/NBD model did not converge on this merchant's data: {why}"
NO_SPEND_MODEL = (
    "predicted CLV is not available: the Gamma-Gamma spend model could not be fitted ({why})"
)
#: Horizons, in weeks.
WEEKS_90D = 90 / 7
WEEKS_365D = 365 / 7
WEEKS_30D = 30 / 7
#: The holdout check: at most this many weeks held out, and at least this much history.
HOLDOUT_MAX_WEEKS = 26
HOLDOUT_MIN_HISTORY_WEEKS = 12
#: The tracking plot shows at most this many calibration weeks before the holdout.
TRACKING_CALIBRATION_WEEKS = 52


@dataclass
class Inputs:
    """One entry per customer with an order, as of the computation's `as_of` (days are
    merchant-local dates, "today" is the local date of `as_of`):

    `n` orders, `spend` (orders minus refunds), `x` purchase days - 1, `span` days from the
    first to the latest purchase day, `age` days from the first purchase day to today,
    `repeat_total` the order totals of the purchase days after the first, `redeemed` orders
    that redeemed points, `first_gap` days from the first to the second order (NaN with one
    order), `unit_price` line-item amounts / units (NaN without line items),
    `mean_quantity` units per line item (NaN without line items)."""

    customer_id: NDArray[np.int64]
    n: NDArray[np.float64]
    spend: NDArray[np.float64]
    x: NDArray[np.float64]
    span: NDArray[np.float64]
    age: NDArray[np.float64]
    repeat_total: NDArray[np.float64]
    redeemed: NDArray[np.float64]
    first_gap: NDArray[np.float64]
    unit_price: NDArray[np.float64]
    mean_quantity: NDArray[np.float64]

    COLUMNS = (
        "customer_id",
        "n",
        "spend",
        "x",
        "span",
        "age",
        "repeat_total",
        "redeemed",
        "first_gap",
        "unit_price",
        "mean_quantity",
    )

    @classmethod
    def from_table(cls, table: NDArray[np.float64]) -> Inputs:
        """From a float array whose columns are `COLUMNS` (NaN for a missing value)."""
        columns: dict[str, Any] = {
            name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(cls.COLUMNS)
        }
        columns["customer_id"] = columns["customer_id"].astype(np.int64)
        return cls(**columns)

    @property
    def d(self) -> NDArray[np.float64]:
        """Days since the latest purchase day."""
        return self.age - self.span

    @property
    def m(self) -> NDArray[np.float64]:
        """The mean value of a repeat purchase day (NaN without one)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.x > 0, self.repeat_total / self.x, np.nan)


@dataclass
class ModelState:
    """A merchant's fit, as stored on `ScoreSettings.model`: what a purchase scores its
    customer with until the next computation."""

    bgnbd: BgNbdFit | None = None
    gamma_gamma: GammaGammaFit | None = None
    error: str | None = None
    cutoffs: SmartCutoffs = field(default_factory=SmartCutoffs)
    as_of: str | None = None
    fit_seconds: float = 0.0
    holdout: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "bgnbd": _fit_json(self.bgnbd),
            "gamma_gamma": _fit_json(self.gamma_gamma),
            "prediction_error": self.error,
            "fit_seconds": round(self.fit_seconds, 3),
            "cutoffs": self.cutoffs.as_json(),
            "holdout": self.holdout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ModelState:
        data = data or {}
        return cls(
            bgnbd=BgNbdFit(**data["bgnbd"]) if data.get("bgnbd") else None,
            gamma_gamma=GammaGammaFit(**data["gamma_gamma"]) if data.get("gamma_gamma") else None,
            error=data.get("prediction_error"),
            cutoffs=SmartCutoffs.from_json(data.get("cutoffs")),
            as_of=data.get("as_of"),
            fit_seconds=float(data.get("fit_seconds") or 0.0),
            holdout=data.get("holdout"),
        )


def _fit_json(fit: BgNbdFit | GammaGammaFit | None) -> dict[str, Any] | None:
    return None if fit is None else dict(fit.__dict__)


def summary_json(fit: BgNbdFit | GammaGammaFit | None) -> dict[str, Any] | None:
    """A fit as `compute_scores --json` prints it (parameters to 4 decimals)."""
    if fit is None:
        return None
    data: dict[str, Any] = {}
    for key, value in fit.__dict__.items():
        if key == "customers":
            data[key] = value
        elif key == "log_likelihood":
            data[key] = round(value, 2)
        else:
            data[key] = round(value, 4)
    return data


def fit_models(
    inputs: Inputs, *, start: ModelState | None = None
) -> tuple[BgNbdFit | None, GammaGammaFit | None, str | None]:
    """BG/NBD over every customer with an order, Gamma-Gamma over those with a repeat
    purchase day of positive mean value; or why not (the contract's minimums, or no
    convergence). The search starts from `start`'s fits when given (the last ones)."""
    start = start or ModelState()
    customers = len(inputs.n)
    if customers < MIN_CUSTOMERS:
        return None, None, TOO_FEW_CUSTOMERS.format(n=customers)
    repeaters = int((inputs.x > 0).sum())
    if repeaters < MIN_REPEATERS:
        return None, None, TOO_FEW_REPEATERS.format(n=repeaters)
    try:
        transactions = bgnbd.fit_bgnbd(inputs.x, inputs.span / 7, inputs.age / 7, start=start.bgnbd)
    except ArithmeticError as exc:
        return None, None, NO_CONVERGENCE.format(why=exc)
    m = inputs.m
    with np.errstate(invalid="ignore"):
        spenders = (inputs.x > 0) & (m > 0)
    try:
        spend = bgnbd.fit_gamma_gamma(inputs.x[spenders], m[spenders], start=start.gamma_gamma)
    except ArithmeticError as exc:
        return transactions, None, NO_SPEND_MODEL.format(why=exc)
    if spend.q <= 1:
        # The population's mean order value p*gamma/(q-1) would be infinite.
        return transactions, None, NO_SPEND_MODEL.format(why=f"q = {spend.q:.3f} is not above 1")
    return transactions, spend, None


@dataclass
class Scores:
    """Each customer's stored values (aligned with the inputs); NaN where not predicted."""

    p_alive: NDArray[np.float64]
    expected_orders_90d: NDArray[np.float64]
    p_order_30d: NDArray[np.float64]
    predicted_clv: NDArray[np.float64]
    segment: NDArray[np.object_]
    step: NDArray[np.int64]
    #: Days after the latest purchase day from which the customer counts as lost.
    cutoff_days: NDArray[np.float64]

    @property
    def churn_risk(self) -> NDArray[np.float64]:
        return 1 - self.p_alive


def score(inputs: Inputs, state: ModelState) -> Scores:
    """Every customer's predictions from the fit (NaN without one), smart segment and
    churn cut-off."""
    size = len(inputs.n)
    nan = np.full(size, np.nan)
    fit, spend_fit = state.bgnbd, state.gamma_gamma
    t_x, T = inputs.span / 7, inputs.age / 7
    if fit is None:
        alive, orders_90, order_30, clv, lost_at = nan, nan, nan, nan, None
    else:
        alive = bgnbd.p_alive(fit, inputs.x, t_x, T)
        orders_90 = bgnbd.expected_purchases(fit, WEEKS_90D, inputs.x, t_x, T)
        order_30 = bgnbd.p_order_within(fit, WEEKS_30D, inputs.x, t_x, T)
        if spend_fit is None:
            clv = nan
        else:
            orders_365 = bgnbd.expected_purchases(fit, WEEKS_365D, inputs.x, t_x, T)
            clv = orders_365 * bgnbd.conditional_order_value(spend_fit, inputs.x, inputs.m)
        lost_at = bgnbd.alive_until_weeks(fit, LOST_BELOW, inputs.x, t_x) * 7
    steps = smart_steps(
        state.cutoffs,
        n=inputs.n,
        d=inputs.d,
        span_days=inputs.span,
        p_alive=None if fit is None else alive,
        redeemed_orders=inputs.redeemed,
        spend=inputs.spend,
        unit_price=inputs.unit_price,
        mean_quantity=inputs.mean_quantity,
    )
    return Scores(
        p_alive=alive,
        expected_orders_90d=orders_90,
        p_order_30d=order_30,
        predicted_clv=clv,
        segment=smart_segment_names(steps),
        step=steps,
        cutoff_days=churn_cutoff_days(
            state.cutoffs, n=inputs.n, span_days=inputs.span, fit_days=lost_at
        ),
    )


def model_state(
    inputs: Inputs,
    *,
    as_of: str,
    holdout: dict[str, Any] | None,
    previous: ModelState | None = None,
) -> ModelState:
    """Fit the models (from the `previous` fit) and the smart segments' cut-offs on a
    merchant's inputs."""
    started = time.perf_counter()
    fit, spend_fit, error = fit_models(inputs, start=previous)
    return ModelState(
        bgnbd=fit,
        gamma_gamma=spend_fit,
        error=error,
        cutoffs=smart_cutoffs(
            n=inputs.n,
            spend=inputs.spend,
            unit_price=inputs.unit_price,
            second_order_days=inputs.first_gap,
        ),
        as_of=as_of,
        fit_seconds=time.perf_counter() - started,
        holdout=holdout,
    )


# -- the holdout check ------------------------------------------------------------------------


def holdout_weeks(history_days: int) -> int | None:
    """How many weeks to hold out of a history this long (a third, at most 26), or None
    when it is too short to check."""
    weeks = history_days // 7
    if weeks < HOLDOUT_MIN_HISTORY_WEEKS:
        return None
    return min(HOLDOUT_MAX_WEEKS, weeks // 3)


def unconditional_expected(fit: BgNbdFit, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """E[X(t)]: expected repeat purchases of a new customer within t weeks of their first
    (the paper's equation 9)."""
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    t = np.maximum(np.asarray(t, dtype=float), 0.0)
    from scipy.special import hyp2f1

    head = (a + b - 1) / (a - 1)
    body = 1 - np.exp(r * (np.log(alpha) - np.log(alpha + t))) * hyp2f1(
        r, b, a + b - 1, t / (alpha + t)
    )
    return head * body


def holdout_check(
    *,
    calibration: Inputs,
    calibration_end: dt.date,
    end: dt.date,
    cohorts: dict[dt.date, int],
    repeat_days: dict[dt.date, int],
    start: ModelState | None = None,
) -> dict[str, Any]:
    """The tracking plot of Fader, Hardie and Lee (2005, figure 2): BG/NBD fitted on the
    calibration period only (`calibration`: the customers whose first purchase day is on or
    before `calibration_end`, as of that day), then each week's repeat purchases (purchase
    days after a customer's first) of those customers, actual against expected, up to `end`.

    `cohorts`: how many of them first bought on each day; `repeat_days`: how many of their
    repeat purchase days fell on each day; `start`: where the fit's search begins."""
    weeks = (end - calibration_end).days // 7
    fit, _, error = fit_models(calibration, start=start)
    if fit is None:
        return {"error": f"no check: on the calibration period, {error}"}
    first_day = min(cohorts)
    plot_start = max(
        calibration_end - dt.timedelta(weeks=TRACKING_CALIBRATION_WEEKS),
        first_day,
    )
    total_weeks = math.ceil((end - plot_start).days / 7)
    plot_start = end - dt.timedelta(weeks=total_weeks)
    boundaries = np.array(
        [(plot_start + dt.timedelta(weeks=w) - first_day).days for w in range(total_weeks + 1)]
    )
    cohort_days = np.array([(day - first_day).days for day in cohorts], dtype=float)
    cohort_sizes = np.array(list(cohorts.values()), dtype=float)
    # Expected cumulative repeat purchases of every cohort at each boundary, in weeks since
    # each cohort's first purchase; a repeat purchase is only possible after that day.
    since = boundaries[:, None] - cohort_days[None, :]
    # Whole days: a few hundred distinct values for tens of thousands of cells.
    distinct, index = np.unique(np.maximum(since, 0), return_inverse=True)
    each = unconditional_expected(fit, distinct / 7)[index].reshape(since.shape)
    cumulative = (each * cohort_sizes[None, :]).sum(axis=1)
    expected = np.diff(cumulative)
    actual = np.zeros(total_weeks, dtype=int)
    for day, count in repeat_days.items():
        week = ((day - plot_start).days - 1) // 7 if day > plot_start else -1
        # A week holds the days after its plot_start up to and including its end.
        if 0 <= week < total_weeks:
            actual[week] += count
    rows: list[dict[str, Any]] = []
    for w in range(total_weeks):
        week_end = plot_start + dt.timedelta(weeks=w + 1)
        rows.append(
            {
                "week_start": (plot_start + dt.timedelta(weeks=w)).isoformat(),
                "actual": int(actual[w]),
                "expected": round(float(expected[w]), 2),
                "holdout": week_end > calibration_end,
            }
        )
    held = [row for row in rows if row["holdout"]]
    actual_total = sum(int(row["actual"]) for row in held)
    return {
        "calibration_end": calibration_end.isoformat(),
        "weeks": weeks,
        "bgnbd": _fit_json(fit),
        "rows": rows,
        "actual_total": actual_total,
        "expected_total": round(sum(float(row["expected"]) for row in held), 2),
    }
