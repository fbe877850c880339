"""Score models as the computation stores them (`ScoreSettings.model`), for the tests of the
pages that show them."""

from __future__ import annotations

from typing import Any

from customers.models import ScoreSettings


def full_model(**changes: Any) -> dict[str, Any]:
    """A model as the computation stores it: the CDNOW paper's parameters, and a holdout
    check of two calibration weeks and three holdout weeks."""
    model = {
        "as_of": "2026-12-05T03:00:00+01:00",
        "bgnbd": {
            "r": 0.2426,
            "alpha": 4.4135,
            "a": 0.7929,
            "b": 2.4258,
            "log_likelihood": -9582.43,
            "customers": 2357,
        },
        "gamma_gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44, "customers": 946},
        "prediction_error": None,
        "fit_seconds": 1.9,
        "cutoffs": {"one_time_days": 107, "unit_price_p90": 141.4, "spend_p80": 2280.77},
        "holdout": {
            "calibration_end": "2026-09-06",
            "weeks": 3,
            "bgnbd": {
                "r": 0.25,
                "alpha": 4.6,
                "a": 0.8,
                "b": 2.5,
                "log_likelihood": -7000.5,
                "customers": 2100,
            },
            "rows": [
                {"week_start": "2026-08-24", "actual": 400, "expected": 390.25, "holdout": False},
                {"week_start": "2026-08-31", "actual": 410, "expected": 401.0, "holdout": False},
                {"week_start": "2026-09-07", "actual": 420, "expected": 405.5, "holdout": True},
                {"week_start": "2026-09-14", "actual": 404, "expected": 400.0, "holdout": True},
                {"week_start": "2026-09-21", "actual": 410, "expected": 395.0, "holdout": True},
            ],
            "actual_total": 1234,
            "expected_total": 1200.5,
        },
    }
    return model | changes


def no_fit_model() -> dict[str, Any]:
    return full_model(
        bgnbd=None,
        gamma_gamma=None,
        prediction_error="fewer than 50 customers with an order (12)",
        holdout={"error": "fewer than 26 weeks of orders"},
    )


def store_model(merchant, model: dict[str, Any]) -> None:
    ScoreSettings.objects.update_or_create(merchant=merchant, defaults={"model": model})
