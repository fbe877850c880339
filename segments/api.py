"""The segments app's JSON API router (mounted under `/api/v1/` by `config/api.py`).

Segments are read and written through `segments.selectors` and `segments.services` (the
versions, guards and removal plan the portal goes through); rules are checked and counted by
`segments.engine`, as the builder does. Every query starts from the token's merchant's
segments (`_segment`), so another merchant's slug answers 404.

A rule tree's problems come back one error each, with the rule path the engine names
(`rules.conditions[0].value`), in the API's error shape.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any, Literal
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from customers.models import Merchant
from customers.portal.api import AUTH_ERRORS, WRITE, ErrorsOut, api_merchant, errors_body
from segments import engine, selectors, services
from segments.models import MembershipEventKind, MembershipReason, Segment, SegmentKind
from segments.rule_tree import ROOT_PATH, RuleValidationError

router = Router(tags=["segments"])

SEGMENT_PATH = "/segments/{slug}"

PREVIEW_TIMEOUT_ERROR = (
    "Counting these rules took longer than {seconds:g} s and was stopped; simplify them."
)

#: `ordering` values and the columns they sort by (the list page's sortable columns, with
#: the name as tie-breaker so a page order is stable).
ORDERINGS: dict[str, tuple[str, ...]] = {
    "name": ("name", "pk"),
    "-name": ("-name", "-pk"),
    "member_count": ("member_count", "name", "pk"),
    "-member_count": ("-member_count", "name", "pk"),
    "updated": ("updated_at", "pk"),
    "-updated": ("-updated_at", "-pk"),
}
Ordering = Literal["name", "-name", "member_count", "-member_count", "updated", "-updated"]


class SegmentOut(Schema):
    slug: str
    name: str
    description: str
    kind: str
    is_active: bool
    rules: dict[str, Any]
    definition_version: int
    member_count: int
    last_refreshed_at: dt.datetime | None
    refresh_status: str
    last_refresh_error: str
    created_at: dt.datetime
    updated_at: dt.datetime


class SegmentListOut(Schema):
    items: list[SegmentOut]


class SegmentIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str
    slug: str | None = None
    description: str = ""
    kind: Literal["dynamic", "manual"]
    rules: dict[str, Any] | None = None


class SegmentPatch(Schema):
    """The fields to change; those left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    rules: dict[str, Any] | None = None
    is_active: bool | None = None


class SegmentFilters(Schema):
    kind: Literal["dynamic", "manual"] | None = None
    active: bool | None = None
    #: Name or description contains (case-insensitive), as the list page's search box.
    q: str | None = None
    ordering: Ordering = "name"


class PreviewIn(Schema):
    model_config = ConfigDict(extra="forbid")

    rules: dict[str, Any]


class FunnelStepOut(Schema):
    path: str
    label: str
    count: int
    cumulative: int


class PreviewOut(Schema):
    count: int
    funnel: list[FunnelStepOut] | None = None


def _segment(merchant: Merchant, slug: str) -> Segment:
    # The merchant's own segments only: another merchant's slug is not found.
    if "\x00" in slug:
        # No slug holds NUL (the services refuse it); PostgreSQL cannot even compare it.
        raise Http404
    segment = selectors.segment_queryset(merchant=merchant).filter(slug=slug).first()
    if segment is None:
        raise Http404
    return segment


def _rule_errors(exc: RuleValidationError) -> Status:
    """The engine's "path: message" lines as the API's errors (422)."""
    # The engine's paths start inside the tree ("conditions[0].value"); the tree is the
    # body's `rules`, so the API's paths start there ("rules.conditions[0].value").
    items = []
    for error in exc.errors:
        path, sep, message = error.partition(": ")
        if not sep:
            path, message = ROOT_PATH, error
        elif path != ROOT_PATH and not path.startswith(ROOT_PATH + "."):
            path = f"{ROOT_PATH}.{path}"
        items.append((path, message))
    return Status(422, errors_body(*items))


def _filtered(queryset: QuerySet[Segment], filters: SegmentFilters) -> QuerySet[Segment]:
    if filters.kind:
        queryset = queryset.filter(kind=filters.kind)
    if filters.active is not None:
        queryset = queryset.filter(is_active=filters.active)
    query = (filters.q or "").strip()
    if query:
        queryset = queryset.filter(Q(name__icontains=query) | Q(description__icontains=query))
    return queryset.order_by(*ORDERINGS[filters.ordering])


