"""A stand-in for the rule engine, so the refresh tests do not depend on it.

It reads the contract's shape but understands only what these tests need:
`total_spend gte N` (on the metrics table), `segment in [slugs]` (membership of other
segments of the merchant) and a `"field": "broken"` condition that fails like rules whose
referenced segment was deleted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from customers.models import Customer
from segments.models import Segment, SegmentKind, SegmentMembership
from segments.services import seams


class FakeRuleError(ValueError):
    pass


def spend_rules(minimum: int | str) -> dict[str, Any]:
    return {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": minimum}]}


def segment_rules(*slugs: str, minimum: int | None = None) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [{"field": "segment", "op": "in", "value": list(slugs)}]
    if minimum is not None:
        conditions.append({"field": "total_spend", "op": "gte", "value": minimum})
    return {"match": "all", "conditions": conditions}


BROKEN_RULES = {"match": "all", "conditions": [{"field": "broken", "op": "in", "value": ["x"]}]}


def fake_matching(segment: Segment, as_of: Any, customer_ids: Any = None) -> Any:
    queryset = Customer.objects.filter(merchant=segment.merchant)
    if customer_ids is not None:
        queryset = queryset.filter(pk__in=list(customer_ids))
    for condition in segment.rules.get("conditions", []):
        if condition["field"] == "total_spend":
            queryset = queryset.filter(metrics__net_spend__gte=Decimal(str(condition["value"])))
        elif condition["field"] == "segment":
            members = SegmentMembership.objects.filter(
                segment__merchant=segment.merchant, segment__slug__in=condition["value"]
            )
            queryset = queryset.filter(pk__in=members.values("customer_id"))
        else:
            raise FakeRuleError('conditions[0].value: there is no segment "gone"')
    return queryset


def fake_evaluator(merchant: Any, segments: Any, ids: Any, as_of: Any) -> Any:
    """What `seams.evaluator` returns, answered by `fake_matching`."""

    def evaluate(segment: Segment) -> set[int]:
        return set(fake_matching(segment, as_of, ids).values_list("pk", flat=True))

    return evaluate


def fake_validate(rules: Any, *, merchant: Any, segment: Any) -> None:
    if not rules or not rules.get("conditions"):
        raise FakeRuleError("conditions: a group has 1 to 50 nodes")


def install_fake_engine(monkeypatch: Any) -> None:
    """Replace the engine behind the services' public seams (`segments.services.seams`)."""
    monkeypatch.setattr(seams, "matching_queryset", fake_matching)
    monkeypatch.setattr(seams, "evaluator", fake_evaluator)
    monkeypatch.setattr(seams, "validate_rules", fake_validate)


def make_segment(merchant: Any, slug: str, rules: dict[str, Any] | None = None, **kwargs: Any):
    """A segment row as it would be after `segment_create`, without enqueuing anything."""
    kind = kwargs.pop("kind", SegmentKind.DYNAMIC)
    return Segment.objects.create(
        merchant=merchant,
        name=kwargs.pop("name", slug.replace("-", " ").title()),
        slug=slug,
        kind=kind,
        rules=rules
        if rules is not None
        else ({} if kind == SegmentKind.MANUAL else spend_rules(100)),
        **kwargs,
    )
