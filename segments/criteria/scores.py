"""Score criteria: the values the last score computation stored on each customer's metrics
row (`customers.scores`, `shared/spec/customer-scores.md`). They read stored values, so
`as_of` does not recompute them; the lifecycle stage also follows every purchase.

Every class here is in the builder's "Scores" group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.db.models import F, Q

from customers.scores.definitions import (
    RFM_GROUP_HELP,
    RFM_GROUP_LABELS,
    RFM_GROUP_NAMES,
    STAGE_DISPLAY_ORDER,
    STAGE_LABELS,
    UNSCORED_GROUP,
)
from segments.criteria.base import (
    ChoiceCriterion,
    CompileContext,
    NumberCriterion,
    register,
)
from segments.rule_tree import Condition

if TYPE_CHECKING:
    from customers.models import Merchant
    from segments.evaluate import Evaluator, Person
    from segments.models import Segment

GROUP = "Scores"


class ScoreValueMixin:
    """Shows the customer's stored value in "why in, why out" (`explain_columns`)."""

    explain_columns: ClassVar[tuple[str, ...]]
    #: How a stored value reads (names to their wording); as it is when absent.
    value_labels: ClassVar[Mapping[str, str]] = {}

    def explain_value(self, values: Mapping[str, Any]) -> str:
        value = values.get(self.explain_columns[0])
        shown = "none" if value is None else self.value_labels.get(value, str(value))
        return f"this customer: {shown}"


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


class RfmScoreCriterion(ScoreValueMixin, NumberCriterion):
    """An RFM score, 1 to 5. A customer without scores never matches any comparison (`ne`
    included); the negation of the condition matches them."""

    group = GROUP
    maximum = 5
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
