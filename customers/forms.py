"""Forms of the customers app: the score settings page (`customers.views.scores`).

The forms only parse what was typed; `customers.scores.settings.score_settings_update`
validates the settings as a whole and saves them, and its errors are put back on the form.
"""

from __future__ import annotations

from typing import Any

from django import forms

from customers.models import ScoreCadence
from customers.scores.definitions import RFM_GROUPS, TIER_METRICS, TIER_PERIODS, UNSCORED_GROUP
from customers.scores.settings import LIMITS, WEEKDAY_NAMES, TierRuleInput

WEEKDAYS = list(WEEKDAY_NAMES)
GRID_CHOICES = [(name, label) for name, label in RFM_GROUPS if name != UNSCORED_GROUP]

_LABELS = {
    "at_risk_days": ("At risk after", "days without an order"),
    "dormant_days": ("Dormant after", "days without an order"),
    "window_days": ("Order window", "days (loyal and regular count orders within it)"),
    "regular_orders": ("Regular from", "orders in the window"),
    "loyal_orders": ("Loyal from", "orders in the window"),
    "tier_grace_days": ("Tier grace period", "days below a tier's threshold before a downgrade"),
}


def grid_field_name(recency: int, fm: int) -> str:
    return f"grid_r{recency}_fm{fm}"


class ScoreSettingsForm(forms.Form):
    """The thresholds, the cadence and the RFM grid (25 cells, rows R = 5..1)."""

    cadence = forms.ChoiceField(choices=ScoreCadence.choices, widget=forms.RadioSelect)
    weekday = forms.TypedChoiceField(choices=WEEKDAYS, coerce=int, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, (label, unit) in _LABELS.items():
            low, high = LIMITS[name]
            self.fields[name] = forms.IntegerField(
                label=label, help_text=unit, min_value=low, max_value=high
            )
        for recency in range(5, 0, -1):
            for fm in range(1, 6):
                self.fields[grid_field_name(recency, fm)] = forms.ChoiceField(
                    choices=GRID_CHOICES, label=f"R {recency}, FM {fm}"
                )

    def threshold_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in _LABELS]

    def grid_rows(self) -> list[tuple[int, list[forms.BoundField]]]:
        return [
            (recency, [self[grid_field_name(recency, fm)] for fm in range(1, 6)])
            for recency in range(5, 0, -1)
        ]

    def values(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            **{name: data[name] for name in _LABELS},
            "cadence": data["cadence"],
            "weekday": data.get("weekday") if data.get("weekday") is not None else 6,
        }

    def grid(self) -> list[list[str]]:
        return [
            [self.cleaned_data[grid_field_name(recency, fm)] for fm in range(1, 6)]
            for recency in range(5, 0, -1)
        ]

    @staticmethod
    def initial_for(settings_row: Any) -> dict[str, Any]:
        initial: dict[str, Any] = {name: getattr(settings_row, name) for name in _LABELS}
        initial["cadence"] = settings_row.cadence
        initial["weekday"] = settings_row.weekday
        for row, cells in enumerate(settings_row.rfm_grid):
            for column, name in enumerate(cells):
                initial[grid_field_name(5 - row, column + 1)] = name
        return initial


class TierRuleForm(forms.Form):
    """One tier and its threshold; a row left without a name is ignored, `remove` drops
    the rule (the tier itself stays, with its customers, until the computation)."""

    name = forms.CharField(max_length=100, required=False, label="Tier")
    rank = forms.IntegerField(min_value=0, max_value=1000, required=False, label="Rank")
    metric = forms.ChoiceField(choices=TIER_METRICS, label="Counts")
    period = forms.ChoiceField(choices=TIER_PERIODS, label="Over")
    threshold = forms.DecimalField(
        min_value=0, max_digits=14, decimal_places=2, required=False, label="From"
    )
    remove = forms.BooleanField(required=False, label="Remove")

    def rule(self) -> TierRuleInput | None:
        data = self.cleaned_data
        if not data or data.get("remove") or not (data.get("name") or "").strip():
            return None
        return TierRuleInput(
            name=data["name"].strip(),
            rank=data.get("rank") or 0,
            metric=data["metric"],
            period=data["period"],
            threshold=data.get("threshold"),
        )


TierRuleFormSet = forms.formset_factory(TierRuleForm, extra=2, max_num=50, validate_max=True)