@router.get(
    "/segments",
    response={200: SegmentListOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="List the merchant's segments",
)
def segment_list(request: HttpRequest, filters: Query[SegmentFilters]) -> Any:
    merchant = api_merchant(request)
    return {"items": list(_filtered(selectors.segment_list(merchant=merchant), filters))}


@router.post(
    "/segments",
    auth=WRITE,
    response={201: SegmentOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Create a segment",
)
def segment_post(request: HttpRequest, payload: SegmentIn) -> Any:
    """A dynamic segment's rules are validated as the builder validates them (errors name
    the rule path) and its first refresh is queued; a manual segment has no rules."""
    try:
        segment = services.segment_create(
            merchant=api_merchant(request),
            name=payload.name,
            slug=payload.slug or None,
            description=payload.description,
            kind=payload.kind,
            rules=payload.rules,
        )
    except RuleValidationError as exc:
        return _rule_errors(exc)
    return Status(201, segment)


@router.post(
    "/segments/preview",
    response={200: PreviewOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Count the customers a rule tree matches",
)
def segment_preview(request: HttpRequest, payload: PreviewIn, funnel: bool = False) -> Any:
    """The builder's live count: the count, and with `funnel=1` the per-condition funnel
    (each top-level condition alone and cumulatively). Stopped after the builder's time
    limit. Reads only, so a read token may call it."""
    merchant = api_merchant(request)
    try:
        tree = engine.validate_rules(payload.rules, merchant=merchant)
    except RuleValidationError as exc:
        return _rule_errors(exc)
    limit_ms = settings.SEGMENT_LIVE_COUNT_TIMEOUT_MS
    try:
        with engine.time_limit(limit_ms):
            if funnel:
                count, steps = engine.count_with_funnel(merchant=merchant, rules=tree)
                return {"count": count, "funnel": steps}
            return {"count": engine.count_matching(merchant=merchant, rules=tree)}
    except engine.EvaluationTimeout:
        message = PREVIEW_TIMEOUT_ERROR.format(seconds=limit_ms / 1000)
        return Status(422, errors_body(("rules", message)))


@router.get(
    SEGMENT_PATH,
    response={200: SegmentOut, 404: ErrorsOut, **AUTH_ERRORS},
    summary="Read a segment",
)
def segment_get(request: HttpRequest, slug: str) -> Any:
    return _segment(api_merchant(request), slug)


@router.patch(
    SEGMENT_PATH,
    auth=WRITE,
    response={200: SegmentOut, 404: ErrorsOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Change a segment",
)
def segment_patch(request: HttpRequest, slug: str, payload: SegmentPatch) -> Any:
    """A new name, description or rules is a new definition version; new rules (or
    re-activation) queue a refresh, which makes a refresh in flight discard its result."""
    segment = _segment(api_merchant(request), slug)
    changes = payload.model_dump(exclude_unset=True)
    for field in ("name", "description", "is_active"):
        if field in changes and changes[field] is None:
            return Status(422, errors_body((field, "This field may not be null.")))
    try:
        return services.segment_update(segment=segment, **changes)
    except RuleValidationError as exc:
        return _rule_errors(exc)


@router.delete(
    SEGMENT_PATH,
    auth=WRITE,
    response={204: None, 404: ErrorsOut, 409: ErrorsOut, **AUTH_ERRORS},
    summary="Remove a segment",
)
def segment_delete(request: HttpRequest, slug: str) -> Any:
    """Removes the segment with its members and history; refused (409) while another
    segment uses it in its rules, naming them."""
    segment = _segment(api_merchant(request), slug)
    try:
        services.segments_remove(segments=[segment])
    except services.SegmentInUseError as exc:
        return Status(409, errors_body(*(("", message) for message in exc.messages)))
    return Status(204, None)


# -- members --------------------------------------------------------------------------------

MEMBERS_PATH = SEGMENT_PATH + "/members"
BAD_CURSOR_ERROR = "Not a cursor of this list: pass the `next` URL as it was given."
EVENT_NAMES: dict[str, str] = {
    MembershipEventKind.ENTRY: "entered",
    MembershipEventKind.EXIT: "exited",
}
#: A cursor's kind: members are paged by customer id, events by event id.
_MEMBERS_CURSOR, _EVENTS_CURSOR = "m", "e"


class MembersQuery(Schema):
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None
    #: An instant; without an offset it is the merchant's local time.
    changed_since: dt.datetime | None = None


class MemberOut(Schema):
    external_id: str
    since: dt.datetime


class MemberEventOut(Schema):
    external_id: str
    event: Literal["entered", "exited"]
    at: dt.datetime


class MembersOut(Schema):
    items: list[MemberOut]
    next: str | None


class MemberEventsOut(Schema):
    items: list[MemberEventOut]
    next: str | None


def _cursor(kind: str, last_id: int) -> str:
    """Opaque to clients: the kind of list and the last id it gave, base64url."""
    return base64.urlsafe_b64encode(f"{kind}{last_id}".encode()).decode().rstrip("=")


def _after(kind: str, cursor: str | None) -> int | None:
    """The id a cursor of `kind` ends at (None: the first page); ValueError if not one."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(cursor) from exc
    if not text.startswith(kind) or not text[1:].isdigit():
        raise ValueError(cursor)
    return int(text[1:])


def _next_url(request: HttpRequest, query: MembersQuery, cursor: str) -> str:
    params = {"limit": str(query.limit), "cursor": cursor}
    if query.changed_since is not None:
        params["changed_since"] = query.changed_since.isoformat()
    return request.build_absolute_uri(f"{request.path}?{urlencode(params)}")


@router.get(
    MEMBERS_PATH,
    response={200: MembersOut | MemberEventsOut, 404: ErrorsOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Page through a segment's members, or its entries and exits since an instant",
)
def segment_members_get(request: HttpRequest, slug: str, query: Query[MembersQuery]) -> Any:
    """Members ordered by customer id, `limit` a page (1 to 1,000, default 100), `next` the
    URL of the page after (null on the last). The cursor is the last customer id given, so a
    member that joins or leaves between pages neither shifts nor repeats the others.

    With `changed_since`, the entries and exits since that instant instead, oldest first,
    paged by event id the same way (events are only ever appended)."""
    merchant = api_merchant(request)
    segment = _segment(merchant, slug)
    kind = _MEMBERS_CURSOR if query.changed_since is None else _EVENTS_CURSOR
    try:
        after = _after(kind, query.cursor)
    except ValueError:
        return Status(422, errors_body(("cursor", BAD_CURSOR_ERROR)))
    items: list[dict[str, Any]]
    if query.changed_since is None:
        rows = selectors.segment_member_page(segment=segment, after=after, limit=query.limit + 1)
        items = [{"external_id": ext, "since": since} for _, ext, since in rows[: query.limit]]
        last = rows[query.limit - 1][0] if len(rows) > query.limit else None
    else:
        since = query.changed_since
        if timezone.is_naive(since):
            since = timezone.make_aware(since, merchant.tzinfo)
        events = (
            selectors.segment_events(segment=segment).filter(occurred_at__gte=since).order_by("pk")
        )
        if after is not None:
            events = events.filter(pk__gt=after)
        event_rows = list(
            events.values_list("pk", "customer__external_id", "kind", "occurred_at")[
                : query.limit + 1
            ]
        )
        items = [
            {"external_id": ext, "event": EVENT_NAMES[event_kind], "at": at}
            for _, ext, event_kind, at in event_rows[: query.limit]
        ]
        last = event_rows[query.limit - 1][0] if len(event_rows) > query.limit else None
    next_url = _next_url(request, query, _cursor(kind, last)) if last is not None else None
    # TRICKY: answered as JSON directly, not through the response schema: validating a
    # thousand items against it took longer than reading them (17 ms a page). The encoder is
    # the one ninja uses (Django's), so the answer is the same; the schema still documents it.
    return JsonResponse({"items": items, "next": next_url})


# -- third-party sourcing of manual segments ------------------------------------------------

#: The reason on the entry and exit events the API's member writes make.
API_REASON = MembershipReason.API
NOT_MANUAL_API_ERROR = (
    "This is a dynamic segment: its rules decide its members. Only a manual segment's "
    "members are set through the API."
)
MAX_EXTERNAL_IDS = 100_000


class ExternalIdsIn(Schema):
    model_config = ConfigDict(extra="forbid")

    external_ids: list[str] = Field(..., max_length=MAX_EXTERNAL_IDS)


class MembersChangeOut(Schema):
    added: int
    removed: int
    #: The external ids no customer of the merchant has, in the order given (nothing was
    #: done with them).
    unknown: list[str]


def _manual(request: HttpRequest, slug: str) -> Segment | Status:
    segment = _segment(api_merchant(request), slug)
    if segment.kind != SegmentKind.MANUAL:
        return Status(409, errors_body(("", NOT_MANUAL_API_ERROR)))
    return segment


def _resolve(merchant: Merchant, external_ids: list[str]) -> tuple[dict[str, int], list[str]]:
    """The merchant's customer ids of these external ids, and the unknown ones (each once,
    in the order given)."""
    wanted = list(dict.fromkeys(external_ids))
    # An id holding NUL is unknown (no stored id holds one), and PostgreSQL cannot even
    # compare it: it is left out of the lookup, and reported with the other unknown ones.
    lookup = [external_id for external_id in wanted if "\x00" not in external_id]
    known: dict[str, int] = {}
    customers = selectors.customer_queryset(merchant=merchant)
    for start in range(0, len(lookup), services.ID_BATCH):
        batch = lookup[start : start + services.ID_BATCH]
        known.update(customers.filter(external_id__in=batch).values_list("external_id", "pk"))
    return known, [external_id for external_id in wanted if external_id not in known]


MEMBERS_WRITE_RESPONSES: dict[int, Any] = {
    200: MembersChangeOut,
    404: ErrorsOut,
    409: ErrorsOut,
    422: ErrorsOut,
    **AUTH_ERRORS,
}


@router.put(
    MEMBERS_PATH,
    auth=WRITE,
    response=MEMBERS_WRITE_RESPONSES,
    summary="Replace a manual segment's members",
)
def segment_members_put(request: HttpRequest, slug: str, payload: ExternalIdsIn) -> Any:
    """The listed customers become the members (a third-party system sourcing the segment):
    those not in it enter, members not listed leave. Unknown ids are reported and change
    nothing; the known ones are applied."""
    segment = _manual(request, slug)
    if isinstance(segment, Status):
        return segment
    known, unknown = _resolve(segment.merchant, payload.external_ids)
    change = services.segment_members_replace(
        segment=segment, customers=list(known.values()), reason=API_REASON
    )
    return {"added": len(change.entered), "removed": len(change.exited), "unknown": unknown}


@router.post(
    MEMBERS_PATH,
    auth=WRITE,
    response=MEMBERS_WRITE_RESPONSES,
    summary="Add customers to a manual segment",
)
def segment_members_post(request: HttpRequest, slug: str, payload: ExternalIdsIn) -> Any:
    """Members already in it stay as they are; unknown ids are reported."""
    segment = _manual(request, slug)
    if isinstance(segment, Status):
        return segment
    known, unknown = _resolve(segment.merchant, payload.external_ids)
    change = services.segment_members_add(
        segment=segment, customers=list(known.values()), reason=API_REASON
    )
    return {"added": len(change.entered), "removed": 0, "unknown": unknown}


@router.delete(
    MEMBERS_PATH,
    auth=WRITE,
    response=MEMBERS_WRITE_RESPONSES,
    summary="Remove customers from a manual segment",
)
def segment_members_delete(request: HttpRequest, slug: str, payload: ExternalIdsIn) -> Any:
    """Customers who are not members are left alone; unknown ids are reported."""
    segment = _manual(request, slug)
    if isinstance(segment, Status):
        return segment
    known, unknown = _resolve(segment.merchant, payload.external_ids)
    change = services.segment_members_remove(
        segment=segment, customers=list(known.values()), reason=API_REASON
    )
    return {"added": 0, "removed": len(change.exited), "unknown": unknown}


# -- why in, why out ------------------------------------------------------------------------


class ConditionOut(Schema):
    """One group or condition of the rules, depth first (the root group first, path "")."""

    path: str
    label: str
    matched: bool
    is_group: bool
    depth: int
    #: The customer's own value, where the condition's field shows one.
    actual: str


class MemberCheckOut(Schema):
    member: bool
    since: dt.datetime | None = None
    #: Whether the rules match the customer now (null for a manual segment); `member` is the
    #: membership as of the last refresh, so the two differ until the next one.
    matches_now: bool | None = None
    explanation: list[ConditionOut]


@router.get(
    MEMBERS_PATH + "/{external_id}",
    response={200: MemberCheckOut, 404: ErrorsOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Whether a customer is a member, and why",
)
def segment_member_get(request: HttpRequest, slug: str, external_id: str) -> Any:
    """In or out, since when, and for a dynamic segment each condition's result for this
    customer now (the segment page's "why in, why out"). Another merchant's customer, like
    one that does not exist, is not found."""
    merchant = api_merchant(request)
    segment = _segment(merchant, slug)
    customer = (
        None
        if "\x00" in external_id  # as in `_segment`: no stored id holds NUL
        else selectors.merchant_customer(merchant=merchant, external_id=external_id)
    )
    if customer is None:
        raise Http404
    membership = selectors.segment_members(segment=segment).filter(customer=customer).first()
    answer: dict[str, Any] = {
        "member": membership is not None,
        "since": membership.since if membership is not None else None,
        "explanation": [],
    }
    if segment.is_dynamic and segment.rules:
        limit_ms = settings.SEGMENT_LIVE_COUNT_TIMEOUT_MS
        try:
            with engine.time_limit(limit_ms):
                results = engine.explain(merchant=merchant, rules=segment.rules, customer=customer)
        except engine.EvaluationTimeout:
            message = PREVIEW_TIMEOUT_ERROR.format(seconds=limit_ms / 1000)
            return Status(422, errors_body(("", message)))
        answer["explanation"] = results
        answer["matches_now"] = results[0].matched if results else None
    return answer
