"""Score criteria: the values the last score computation stored on each customer's metrics
row (`customers.scores`, `shared/spec/customer-scores.md`): lifecycle stage, RFM, the
predictions (BG/NBD and Gamma-Gamma) and the smart segment. They read stored values, so
`as_of` does not recompute them; the lifecycle stage, the predictions and the smart segment
also follow every purchase.

Every class here is in the builder's "Scores" group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.db.models import F, Q, Subquery

from customers.models import ScoreSettings
from customers.scores.definitions import (
    RFM_GROUP_HELP,
    RFM_GROUP_LABELS,
    RFM_GROUP_NAMES,
    STAGE_DISPLAY_ORDER,
    STAGE_LABELS,
    UNSCORED_GROUP,
)
from customers.scores.smart import (
    NO_ORDER_SEGMENT,
    SMART_SEGMENT_LABELS,
    SMART_SEGMENT_NAMES,
    STEPS,
    SmartCutoffs,
    segment_rules,
    step_reason,
)
from segments.criteria.base import (
    ChoiceCriterion,
    CompileContext,
    NumberCriterion,
    clean_float,
    holds,
    register,
)
from segments.rule_tree import Condition

if TYPE_CHECKING:
    from customers.models import Merchant
    from segments.evaluate import Evaluator, Person
    from segments.models import Segment

GROUP = "Scores"
#: The merchant's score model (`ScoreSettings.model`) as "why in, why out" reads it.
SCORE_MODEL = "score_model"


class ScoreValueMixin:
    """Shows the customer's stored value in "why in, why out" (`explain_columns`)."""

    explain_columns: ClassVar[tuple[str, ...]]
    #: How a stored value reads (names to their wording); as it is when absent.
    value_labels: ClassVar[Mapping[str, str]] = {}

    def explain_value(self, values: Mapping[str, Any], condition: Condition) -> str:
        return f"this customer: {self.shown_value(values.get(self.explain_columns[0]), condition)}"

    def shown_value(self, value: Any, condition: Condition) -> str:
        return "none" if value is None else self.value_labels.get(value, str(value))


@register("lifecycle_stage")
class LifecycleStageCriterion(ScoreValueMixin, ChoiceCriterion):
    """Lifecycle stage is one of the names. No stage (no order) never matches `in` and
    always matches `not_in`: the column is tested IS NOT NULL first."""

    label = "lifecycle stage"
    group = GROUP
    choices = STAGE_DISPLAY_ORDER
    explain_columns = ("lifecycle_stage",)
    value_labels = STAGE_LABELS

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        return Q(lifecycle_stage__isnull=False) & Q(lifecycle_stage__in=names)

    def person_value(self, person: Person) -> str | None:
        return person.lifecycle_stage

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        from customers.scores.service import score_rules, score_settings_for

        definitions = score_rules(score_settings_for(merchant)).lifecycle.definitions()
        return {
            "value": list(self.choices or ()),
            "help": [f"{STAGE_LABELS[name]}: {definitions[name]}" for name in STAGE_DISPLAY_ORDER],
        }


@register("rfm_group")
class RfmGroupCriterion(ScoreValueMixin, ChoiceCriterion):
    """RFM group is one of the names. Never missing: a customer without scores (no order,
    or none at the last computation) is in `prospects`."""

    label = "RFM group"
    group = GROUP
    choices = RFM_GROUP_NAMES
    explain_columns = ("rfm_group",)
    value_labels = RFM_GROUP_LABELS

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        return Q(rfm_group__in=names)

    def person_value(self, person: Person) -> str | None:
        return person.rfm_group or UNSCORED_GROUP

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {
            "value": list(RFM_GROUP_NAMES),
            "help": [f"{RFM_GROUP_LABELS[n]}: {RFM_GROUP_HELP[n]}" for n in RFM_GROUP_NAMES],
        }


class StoredNumberCriterion(ScoreValueMixin, NumberCriterion):
    """A number the last computation stored in `column` of the metrics row. A customer
    without one (NULL: no order, no scores, no fit) never matches any comparison, `ne`
    included: the column is tested IS NOT NULL first, so the negation of the condition
    matches them."""

    group = GROUP
    column: ClassVar[str]

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        return Q(**{f"{self.column}__isnull": False}) & super().compile(condition, ctx)

    def value_expression(self, condition: Condition, ctx: CompileContext) -> F:
        return F(self.column)

    def person_number(self, condition: Condition, person: Person, ev: Evaluator) -> Any:
        return getattr(person, self.column)

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        if getattr(person, self.column) is None:
            return False
        return super().evaluate(condition, person, ev)


class RfmScoreCriterion(StoredNumberCriterion):
    """An RFM score, 1 to 5. A customer without scores never matches any comparison (`ne`
    included); the negation of the condition matches them (`StoredNumberCriterion`)."""

    maximum = 5


@register("rfm_recency")
class RfmRecencyCriterion(RfmScoreCriterion):
    """RFM recency score (5: bought most recently). See `RfmScoreCriterion` for NULLs."""

    label = "RFM recency score"
    column = "rfm_recency"
    explain_columns = ("rfm_recency",)


@register("rfm_frequency")
class RfmFrequencyCriterion(RfmScoreCriterion):
    """RFM frequency score (5: most orders). See `RfmScoreCriterion` for NULLs."""

    label = "RFM frequency score"
    column = "rfm_frequency"
    explain_columns = ("rfm_frequency",)


@register("rfm_monetary")
class RfmMonetaryCriterion(RfmScoreCriterion):
    """RFM monetary score (5: most spend). See `RfmScoreCriterion` for NULLs."""

    label = "RFM monetary score"
    column = "rfm_monetary"
    explain_columns = ("rfm_monetary",)


