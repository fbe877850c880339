"""The `segment` criterion: membership in other segments of the same merchant."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db.models import Q

from segments.criteria.base import (
    CHOICE_OPS,
    MATCH_NONE,
    CompileContext,
    Criterion,
    ValidationContext,
    clean_names,
    customers_in,
    register,
)
from segments.models import Segment, SegmentKind, SegmentMembership
from segments.rules import Condition, RuleValidationError, key_path, raw_segment_slugs


def find_cycle(start: str, graph: dict[str, set[str]], target: str | None) -> list[str] | None:
    """A path of slugs from `start` back to `target` (or to any slug already on the path)."""
    stack: list[str] = []

    def visit(slug: str) -> list[str] | None:
        if slug == target or slug in stack:
            return [*stack, slug]
        stack.append(slug)
        for ref in sorted(graph.get(slug, ())):
            found = visit(ref)
            if found:
                return found
        stack.pop()
        return None

    return visit(start)


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
    ops = CHOICE_OPS

    def clean_value(self, op: str, value: Any) -> Any:
        return clean_names(value)

    def check(self, condition: Condition, path: str, ctx: ValidationContext) -> None:
        rows = Segment.objects.filter(merchant=ctx.merchant).values_list("slug", "kind", "rules")
        graph = {
            slug: (raw_segment_slugs(rules) if kind == SegmentKind.DYNAMIC else set())
            for slug, kind, rules in rows
        }
        own = ctx.segment.slug if ctx.segment is not None else None
        where = key_path(path, "value")
        for slug in condition.value:
            if slug not in graph:
                ctx.errors.append(f'{where}: "{slug}" is not a segment of this merchant')
            elif slug == own:
                ctx.errors.append(f'{where}: a segment cannot refer to itself ("{slug}")')
            elif cycle := find_cycle(slug, graph, own):
                chain = " -> ".join([own, *cycle] if own else cycle)
                ctx.errors.append(f'{where}: "{slug}" makes a cycle of segments ({chain})')

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        from segments.engine import compile_tree
        from segments.rules import parse_rules

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
            q |= compile_tree(parse_rules(segment.rules), inner)
        return q if condition.op == "in" else ~q
