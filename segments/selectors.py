"""Reads for the segment pages.

Every function takes the current merchant and starts from that merchant's rows: this is where
the segment pages are scoped (see `customers.portal.tenancy`). Lookups by id go through
`segment_queryset(merchant=...)`, so another merchant's ids are simply not found (404).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from customers.compiled import CompiledQuery
from customers.models import Customer, Merchant
from customers.selectors import customer_search
from segments.criteria import REGISTRY
from segments.graph import users_of
from segments.models import (
    MembershipEvent,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentSizeSnapshot,
    SegmentVersion,
)


def segment_queryset(*, merchant: Merchant) -> QuerySet[Segment]:
    return Segment.objects.filter(merchant=merchant)


def segment_list(*, merchant: Merchant) -> QuerySet[Segment]:
    return segment_queryset(merchant=merchant).order_by("name")


def segment_members(*, segment: Segment, query: str = "") -> QuerySet[SegmentMembership]:
    """The segment's members with their customer and metrics (one query a page), those
    whose name, email, phone or external id contains `query` when given."""
    members = SegmentMembership.objects.filter(segment=segment)
    if query.strip():
        customers = customer_search(Customer.objects.filter(merchant_id=segment.merchant_id), query)
        members = members.filter(customer__in=customers.values("pk"))
    return members.select_related("customer", "customer__metrics").order_by("customer__external_id")


def segment_member_page(
    *, segment: Segment, after: int | None, limit: int
) -> list[tuple[int, str, dt.datetime]]:
    """Up to `limit` members after customer id `after` (None: from the first), by customer
    id: (customer id, external id, since). One statement with the id bound on both tables.

    TRICKY: bounded on the membership alone, PostgreSQL merge-joined the customers' primary
    key from its first row on (reading half a million index rows by the fiftieth page of a
    100,000-member segment); the same bound on `c.id` starts both at the cursor. Plain SQL
    and one array-free parameter list: the ORM spent longer preparing a thousand-id IN list
    than the database spent answering it."""
    membership, customers = SegmentMembership._meta.db_table, Customer._meta.db_table
    sql = (
        f"SELECT m.customer_id, c.external_id, m.since FROM {membership} m "
        f"JOIN {customers} c ON c.id = m.customer_id "
        "WHERE m.segment_id = %s AND m.customer_id > %s AND c.id > %s "
        "ORDER BY m.customer_id LIMIT %s"
    )
    bound = -1 if after is None else after
    with connection.cursor() as cursor:
        cursor.execute(sql, [segment.pk, bound, bound, limit])
        return [tuple(row) for row in cursor.fetchall()]


def segment_events(*, segment: Segment) -> QuerySet[MembershipEvent]:
    """The segment's entries and exits, newest first, with their customer."""
    return (
        MembershipEvent.objects.filter(segment=segment)
        .select_related("customer")
        .order_by("-occurred_at", "-pk")
    )


def segment_size_history(*, segment: Segment, days: int = 365) -> list[tuple[str, int]]:
    """(merchant-local day, member count) of the segment's daily snapshots, oldest first,
    over the last `days` days."""
    since = segment.merchant.today() - dt.timedelta(days=days)
    rows = SegmentSizeSnapshot.objects.filter(segment=segment, day__gte=since).order_by("day")
    return [(day.isoformat(), count) for day, count in rows.values_list("day", "member_count")]


def segment_versions(*, segment: Segment) -> QuerySet[SegmentVersion]:
    """Every saved version of the definition, newest first, with who saved it."""
    return SegmentVersion.objects.filter(segment=segment).select_related("created_by")


def merchant_customer(*, merchant: Merchant, external_id: str) -> Customer | None:
    return Customer.objects.filter(merchant=merchant, external_id=external_id.strip()).first()


#: How many customers a "why in, why out" search offers to pick from.
FIND_CUSTOMERS_LIMIT = 10


def find_customers(*, merchant: Merchant, query: str) -> list[Customer]:
    """The merchant's customers a person may mean by `query`: the one with that external id,
    else those whose name, email or phone contains it (at most `FIND_CUSTOMERS_LIMIT`)."""
    exact = merchant_customer(merchant=merchant, external_id=query)
    if exact is not None:
        return [exact]
    found = customer_search(customer_queryset(merchant=merchant), query)
    return list(found.order_by("last_name", "first_name", "pk")[:FIND_CUSTOMERS_LIMIT])


def customer_queryset(*, merchant: Merchant) -> QuerySet[Customer]:
    return Customer.objects.filter(merchant=merchant)


def customer_segments(*, customer: Customer) -> QuerySet[Segment]:
    """The segments the customer is a member of now (materialized memberships)."""
    return Segment.objects.filter(
        merchant_id=customer.merchant_id, memberships__customer=customer
    ).order_by("name")


SEGMENTS_OF_QUERY = CompiledQuery(
    lambda customer_id, merchant_id: (
        SegmentMembership.objects.filter(customer_id=customer_id, segment__merchant_id=merchant_id)
        .order_by("segment__name", "segment_id")
        .values_list("segment__slug", "segment__name", "since")
    ),
    customer_id=-7_000_000_021,
    merchant_id=-7_000_000_022,
)


def customer_segment_rows(
    *, customer_id: int, merchant_id: int
) -> list[tuple[str, str, dt.datetime]]:
    """The customer's current memberships as (slug, name, since) rows, by segment name, for
    the API's customer read: one prepared statement compiled once (`customers.compiled`)."""
    rows = SEGMENTS_OF_QUERY.rows(customer_id=customer_id, merchant_id=merchant_id)
    return [(slug, name, since) for slug, name, since in rows]


