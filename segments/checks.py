"""System checks: every registered rule field is complete, or the project does not start.

A criterion (`segments.criteria`) is the one home of its field: validation, SQL, Python
evaluation and the builder's widget and options. A field that lacked its Python evaluation
used to be skipped by incremental updates (members stale until the next full refresh); one
without a widget could not be edited. `manage.py check` (and so `runserver`, `migrate`, the
test run) fails with an error naming the field and what it lacks.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from segments.criteria import REGISTRY, Criterion
from segments.criteria.base import (
    FIELD_GROUPS,
    WIDGET_KINDS,
    ChoiceCriterion,
    NumberCriterion,
    TimeCriterion,
)

#: A family's default evaluate() -> (the unimplemented hook it calls, the hook's name).
_FAMILY_HOOKS: dict[Any, tuple[Any, str]] = {
    NumberCriterion.evaluate: (NumberCriterion.person_number, "person_number"),
    TimeCriterion.evaluate: (TimeCriterion.person_instant, "person_instant"),
    ChoiceCriterion.evaluate: (ChoiceCriterion.person_value, "person_value"),
}


def _offers_names(criterion: Criterion) -> bool:
    """Does the field offer names to pick from (its own options(), or a choice field's
    fixed `choices`)?"""
    options = type(criterion).options
    if options is Criterion.options:
        return False
    if options is ChoiceCriterion.options:
        return bool(getattr(criterion, "choices", None))
    return True


def criterion_errors(key: str, criterion: Criterion) -> list[Error]:
    """What a registered criterion lacks, as check errors."""
    errors: list[Error] = []
    name = type(criterion).__name__

    def error(code: str, message: str, hint: str) -> None:
        errors.append(
            Error(f"rule field {key!r} ({name}): {message}", hint=hint, obj=name, id=code)
        )

    evaluate = type(criterion).evaluate
    hook = _FAMILY_HOOKS.get(evaluate)
    if evaluate is Criterion.evaluate or (
        hook is not None and getattr(type(criterion), hook[1]) is hook[0]
    ):
        error(
            "segments.E001",
            "no Python evaluation (evaluate())",
            "Incremental updates evaluate every field in Python: implement evaluate(), or the "
            "family hook its evaluate() calls (person_number, person_instant, person_value).",
        )
    for op in criterion.ops:
        try:
            kind = criterion.widget(op)
        except Exception as exc:
            error("segments.E002", f"widget({op!r}) fails: {exc}", "Return one of WIDGET_KINDS.")
            continue
        if kind not in WIDGET_KINDS:
            error(
                "segments.E002",
                f"widget({op!r}) is {kind!r}, not a widget the builder knows",
                f"Return one of {', '.join(sorted(WIDGET_KINDS))}.",
            )
        elif kind == "names" and not _offers_names(criterion):
            error(
                "segments.E003",
                f"operator {op!r} shows a list of names but the field offers none (options())",
                "Implement options() with the merchant's names (or `choices` on a choice field).",
            )
    if criterion.group not in FIELD_GROUPS:
        error(
            "segments.E004",
            f"group {criterion.group!r} is not one of the builder's groups",
            f"Set `group` to one of {', '.join(FIELD_GROUPS)}.",
        )
    return errors


@register()
def check_rule_fields(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every registered rule field compiles, evaluates, has a widget per operator, offers
    names where it shows a list, and sits in a builder group."""
    errors: list[Error] = []
    for key, criterion in REGISTRY.items():
        errors += criterion_errors(key, criterion)
    return errors
