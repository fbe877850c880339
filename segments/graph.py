"""Segments that use segments: the dependency graph, in one place.

A dynamic segment's rules may use other segments of the merchant (`{"field": "segment",
"value": [slugs]}`). Validation refuses cycles, chains deeper than 5 and trees that amount
to more than 1,000 conditions once the segments they use are counted in (the `segment`
criterion asks `find_cycle` and `Expansion`); refreshes run in dependency order
(`dependency_order`); incremental updates run in waves (`dependency_waves`); removing a
segment another one uses is refused (`segments.selectors.segment_removal_plan`).

Everything here reads stored, possibly unvalidated rule JSON, so it tolerates any shape and
never raises on it. Pure: no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from segments.rules import count_raw_conditions

if TYPE_CHECKING:
    from segments.models import Segment


def raw_segment_slugs(data: object) -> set[str]:
    """Slugs named by `segment` conditions of an unvalidated tree (tolerates any shape)."""
    return {slug for used in segment_uses(data) for slug in used}


def segment_uses(rules: Any) -> list[list[str]]:
    """The slug lists of each `segment` condition of an unvalidated tree (one per use),
    walked without recursion."""
    uses: list[list[str]] = []
    stack = [rules]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if node.get("field") == "segment" and isinstance(node.get("value"), list):
            uses.append(sorted({v.strip() for v in node["value"] if isinstance(v, str)}))
        nodes = node.get("conditions")
        if isinstance(nodes, list):
            stack.extend(nodes)
    return uses


def find_cycle(start: str, graph: Mapping[str, set[str]], target: str | None) -> list[str] | None:
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


class Expansion:
    """Conditions and nesting of the merchant's segments once the segments they use are
    counted in (memoised over one validation; cycles are reported before this is asked).
    `rules` maps the slugs of the dynamic segments to their rules."""

    def __init__(self, rules: Mapping[str, Any]) -> None:
        self.rules = rules
        self.memo: dict[str, tuple[int, int]] = {}

    def of(self, slug: str, seen: frozenset[str] = frozenset()) -> tuple[int, int]:
        """(conditions, nesting) of one segment; a dynamic segment nests 1 + what it uses."""
        if slug in self.memo:
            return self.memo[slug]
        rules = self.rules.get(slug)
        if rules is None or slug in seen:
            return (1, 0)
        conditions, nesting = count_raw_conditions(rules), 1
        for used in segment_uses(rules):
            for ref in used:
                sub_conditions, sub_nesting = self.of(ref, seen | {slug})
                conditions += sub_conditions
                nesting = max(nesting, 1 + sub_nesting)
        self.memo[slug] = (conditions, nesting)
        return self.memo[slug]


def dependency_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Order the nodes of `{slug: slugs it uses}` so each comes after the ones it uses.

    Deterministic (ties by slug). References to slugs not in the graph are ignored. Cycle
    safe: the rule engine refuses cycles, but should one exist its members come last, in
    slug order, instead of looping or being dropped.
    """
    uses = {node: {d for d in deps if d in graph and d != node} for node, deps in graph.items()}
    users: dict[str, set[str]] = {node: set() for node in uses}
    for node, deps in uses.items():
        for dep in deps:
            users[dep].add(node)
    waiting = {node: len(deps) for node, deps in uses.items()}
    ready = sorted(node for node, count in waiting.items() if count == 0)
    ordered: list[str] = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for user in sorted(users[node]):
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
        ready.sort()
    done = set(ordered)
    ordered.extend(sorted(node for node in uses if node not in done))
    return ordered


def segments_in_dependency_order(segments: list[Segment]) -> list[Segment]:
    """The segments (of one merchant) in `dependency_order` of their rules."""
    by_slug = {s.slug: s for s in segments}
    graph = {segment.slug: raw_segment_slugs(segment.rules) for segment in segments}
    return [by_slug[slug] for slug in dependency_order(graph)]


def dependency_waves(segments: list[Segment]) -> list[list[Segment]]:
    """Segments grouped so each group uses only segments of earlier groups: the first holds
    the segments that use no other segment (usually all of them)."""
    by_slug = {segment.slug: segment for segment in segments}
    level: dict[str, int] = {}

    def depth(slug: str, seen: frozenset[str]) -> int:
        if slug not in level:
            used = [
                s for s in raw_segment_slugs(by_slug[slug].rules) if s in by_slug and s not in seen
            ]
            level[slug] = 1 + max((depth(s, seen | {slug}) for s in used), default=-1)
        return level[slug]

    waves: dict[int, list[Segment]] = {}
    for segment in segments:
        waves.setdefault(depth(segment.slug, frozenset()), []).append(segment)
    return [waves[k] for k in sorted(waves)]


def users_of(slugs: Iterable[str], rules_by_slug: Mapping[str, Any]) -> dict[str, list[str]]:
    """For each of `slugs`, the other slugs of `rules_by_slug` whose rules use it."""
    wanted = set(slugs)
    users: dict[str, list[str]] = {slug: [] for slug in wanted}
    for other, rules in sorted(rules_by_slug.items()):
        for slug in raw_segment_slugs(rules) & wanted:
            if slug != other:
                users[slug].append(other)
    return users