def active_dynamic_segments(*, merchant: Merchant) -> QuerySet[Segment]:
    return segment_queryset(merchant=merchant).filter(kind=SegmentKind.DYNAMIC, is_active=True)


def builder_options(
    *, merchant: Merchant, segment: Segment | None = None
) -> dict[str, dict[str, list[str]]]:
    """The merchant's own names for the builder's multi-selects, by field key: what each
    criterion's `options()` offers ("value", "products.<list>")."""
    return {
        key: criterion.options(merchant=merchant, segment=segment)
        for key, criterion in REGISTRY.items()
    }


# -- removal ---------------------------------------------------------------------------------

IN_USE_ERROR = '"{name}" is used by {users}; remove it from their rules first.'
USED_ELSEWHERE_ERROR = '"{name}" is used by {users}; take it out of them first.'

#: Uses of segments outside the segments app (offers, content blocks, campaigns): functions
#: that take segments of one merchant and return, for each segment they use, the names of
#: its users ('the offer "Spring sale"'). An app that aims things at segments registers
#: one in its `AppConfig.ready()`; this app imports none of them.
SegmentUsage = Callable[[Collection[Segment]], dict[int, list[str]]]
SEGMENT_USAGES: list[SegmentUsage] = []


def register_segment_usage(usage: SegmentUsage) -> SegmentUsage:
    """Add a use of segments that blocks their removal (a decorator; once per function)."""
    if usage not in SEGMENT_USAGES:
        SEGMENT_USAGES.append(usage)
    return usage


def segment_users(*, segments: Collection[Segment]) -> dict[int, list[Segment]]:
    """For each of `segments` (of one merchant), the other segments of the merchant whose
    rules use it (`{"field": "segment", ...}`). Other apps' uses: `SEGMENT_USAGES`."""
    if not segments:
        return {}
    merchant_id = next(iter(segments)).merchant_id
    dynamic = {
        other.slug: other
        for other in Segment.objects.filter(merchant_id=merchant_id, kind=SegmentKind.DYNAMIC)
    }
    users = users_of([s.slug for s in segments], {slug: s.rules for slug, s in dynamic.items()})
    return {
        segment.pk: sorted((dynamic[slug] for slug in users[segment.slug]), key=lambda u: u.name)
        for segment in segments
    }


@dataclass(frozen=True)
class RemovalPlan:
    """What removing some segments (of one merchant) would do, computed once for everyone
    who removes: the confirmation page, `services.segments_remove`, the admin and the API
    (like Django admin's `get_deleted_objects`).

    `blocked`: the segments that cannot go, each with the segments (not removed with it)
    whose rules use it. `members`, `events`, `versions`: the rows that go with them.
    """

    segments: tuple[Segment, ...]
    blocked: tuple[tuple[Segment, tuple[Segment, ...]], ...]
    members: int
    events: int
    versions: int
    #: The segments that other apps use (offers, content, campaigns), with their users.
    used_elsewhere: tuple[tuple[Segment, tuple[str, ...]], ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.blocked and not self.used_elsewhere

    def messages(self) -> list[str]:
        """One sentence per blocked segment, naming the segments (and the offers, content
        blocks or campaigns) that use it."""
        return [
            IN_USE_ERROR.format(
                name=segment.name, users=", ".join(f'"{user.name}"' for user in users)
            )
            for segment, users in self.blocked
        ] + [
            USED_ELSEWHERE_ERROR.format(name=segment.name, users=", ".join(users))
            for segment, users in self.used_elsewhere
        ]


def segment_removal_plan(*, segments: Collection[Segment]) -> RemovalPlan:
    """The `RemovalPlan` of removing `segments` together."""
    removing = {segment.pk for segment in segments}
    users = segment_users(segments=segments)
    blocked = []
    for segment in segments:
        others = tuple(u for u in users.get(segment.pk, []) if u.pk not in removing)
        if others:
            blocked.append((segment, others))
    elsewhere: dict[int, list[str]] = {}
    for usage in SEGMENT_USAGES:
        for pk, names in usage(segments).items():
            elsewhere.setdefault(pk, []).extend(names)
    ids = sorted(removing)
    return RemovalPlan(
        segments=tuple(segments),
        blocked=tuple(blocked),
        used_elsewhere=tuple(
            (segment, tuple(elsewhere[segment.pk]))
            for segment in segments
            if elsewhere.get(segment.pk)
        ),
        members=SegmentMembership.objects.filter(segment_id__in=ids).count(),
        events=MembershipEvent.objects.filter(segment_id__in=ids).count(),
        versions=SegmentVersion.objects.filter(segment_id__in=ids).count(),
    )


@dataclass(frozen=True)
class DiffLine:
    """One line of a definition diff: `kind` is "same", "added", "removed" or "hunk"."""

    kind: str
    text: str


def definition_text(*, name: str, description: str, rules: Any) -> list[str]:
    """A saved definition as lines to compare: name, description, then the rule JSON."""
    lines = [f"Name: {name}", f"Description: {description}", "Rules:"]
    if rules:
        lines += json.dumps(rules, indent=2, ensure_ascii=False, sort_keys=True).splitlines()
    else:
        lines.append("(none: a manual segment)")
    return lines


def version_diff(*, old: SegmentVersion, new: SegmentVersion) -> list[DiffLine]:
    """What changed from `old` to `new` (a unified diff of their definitions)."""
    before = definition_text(name=old.name, description=old.description, rules=old.rules)
    after = definition_text(name=new.name, description=new.description, rules=new.rules)
    lines = []
    for line in difflib.unified_diff(before, after, lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        kind = {"@": "hunk", "+": "added", "-": "removed"}.get(line[:1], "same")
        lines.append(DiffLine(kind=kind, text=line))
    return lines