# -- smart segments ---------------------------------------------------------------------------


def decided_step(segment: str, orders: int) -> int:
    """The step of the smart segment rule (an index into `STEPS`) that gave `segment`: the
    segment's own step, except `lost`, which step 2 gives a one-order customer and step 3
    everyone else."""
    if segment == "lost":
        return 1 if orders == 1 else 3
    return next(index for index, (_, name) in enumerate(STEPS) if name == segment)


def smart_help(model: Mapping[str, Any] | None) -> list[str]:
    """Each smart segment's label and the rule's steps that give it, in words, with the
    merchant's cut-offs (`model`: its `ScoreSettings.model`)."""
    rules = segment_rules(model)
    return [f"{SMART_SEGMENT_LABELS[name]}: {rules[name]}" for name in SMART_SEGMENT_NAMES]


def score_model(merchant: Merchant) -> dict[str, Any]:
    """The merchant's score model (`ScoreSettings.model`), {} before any computation."""
    model = ScoreSettings.objects.filter(merchant=merchant).values_list("model", flat=True)
    return model.first() or {}


@register("smart_segment")
class SmartSegmentCriterion(ScoreValueMixin, ChoiceCriterion):
    """Smart segment is one of the ten names. Never missing: a customer without an order
    (or not scored yet) is in `waiting_first_order`, the column's default, so `not_in` is
    the exact complement of `in`."""

    label = "smart segment"
    group = GROUP
    choices = SMART_SEGMENT_NAMES
    explain_columns = ("smart_segment", "orders_count")
    value_labels = SMART_SEGMENT_LABELS

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        return Q(smart_segment__in=names)

    def person_value(self, person: Person) -> str | None:
        return person.smart_segment or NO_ORDER_SEGMENT

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {"value": list(SMART_SEGMENT_NAMES), "help": smart_help(score_model(merchant))}

    def explain_expressions(self, ctx: CompileContext) -> Mapping[str, Any]:
        # The merchant's own settings row (the current merchant's, not the customer's).
        rows = ScoreSettings.objects.filter(merchant=ctx.merchant).values("model")[:1]
        return {SCORE_MODEL: Subquery(rows)}

    def explain_value(self, values: Mapping[str, Any], condition: Condition) -> str:
        """The stored segment and the step of the rule that decided it, with the
        merchant's cut-offs: "this customer: Lost (step 3: P(alive) below 0.2)"."""
        segment = values.get("smart_segment") or ""
        if segment not in SMART_SEGMENT_LABELS:
            return f"this customer: {segment or 'none'}"
        model = values.get(SCORE_MODEL) or {}
        reason = step_reason(
            decided_step(segment, values.get("orders_count") or 0),
            SmartCutoffs.from_json(model.get("cutoffs")),
            fitted=model.get("bgnbd") is not None,
        )
        return f"this customer: {SMART_SEGMENT_LABELS[segment]} ({reason})"


# -- predictions ------------------------------------------------------------------------------


class PredictionCriterion(StoredNumberCriterion):
    """A model output stored as a float (`column`), compared with a float. No prediction
    (NULL: no order, or the merchant has no fit) never matches any comparison, `ne`
    included; the negation of the condition matches them (`StoredNumberCriterion`)."""

    step = "0.01"

    def clean_scalar(self, value: Any) -> float:
        if self.maximum is None:
            return clean_float(value)
        return clean_float(value, maximum=self.maximum)

    def shown_value(self, value: Any, condition: Condition) -> str:
        """Two decimals, or as many as it takes for the figure shown to compare with the
        condition's value as the stored one does (0.19996 is not shown as "0.20" next to
        "< 0.2")."""
        if value is None:
            return "none"
        op, threshold = condition.op, condition.value
        for places in (2, 4, 6):
            text = f"{value:.{places}f}"
            if holds(op, threshold, float(text)) == holds(op, threshold, value):
                return text
        return repr(value)


@register("p_alive")
class PAliveCriterion(PredictionCriterion):
    """P(alive), 0 to 1: the BG/NBD probability that the customer still buys. NULL (no
    order, or no fit) never matches, `ne` included; its negation does."""

    label = "P(alive)"
    column = "p_alive"
    explain_columns = ("p_alive",)
    maximum = 1
    unit = "(0 to 1)"


@register("churn_risk")
class ChurnRiskCriterion(PredictionCriterion):
    """Churn risk, 1 - P(alive), 0 to 1. NULL (no order, or no fit) never matches, `ne`
    included; its negation does."""

    label = "churn risk"
    column = "churn_risk"
    explain_columns = ("churn_risk",)
    maximum = 1
    unit = "(0 to 1)"


@register("expected_orders_90d")
class ExpectedOrdersCriterion(PredictionCriterion):
    """Expected orders in the next 90 days (BG/NBD), a fraction. NULL (no order, or no
    fit) never matches, `ne` included; its negation does."""

    label = "expected orders in the next 90 days"
    column = "expected_orders_90d"
    explain_columns = ("expected_orders_90d",)
    unit = "orders"
    step = "0.1"


@register("predicted_clv")
class PredictedClvCriterion(StoredNumberCriterion):
    """Predicted customer lifetime value: the next 365 days' expected orders times the
    expected order value (Gamma-Gamma), undiscounted, in the merchant's currency; money,
    compared as decimals. NULL (no order, or no fit) never matches, `ne` included; its
    negation does."""

    label = "predicted CLV"
    column = "predicted_clv"
    explain_columns = ("predicted_clv",)
    money = True
