"""The `segment` criterion: membership in other segments of the same merchant."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from segments.criteria.base import (
    CHOICE_OPS,
    MATCH_NONE,
    CompileContext,
    Criterion,
    ValidationContext,
    clean_names,
    customers_in,
    distinct_names,
    register,
)
from segments.graph import Expansion, find_cycle, raw_segment_slugs
from segments.models import Segment, SegmentKind, SegmentMembership
from segments.rule_tree import Condition, RuleValidationError, key_path, shown

if TYPE_CHECKING:
    from customers.models import Merchant
    from segments.evaluate import Evaluator, Person

#: How deep segments may use segments that use segments (a chain of `segment` conditions).
MAX_SEGMENT_NESTING = 5
#: Conditions a tree amounts to once every segment it uses is counted with its own rules:
#: each use compiles that segment's rules again, so without a bound a few segments that
#: each use the previous one a hundred times would compile to millions of conditions.
MAX_EXPANDED_CONDITIONS = 1000


@register("segment")
class SegmentCriterion(Criterion):
    """Customer is (`in`) / is not (`not_in`) in any of the segments named by slug.

    A dynamic segment is compiled from its rules with the same `as_of` (so it is live and
    as-of-correct, not its last materialized membership); a manual segment reads its
    `SegmentMembership` rows. Slugs are looked up within the merchant only. A slug whose
    segment was deleted after validation matches nobody (`in`) / everybody (`not_in`).
    Never NULL: each part is a set membership or a compiled (two-valued) rule tree.
    """

    label = "segment"
    group = "Segments"
    ops = CHOICE_OPS

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        inside = ev.in_segments(condition.value, person)
        return inside if condition.op == "in" else not inside

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        others = Segment.objects.filter(merchant=merchant)
        if segment is not None:
            others = others.exclude(pk=segment.pk)
        return {"value": distinct_names(others, "slug")}

    def clean_value(self, op: str, value: Any) -> Any:
        return clean_names(value)

    def check(self, condition: Condition, path: str, ctx: ValidationContext) -> None:
        rows = Segment.objects.filter(merchant=ctx.merchant).values_list("slug", "kind", "rules")
        graph = {
            slug: (raw_segment_slugs(rules) if kind == SegmentKind.DYNAMIC else set())
            for slug, kind, rules in rows
        }
        dynamic = {slug: rules for slug, kind, rules in rows if kind == SegmentKind.DYNAMIC}
        own = ctx.segment.slug if ctx.segment is not None else None
        where = key_path(path, "value")
        for slug in condition.value:
            if slug not in graph:
                ctx.errors.append(f"{where}: {shown(slug)} is not a segment of this merchant")
            elif slug == own:
                ctx.errors.append(f"{where}: a segment cannot refer to itself ({shown(slug)})")
            elif cycle := find_cycle(slug, graph, own):
                chain = " -> ".join([own, *cycle] if own else cycle)
                ctx.errors.append(f"{where}: {shown(slug)} makes a cycle of segments ({chain})")
            else:
                conditions, nesting = Expansion(dynamic).of(slug)
                ctx.expanded_conditions.append(conditions if slug in dynamic else 0)
                if nesting + 1 > MAX_SEGMENT_NESTING:
                    ctx.errors.append(
                        f"{where}: using {shown(slug)} nests segments {nesting + 1} deep "
                        f"(segments that use segments nest at most {MAX_SEGMENT_NESTING} deep)"
                    )

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        if ctx.compile_rules is None:
            raise RuleValidationError(["segment: this evaluation cannot compile other segments"])
        q = MATCH_NONE
        # Scoped to the merchant: a slug never reaches another merchant's segment.
        for segment in Segment.objects.filter(merchant=ctx.merchant, slug__in=condition.value):
            if segment.kind != SegmentKind.DYNAMIC:
                members = SegmentMembership.objects.filter(segment=segment)
                q |= customers_in(members, "customer", ctx)
                continue
            if segment.slug in ctx.segment_stack:
                chain = " -> ".join([*ctx.segment_stack, segment.slug])
                raise RuleValidationError([f"segment: cycle of segments ({chain})"])
            inner = dataclasses.replace(ctx, segment_stack=(*ctx.segment_stack, segment.slug))
            q |= ctx.compile_rules(segment.rules, inner)
        return q if condition.op == "in" else ~q
