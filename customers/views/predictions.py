"""What the portal shows of the predictions: one customer's (the customer page) and the
merchant's fit (the model page), read from what the score computation stored
(`CustomerMetrics` and `ScoreSettings.model`, see `customers.scores.predictions`).

Nothing here computes a prediction: it reads the stored values and puts them in words. The
model JSON is read leniently, key by key: a key missing or malformed (an older computation,
a hand edit in the admin) shows as "—" on the page, never as a server error.

Tenancy: `merchant_model` reads the current merchant's own settings row only.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from customers.models import CustomerMetrics, Merchant, ScoreSettings
from customers.portal.formatting import format_percent
from customers.scores.smart import (
    AT_RISK_BELOW,
    LOST_BELOW,
    SMART_SEGMENT_LABELS,
    STEPS,
    SmartCutoffs,
    step_reason,
)

NOT_COMPUTED = "not computed yet: the predictions come with the first score computation"
NO_ORDER = "no order yet: the predictions start with the first order"
NOT_YET_FOR_CUSTOMER = "not computed for this customer yet: they come with the next computation"


def merchant_model(merchant: Merchant) -> dict[str, Any]:
    """The merchant's last fit as stored (`{}`: nothing computed yet). Reads the settings
    row without creating it, so a page view writes nothing."""
    model = ScoreSettings.objects.filter(merchant=merchant).values_list("model", flat=True).first()
    return model if isinstance(model, dict) else {}


def _float(data: Any, key: str) -> float | None:
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(data: Any, key: str) -> int | None:
    value = _float(data, key)
    return int(value) if value is not None else None


def _text(data: Any, key: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    return value.strip() if isinstance(value, str) else ""


def _date(data: Any, key: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(_text(data, key))
    except ValueError:
        return None


# -- the merchant's fit (the model page) -----------------------------------------------------


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD: purchase rates vary between customers as Gamma(r, alpha) (per week), and after
    each purchase a customer drops out with a probability that varies as Beta(a, b)."""

    r: float | None
    alpha: float | None
    a: float | None
    b: float | None
    log_likelihood: float | None
    customers: int | None

    @classmethod
    def from_json(cls, data: Any) -> BgNbdParams | None:
        if not isinstance(data, dict):
            return None
        return cls(
            r=_float(data, "r"),
            alpha=_float(data, "alpha"),
            a=_float(data, "a"),
            b=_float(data, "b"),
            log_likelihood=_float(data, "log_likelihood"),
            customers=_int(data, "customers"),
        )

    @property
    def weekly_rate(self) -> float | None:
        """The mean purchase rate of an active customer, r / alpha orders a week."""
        if self.r is None or not self.alpha:
            return None
        return self.r / self.alpha

    @property
    def weeks_between_orders(self) -> float | None:
        rate = self.weekly_rate
        return 1 / rate if rate else None

    @property
    def dropout(self) -> float | None:
        """The mean chance of dropping out after a purchase, a / (a + b)."""
        if self.a is None or self.b is None or not self.a + self.b:
            return None
        return self.a / (self.a + self.b)


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma: one customer's order values spread around their own mean with shape p;
    the means vary between customers with shape q and scale gamma."""

    p: float | None
    q: float | None
    gamma: float | None
    customers: int | None

    @classmethod
    def from_json(cls, data: Any) -> GammaGammaParams | None:
        if not isinstance(data, dict):
            return None
        return cls(
            p=_float(data, "p"),
            q=_float(data, "q"),
            gamma=_float(data, "gamma"),
            customers=_int(data, "customers"),
        )

    @property
    def mean_order_value(self) -> Decimal | None:
        """The population mean of an order's value, p * gamma / (q - 1) (defined for q > 1)."""
        if self.p is None or self.gamma is None or self.q is None or self.q <= 1:
            return None
        return Decimal(str(round(self.p * self.gamma / (self.q - 1), 2)))


@dataclass(frozen=True)
class HoldoutWeek:
    week_start: dt.date
    actual: int
    expected: float
    holdout: bool


@dataclass(frozen=True)
class HoldoutCheck:
    """The calibration/holdout check (Fader, Hardie and Lee 2005, figures 2 and 3): the model
    fitted on the weeks up to `calibration_end` predicts the weekly repeat orders of the
    `weeks` after it, which are compared with the orders seen."""

    error: str
    calibration_end: dt.date | None = None
    weeks: int | None = None
    bgnbd: BgNbdParams | None = None
    rows: tuple[HoldoutWeek, ...] = ()
    actual_total: int | None = None
    expected_total: float | None = None
    #: Above 50,000 customers, one customer in `sample_every` by id is checked.
    sample_every: int = 1

    @classmethod
    def from_json(cls, data: Any) -> HoldoutCheck | None:
        if not isinstance(data, dict):
            return None
        if _text(data, "error"):
            return cls(error=_text(data, "error"))
        rows = []
        for row in data.get("rows") or []:
            week, actual = _date(row, "week_start"), _int(row, "actual")
            expected = _float(row, "expected")
            if week is None or actual is None or expected is None:
                continue
            rows.append(HoldoutWeek(week, actual, expected, bool(row.get("holdout"))))
        return cls(
            error="",
            calibration_end=_date(data, "calibration_end"),
            weeks=_int(data, "weeks"),
            bgnbd=BgNbdParams.from_json(data.get("bgnbd")),
            rows=tuple(rows),
            actual_total=_int(data, "actual_total"),
            expected_total=_float(data, "expected_total"),
            sample_every=max(1, _int(data, "sample_every") or 1),
        )

    @property
    def difference(self) -> float | None:
        """(expected - actual) / actual over the holdout weeks: how far the model was off."""
        if self.expected_total is None or not self.actual_total:
            return None
        return (self.expected_total - self.actual_total) / self.actual_total

    def chart(self) -> dict[str, Any]:
        """The tracking plot's data for `static/js/score-model-chart.js`."""
        return {
            "labels": [row.week_start.isoformat() for row in self.rows],
            "actual": [row.actual for row in self.rows],
            "expected": [round(row.expected, 2) for row in self.rows],
            "holdout": [row.holdout for row in self.rows],
        }


