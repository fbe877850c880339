"""The rule engine as the services see it: four functions, the only way the writes of the
segments app reach `segments.engine` and `segments.evaluate`.

They are public on purpose: tests of refreshes and memberships replace them (with
`monkeypatch.setattr(seams, "matching_queryset", ...)`) to test the writes without the
engine, and the engine's own tests test the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from customers.models import Merchant
from segments import engine
from segments.evaluate import Evaluator, SegmentRef, load_people
from segments.graph import raw_segment_slugs
from segments.models import (
    Segment,
    SegmentMembership,
)
from segments.rules import parse_rules

#: Which of some customers a segment's rules select (built by `evaluator`).
Evaluate = Callable[[Segment], set[int]]


def matching_queryset(segment: Segment, as_of: dt.datetime | None) -> QuerySet[Any]:
    """The rows of the segment's merchant its rules select at `as_of`, as a queryset whose
    primary key is the customer's id.

    The one place the full refresh gets a segment's compiled queryset from.
    """
    return engine.matching_rows(merchant=segment.merchant, rules=segment.rules, as_of=as_of)


def evaluation_settings() -> AbstractContextManager[None]:
    """The database settings the engine evaluates under (see `engine.evaluation_settings`)."""
    return engine.evaluation_settings()


def validate_rules(rules: Any, *, merchant: Merchant, segment: Segment | None) -> None:
    """Raise `segments.engine.RuleValidationError` unless `rules` is a valid tree."""
    engine.validate_rules(rules, merchant=merchant, segment=segment)


def evaluator(
    merchant: Merchant,
    segments: Collection[Segment],
    ids: Collection[int],
    as_of: dt.datetime | None,
) -> Evaluate:
    """A function telling which of the customers `ids` a segment's rules select.

    The customers' own rows are loaded once (`segments.evaluate.load_people`: three indexed
    queries) and every segment is evaluated in Python, which at a million customers costs a
    millisecond of database time where one compiled query for fifty segments costs 5 to 15
    ms (mostly planning). `segments` are all the merchant's segments, for rules that use
    other segments; the members of the manual ones among `ids` are read in one more query.
    """
    people = load_people(merchant, ids)
    refs = {segment.slug: segment for segment in segments}
    used = set().union(*(raw_segment_slugs(s.rules) for s in segments if s.is_dynamic))
    manual = [refs[slug].pk for slug in used if slug in refs and not refs[slug].is_dynamic]
    members: dict[int, set[int]] = {pk: set() for pk in manual}
    if manual:
        rows = SegmentMembership.objects.filter(segment_id__in=manual, customer_id__in=list(ids))
        for segment_id, customer_id in rows.values_list("segment_id", "customer_id"):
            members[segment_id].add(customer_id)
    evaluator = Evaluator(
        as_of or timezone.now(),
        merchant.tzinfo,
        {
            slug: SegmentRef(
                kind=segment.kind,
                rules=segment.rules,
                members=frozenset(members.get(segment.pk, ())),
            )
            for slug, segment in refs.items()
        },
    )

    def evaluate(segment: Segment) -> set[int]:
        tree = parse_rules(segment.rules)
        return {person.customer_id for person in people if evaluator.matches(tree, person)}

    return evaluate