@dataclass(frozen=True)
class SegmentStep:
    number: int
    segment: str
    label: str
    rule: str


@dataclass(frozen=True)
class ModelReport:
    """The merchant's last fit, as the model page shows it."""

    computed: bool
    as_of: dt.datetime | None
    bgnbd: BgNbdParams | None
    gamma_gamma: GammaGammaParams | None
    prediction_error: str
    fit_seconds: float | None
    cutoffs: SmartCutoffs
    holdout: HoldoutCheck | None

    @classmethod
    def from_json(cls, model: dict[str, Any]) -> ModelReport:
        try:
            as_of: dt.datetime | None = dt.datetime.fromisoformat(_text(model, "as_of"))
        except ValueError:
            as_of = None
        try:
            cutoffs = SmartCutoffs.from_json(model.get("cutoffs"))
        except (AttributeError, TypeError, ValueError):
            cutoffs = SmartCutoffs()
        return cls(
            computed=bool(model),
            as_of=as_of,
            bgnbd=BgNbdParams.from_json(model.get("bgnbd")),
            gamma_gamma=GammaGammaParams.from_json(model.get("gamma_gamma")),
            prediction_error=_text(model, "prediction_error"),
            fit_seconds=_float(model, "fit_seconds"),
            cutoffs=cutoffs,
            holdout=HoldoutCheck.from_json(model.get("holdout")),
        )

    @property
    def fitted(self) -> bool:
        return self.bgnbd is not None

    def steps(self) -> list[SegmentStep]:
        """The smart segments' rule, step by step, with this merchant's cut-offs."""
        return [
            SegmentStep(
                number,
                name,
                SMART_SEGMENT_LABELS[name],
                step_reason(index, self.cutoffs, fitted=self.fitted).partition(": ")[2],
            )
            for index, (number, name) in enumerate(STEPS)
        ]


# -- one customer (the customer page) -------------------------------------------------------


@dataclass(frozen=True)
class CustomerPredictions:
    """One customer's predictions and smart segment, in the words the customer page uses."""

    #: Why there are no predictions ("" when there are).
    reason: str
    p_alive: float | None
    churn_risk: float | None
    expected_orders_90d: float | None
    p_order_30d: float | None
    predicted_clv: Decimal | None
    #: "likely still active: 83.0%; expected 1.4 orders in 90 days".
    reading: str
    segment: str
    segment_label: str
    #: The segment came from the recency rule, the merchant having no fit.
    segment_by_recency: bool
    churn_cutoff_on: dt.date | None
    #: The cut-off is before today (merchant-local): already counted as lost.
    cutoff_past: bool
    cutoff_today: bool
    has_orders: bool

    @property
    def available(self) -> bool:
        return not self.reason


def _reading(p_alive: float, expected: float | None) -> str:
    if p_alive >= 1:
        # TRICKY: BG/NBD gives exactly 1 without a repeat order (a customer can only drop
        # out right after a repeat purchase), which is not "certainly active".
        head = "no repeat order yet, so the model still counts them active"
    elif p_alive >= AT_RISK_BELOW:
        head = f"likely still active: {format_percent(p_alive)}"
    elif p_alive >= LOST_BELOW:
        head = f"at risk: {format_percent(p_alive)} likely still active"
    else:
        head = f"likely lost: {format_percent(p_alive)} likely still active"
    if expected is None:
        return head
    return f"{head}; expected {expected:.1f} orders in 90 days"


def customer_predictions(
    *, metrics: CustomerMetrics | None, model: dict[str, Any], today: dt.date
) -> CustomerPredictions:
    """The customer's stored predictions with what they mean, or why there are none.

    `model` is the merchant's `ScoreSettings.model`; `today` the merchant-local date (the
    churn cut-off is "already past" before it)."""
    p_alive = metrics.p_alive if metrics is not None else None
    has_orders = metrics is not None and metrics.orders_count > 0
    if p_alive is not None:
        reason = ""
    elif not model:
        reason = NOT_COMPUTED
    elif _text(model, "prediction_error"):
        reason = f"no predictions for this merchant: {_text(model, 'prediction_error')}"
    elif not has_orders:
        reason = NO_ORDER
    else:
        reason = NOT_YET_FOR_CUSTOMER
    segment = metrics.smart_segment if metrics is not None else "waiting_first_order"
    cutoff = metrics.churn_cutoff_on if metrics is not None else None
    expected = metrics.expected_orders_90d if metrics is not None else None
    return CustomerPredictions(
        reason=reason,
        p_alive=p_alive,
        churn_risk=metrics.churn_risk if metrics is not None else None,
        expected_orders_90d=expected,
        p_order_30d=metrics.p_order_30d if metrics is not None else None,
        predicted_clv=metrics.predicted_clv if metrics is not None else None,
        reading=_reading(p_alive, expected) if p_alive is not None else "",
        segment=segment,
        segment_label=SMART_SEGMENT_LABELS.get(segment, segment),
        segment_by_recency=has_orders and not isinstance(model.get("bgnbd"), dict),
        churn_cutoff_on=cutoff,
        cutoff_past=cutoff is not None and cutoff < today,
        cutoff_today=cutoff == today,
        has_orders=has_orders,
    )
