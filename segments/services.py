"""Writes of the segments app: definitions, memberships, refreshes and their schedule.

Every function here is keyword-only and the one way to change its rows, so the invariants
hold whoever calls (views, the admin, tasks, commands):

- A change of a segment's definition (name, description, rules) bumps `definition_version`
  and writes a `SegmentVersion` in the same transaction. A refresh that started from an
  older version notices under the segment's lock and discards its work ("superseded").
- Every entry into and exit from a segment writes a `MembershipEvent`, and `member_count`
  follows the membership rows.
- A full refresh computes the difference between the compiled rule queryset and the
  current membership in SQL (`INSERT ... SELECT`, `DELETE ... WHERE NOT EXISTS`), in one
  transaction under the segment's lock; it never loads the members into Python.
- A failed refresh rolls back (the old membership stays) and records the error; the
  status is never left at "running".

Work that must not run inside the caller's transaction is enqueued with
`transaction.on_commit(lambda: task.delay(id))`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import operator
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import reduce
from itertools import groupby, islice
from typing import IO, TYPE_CHECKING, Any, Literal

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Count, F, Q, QuerySet, Sum, Value, When
from django.utils import timezone
from django.utils.text import slugify

from customers.models import Customer, CustomerMetrics, Merchant
from segments.models import (
    MembershipEvent,
    MembershipEventKind,
    MembershipReason,
    RefreshCadence,
    RefreshStatus,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentSizeSnapshot,
    SegmentVersion,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

    #: Who did it: a request's user (anonymous means nobody) or None.
    Actor = User | AbstractBaseUser | AnonymousUser | None

logger = logging.getLogger(__name__)

#: Fields whose change is a new version of the definition.
DEFINITION_FIELDS = ("name", "description", "rules")
#: Fields `segment_update` accepts.
UPDATABLE_FIELDS = (
    *DEFINITION_FIELDS,
    "is_active",
    "refresh_cadence",
    "refresh_weekday",
    "refresh_hour",
)
#: Above this many customers, a change is applied by a full refresh of the merchant's
#: segments rather than by per-customer re-evaluation (and a huge id list in a task message).
INCREMENTAL_MAX_CUSTOMERS = 5000
#: Ids per `IN (...)` list: far below SQLite's limit on bound parameters.
ID_BATCH = 500
#: How many unknown lines an upload error lists.
UPLOAD_MAX_ERRORS = 50

MANUAL_RULES_ERROR = "A manual segment has no rules; its members are picked or uploaded."
NOT_MANUAL_ERROR = "Only a manual segment's members are picked or uploaded by hand."
OTHER_MERCHANT_ERROR = "These customers do not belong to the segment's merchant: {ids}."
SLUG_TAKEN_ERROR = 'The merchant already has a segment with the slug "{slug}".'
UNKNOWN_FIELDS_ERROR = "These fields cannot be changed here: {fields}."
UPLOAD_HEADER_ERROR = 'line 1: the header must be "external_id".'
UPLOAD_UNKNOWN_ERROR = 'line {line}: no customer with external_id "{external_id}".'
UPLOAD_MORE_ERRORS = "... and {count} more unknown external ids."
UPLOAD_ENCODING_ERROR = "The file is not UTF-8 text."

RefreshOutcome = Literal["ok", "superseded", "failed", "skipped"]


class MembershipUploadError(ValueError):
    """An uploaded member list was refused; nothing was written. `errors` name the lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class RefreshResult:
    """What a full refresh did.

    `status`: "ok" (written), "superseded" (the definition changed while it computed; its
    work was discarded and the edit has queued a new refresh), "failed" (rolled back, the
    error is recorded on the segment) or "skipped" (inactive, manual or missing segment).
    """

    segment_id: int
    status: RefreshOutcome
    entered: int = 0
    exited: int = 0
    member_count: int | None = None
    duration_ms: int = 0
    error: str = ""


@dataclass
class MembershipChange:
    """Entries and exits applied to one segment."""

    segment_id: int
    entered: set[int] = field(default_factory=set)
    exited: set[int] = field(default_factory=set)


# --- the engine, behind two seams -------------------------------------------------------


def _matching_queryset(segment: Segment, as_of: dt.datetime | None) -> QuerySet[Any]:
    """The rows of the segment's merchant its rules select at `as_of`, as a queryset whose
    primary key is the customer's id.

    The one place the full refresh gets a segment's compiled queryset from.
    """
    from segments.engine import matching_rows

    return matching_rows(merchant=segment.merchant, rules=segment.rules, as_of=as_of)


def _evaluation_settings() -> AbstractContextManager[None]:
    """The database settings the engine evaluates under (see `engine.evaluation_settings`)."""
    from segments.engine import evaluation_settings

    return evaluation_settings()


def _referenced_slugs(rules: dict[str, Any]) -> set[str]:
    """Slugs of the other segments a rule tree uses (`{"field": "segment", ...}`)."""
    if not rules:
        return set()
    from segments.engine import referenced_segment_slugs

    return set(referenced_segment_slugs(rules))


def _validate_rules(rules: Any, *, merchant: Merchant, segment: Segment | None) -> None:
    """Raise `segments.engine.RuleValidationError` unless `rules` is a valid tree."""
    from segments.engine import validate_rules

    validate_rules(rules, merchant=merchant, segment=segment)


# --- small helpers -----------------------------------------------------------------------


def id_batches(ids: Iterable[int], size: int = ID_BATCH) -> Iterator[list[int]]:
    iterator = iter(ids)
    while batch := list(islice(iterator, size)):
        yield batch


def _lock_segment(segment_id: int) -> Segment | None:
    """Lock the segment's row for the rest of the transaction and return it fresh.

    PostgreSQL: `SELECT ... FOR UPDATE`. SQLite has no row locks and ignores FOR UPDATE;
    there the transaction's write lock serialises writers, so a no-op UPDATE takes it
    *before* anything is read (reading first and writing later could fail on a snapshot
    another writer has made stale).
    """
    if connection.vendor == "sqlite":
        Segment.objects.filter(pk=segment_id).update(definition_version=F("definition_version"))
    return (
        Segment.objects.select_for_update(of=("self",))
        .select_related("merchant")
        .filter(pk=segment_id)
        .first()
    )


def _enqueue_refresh(segment_id: int) -> None:
    from segments.tasks import refresh_segment

    transaction.on_commit(lambda: refresh_segment.delay(segment_id), robust=True)


def _unique_slug(merchant: Merchant, base: str) -> str:
    base = (slugify(base) or "segment")[:90]
    taken = set(
        Segment.objects.filter(merchant=merchant, slug__startswith=base).values_list(
            "slug", flat=True
        )
    )
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _user(actor: Actor) -> User | None:
    """The user to record, or None (nobody, or an anonymous request)."""
    if actor is None or not actor.is_authenticated:
        return None
    return actor  # type: ignore[return-value]


def _version_write(segment: Segment, user: Actor) -> SegmentVersion:
    return SegmentVersion.objects.create(
        segment=segment,
        version=segment.definition_version,
        name=segment.name,
        description=segment.description,
        rules=segment.rules,
        created_by=_user(user),
    )


# --- definitions -------------------------------------------------------------------------


@transaction.atomic
def segment_create(
    *,
    merchant: Merchant,
    name: str,
    kind: str,
    slug: str | None = None,
    description: str = "",
    rules: dict[str, Any] | None = None,
    created_by: Actor = None,
    is_active: bool = True,
    refresh_cadence: str = RefreshCadence.DAILY,
    refresh_weekday: int = 6,
    refresh_hour: int = 3,
) -> Segment:
    """Create a segment and its version 1.

    A dynamic segment's rules are validated by the engine (`RuleValidationError` if not
    valid) and a first refresh is enqueued on commit; a manual segment has no rules. The
    slug is derived from the name (de-duplicated per merchant) unless given; a given slug
    that is taken is a `ValidationError`.
    """
    rules = rules or {}
    if kind == SegmentKind.MANUAL:
        if rules:
            raise ValidationError({"rules": MANUAL_RULES_ERROR})
    else:
        _validate_rules(rules, merchant=merchant, segment=None)
    if slug:
        if Segment.objects.filter(merchant=merchant, slug=slug).exists():
            raise ValidationError({"slug": SLUG_TAKEN_ERROR.format(slug=slug)})
    else:
        slug = _unique_slug(merchant, name)
    dynamic = kind == SegmentKind.DYNAMIC
    segment = Segment(
        merchant=merchant,
        name=name,
        slug=slug,
        description=description,
        kind=kind,
        rules=rules,
        is_active=is_active,
        created_by=_user(created_by),
        refresh_cadence=refresh_cadence,
        refresh_weekday=refresh_weekday,
        refresh_hour=refresh_hour,
        refresh_status=RefreshStatus.QUEUED if dynamic and is_active else RefreshStatus.NEVER,
    )
    segment.full_clean(exclude=["merchant", "created_by"])
    segment.save()
    _version_write(segment, created_by)
    if dynamic and is_active:
        _enqueue_refresh(segment.pk)
    return segment


@transaction.atomic
def segment_update(*, segment: Segment, user: Actor = None, **changes: Any) -> Segment:
    """Change a segment's definition, state or schedule; returns the fresh segment.

    Accepts the fields of `UPDATABLE_FIELDS`. A change of name, description or rules bumps
    `definition_version` (under the segment's lock, so it serialises with a refresh's write)
    and records a `SegmentVersion`. New rules are validated first (nothing is saved if they
    are not valid), set the status to queued and enqueue a refresh on commit, which also
    makes a refresh in flight discard its now stale result. Re-activating a dynamic segment
    queues a refresh too.
    """
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(UNKNOWN_FIELDS_ERROR.format(fields=", ".join(sorted(unknown))))
    locked = _lock_segment(segment.pk)
    if locked is None:
        raise Segment.DoesNotExist(segment.pk)
    changed = {k: v for k, v in changes.items() if getattr(locked, k) != v}
    if "rules" in changed:
        changed["rules"] = changed["rules"] or {}
        if locked.kind == SegmentKind.MANUAL:
            if changed["rules"]:
                raise ValidationError({"rules": MANUAL_RULES_ERROR})
        else:
            _validate_rules(changed["rules"], merchant=locked.merchant, segment=locked)
    if not changed:
        return locked
    for name, value in changed.items():
        setattr(locked, name, value)
    locked.full_clean(exclude=["merchant", "created_by", "definition_version"])

    updates: dict[str, Any] = dict(changed)
    new_definition = any(f in changed for f in DEFINITION_FIELDS)
    if new_definition:
        updates["definition_version"] = F("definition_version") + 1
    requeue = (
        locked.is_dynamic
        and locked.is_active
        and ("rules" in changed or changed.get("is_active") is True)
    )
    if requeue:
        updates["refresh_status"] = RefreshStatus.QUEUED
    if {"refresh_cadence", "refresh_weekday", "refresh_hour"} & set(changed):
        updates["next_refresh_at"] = (
            segment_next_refresh_at(locked, timezone.now()) if locked.last_refreshed_at else None
        )
    updates["updated_at"] = timezone.now()
    Segment.objects.filter(pk=locked.pk).update(**updates)
    locked.refresh_from_db()
    if new_definition:
        _version_write(locked, user)
    if requeue:
        _enqueue_refresh(locked.pk)
    return locked


# --- full refresh ------------------------------------------------------------------------


#: The temporary table a full refresh materialises the compiled member ids into.
REFRESH_TABLE = "sp_refresh_members"


def _diff_statements(
    segment: Segment, queryset: QuerySet[Any], now: dt.datetime, version: int
) -> list[tuple[str, list[Any]]]:
    """The set-based statements of a full refresh, in the order they must run.

    The compiled query runs once, into a temporary table of member ids (a count over a
    million customers is the expensive part; the diff against it is cheap). Then exits are
    recorded before the rows go, entries before the rows come, each against the membership
    as it is at that moment.

    TRICKY: the differences are `NOT IN (uncorrelated subquery)`, which PostgreSQL hashes
    once (hence the session's work_mem, see `engine.evaluation_settings`). As `NOT EXISTS`
    anti-joins they were planned from statistics that a refresh makes wrong: a segment
    created after the last ANALYZE looks empty, and a table analyzed while nearly empty
    looks empty forever after; the planner then scanned the membership table once per member
    while inserting into it (48 s for 100,000 members), or the member table once per stored
    member (1.5 s for 8,000).
    """
    compiled, compiled_params = (
        queryset.order_by().values(member_id=F("pk")).query.sql_with_params()
    )
    membership = SegmentMembership._meta.db_table
    events = MembershipEvent._meta.db_table
    members = REFRESH_TABLE
    gone = f"{membership}.customer_id NOT IN (SELECT customer_id FROM {members})"
    new = (
        f"FROM {members} c WHERE c.customer_id NOT IN "
        f"(SELECT customer_id FROM {membership} WHERE segment_id = %s)"
    )
    sid, rule = segment.pk, MembershipReason.RULE
    materialise = [
        (f"DROP TABLE IF EXISTS {members}", []),
        (f"CREATE TEMP TABLE {members} (customer_id bigint PRIMARY KEY)", []),
        (
            f"INSERT INTO {members} (customer_id) SELECT q.member_id FROM ({compiled}) q",
            list(compiled_params),
        ),
    ]
    if connection.vendor == "postgresql":
        # Temporary tables get no statistics from autovacuum: the size matters for hashing.
        materialise.append((f"ANALYZE {members}", []))
    return [
        *materialise,
        (
            f"INSERT INTO {events} (segment_id, customer_id, kind, reason, occurred_at, "
            f"definition_version) SELECT %s, {membership}.customer_id, %s, %s, %s, %s "
            f"FROM {membership} WHERE {membership}.segment_id = %s AND {gone}",
            [sid, MembershipEventKind.EXIT, rule, now, version, sid],
        ),
        (f"DELETE FROM {membership} WHERE {membership}.segment_id = %s AND {gone}", [sid]),
        (
            f"INSERT INTO {events} (segment_id, customer_id, kind, reason, occurred_at, "
            f"definition_version) SELECT %s, c.customer_id, %s, %s, %s, %s {new}",
            [sid, MembershipEventKind.ENTRY, rule, now, version, sid],
        ),
        (
            f"INSERT INTO {membership} (segment_id, customer_id, since) "
            f"SELECT %s, c.customer_id, %s {new}",
            [sid, now, sid],
        ),
        (f"DROP TABLE {members}", []),
    ]


def _refresh_start(segment_id: int) -> Segment | None:
    """First, short transaction: mark the segment running and note the version it starts
    from. None when there is nothing to refresh (missing, manual or inactive)."""
    with transaction.atomic():
        segment = _lock_segment(segment_id)
        if segment is None or not segment.is_dynamic or not segment.is_active:
            return None
        segment.refresh_status = RefreshStatus.RUNNING
        segment.refresh_started_at = timezone.now()
        Segment.objects.filter(pk=segment_id).update(
            refresh_status=segment.refresh_status, refresh_started_at=segment.refresh_started_at
        )
        return segment


def segment_refresh(*, segment_id: int, as_of: dt.datetime | None = None) -> RefreshResult:
    """Bring a dynamic segment's membership up to date with its rules at `as_of` (default:
    now), writing an event for every entry and exit.

    Three steps: a short transaction marks it running and notes `definition_version`; one
    transaction under the segment's lock compiles the rules, checks the version is still the
    same (else the result is "superseded" and nothing is written), applies the difference in
    SQL and records the freshness; on any error that transaction rolls back, so the old
    membership stays, and a separate one records status failed with the error. Inactive and
    manual segments are "skipped".
    """
    started = time.monotonic()
    segment = _refresh_start(segment_id)
    if segment is None:
        return RefreshResult(segment_id=segment_id, status="skipped")
    started_version = segment.definition_version

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with transaction.atomic():
            locked = _lock_segment(segment_id)
            if locked is None or not locked.is_dynamic or not locked.is_active:
                outcome: RefreshOutcome = "skipped"
            else:
                # Stored rules can go stale (a segment they use was deleted, which the
                # compiler would read as "nobody"): fail loudly and keep the old members.
                _validate_rules(locked.rules, merchant=locked.merchant, segment=locked)
                queryset = _matching_queryset(locked, as_of)
                # Under the lock: an edit either committed before (seen here) or waits for
                # this transaction to end (and then queues a new refresh).
                current_version = (
                    Segment.objects.filter(pk=segment_id)
                    .values_list("definition_version", flat=True)
                    .first()
                )
                outcome = "ok" if current_version == started_version else "superseded"
            if outcome == "ok" and locked is not None:
                now = timezone.now()
                counts = []
                with _evaluation_settings(), connection.cursor() as cursor:
                    for sql, params in _diff_statements(locked, queryset, now, started_version):
                        cursor.execute(sql, params)
                        counts.append(max(cursor.rowcount, 0))
                # The rows deleted and inserted: the third and second statements from the end.
                exited, entered = counts[-4], counts[-2]
                member_count = SegmentMembership.objects.filter(segment_id=segment_id).count()
                segment_stats_refresh(segment=locked)
                _snapshot(locked, member_count, now)
                duration = elapsed_ms()
                Segment.objects.filter(pk=segment_id).update(
                    member_count=member_count,
                    refresh_status=RefreshStatus.OK,
                    last_refreshed_at=now,
                    last_refresh_duration_ms=duration,
                    last_refresh_error="",
                    next_refresh_at=segment_next_refresh_at(locked, now),
                )
            elif outcome == "superseded":
                # Nothing was written. The edit that bumped the version queued a fresh
                # refresh; hand the status back to it unless it already did.
                Segment.objects.filter(pk=segment_id, refresh_status=RefreshStatus.RUNNING).update(
                    refresh_status=RefreshStatus.QUEUED
                )
            else:
                # Deactivated (or deleted) since the start.
                Segment.objects.filter(pk=segment_id, refresh_status=RefreshStatus.RUNNING).update(
                    refresh_status=RefreshStatus.OK
                    if segment.last_refreshed_at
                    else RefreshStatus.NEVER
                )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        duration = elapsed_ms()
        logger.exception("Refresh of segment %s failed", segment_id)
        with transaction.atomic():
            failed_at = timezone.now()
            Segment.objects.filter(pk=segment_id).update(
                refresh_status=RefreshStatus.FAILED,
                last_refresh_error=error,
                last_refresh_duration_ms=duration,
                next_refresh_at=segment_next_refresh_at(segment, failed_at),
            )
        return RefreshResult(
            segment_id=segment_id, status="failed", duration_ms=duration, error=error
        )
    if outcome != "ok":
        if outcome == "superseded":
            logger.info("Refresh of segment %s superseded by an edit", segment_id)
        return RefreshResult(segment_id=segment_id, status=outcome, duration_ms=elapsed_ms())
    return RefreshResult(
        segment_id=segment_id,
        status="ok",
        entered=entered,
        exited=exited,
        member_count=member_count,
        duration_ms=duration,
    )


def _active_dynamic(merchant_id: int) -> list[Segment]:
    segments = Segment.objects.filter(
        merchant_id=merchant_id, kind=SegmentKind.DYNAMIC, is_active=True
    ).select_related("merchant")
    return segments_in_dependency_order(list(segments))


def merchant_segments_refresh(
    *, merchant_id: int, as_of: dt.datetime | None = None
) -> list[RefreshResult]:
    """Fully refresh every active dynamic segment of a merchant, in dependency order."""
    return [segment_refresh(segment_id=s.pk, as_of=as_of) for s in _active_dynamic(merchant_id)]


# --- incremental update ------------------------------------------------------------------


def _apply_changes(
    changes: Collection[tuple[Segment, MembershipChange]], *, reason: str, now: dt.datetime
) -> None:
    """Write the membership rows, events and `member_count` of several segments' changes:
    a handful of statements whatever the number of segments."""
    SegmentMembership.objects.bulk_create(
        [
            SegmentMembership(segment=segment, customer_id=c, since=now)
            for segment, change in changes
            for c in sorted(change.entered)
        ],
        batch_size=ID_BATCH,
    )
    exits = [(segment.pk, c) for segment, change in changes for c in sorted(change.exited)]
    for start in range(0, len(exits), ID_BATCH):
        pairs = [Q(segment_id=s, customer_id=c) for s, c in exits[start : start + ID_BATCH]]
        SegmentMembership.objects.filter(reduce(operator.or_, pairs)).delete()
    MembershipEvent.objects.bulk_create(
        [
            MembershipEvent(
                segment=segment,
                customer_id=c,
                kind=kind,
                reason=reason,
                occurred_at=now,
                definition_version=segment.definition_version,
            )
            for segment, change in changes
            for kind, ids in (
                (MembershipEventKind.EXIT, change.exited),
                (MembershipEventKind.ENTRY, change.entered),
            )
            for c in sorted(ids)
        ],
        batch_size=ID_BATCH,
    )
    deltas = {
        segment.pk: len(change.entered) - len(change.exited)
        for segment, change in changes
        if change.entered or change.exited
    }
    if deltas:
        Segment.objects.filter(pk__in=list(deltas)).update(
            member_count=F("member_count")
            + Case(*(When(pk=pk, then=Value(d)) for pk, d in deltas.items()), default=Value(0))
        )


def _apply_change(
    segment: Segment,
    *,
    entered: Collection[int],
    exited: Collection[int],
    reason: str,
    now: dt.datetime,
) -> None:
    """Write the membership rows, events and member_count for one segment's change."""
    change = MembershipChange(segment_id=segment.pk, entered=set(entered), exited=set(exited))
    _apply_changes([(segment, change)], reason=reason, now=now)


def _current_members(segment: Segment, ids: Collection[int] | None = None) -> set[int]:
    members = SegmentMembership.objects.filter(segment=segment)
    if ids is None:
        return set(members.values_list("customer_id", flat=True))
    found: set[int] = set()
    for batch in id_batches(sorted(ids)):
        found.update(members.filter(customer_id__in=batch).values_list("customer_id", flat=True))
    return found


def _members_among(segment_ids: Collection[int], ids: Collection[int]) -> dict[int, set[int]]:
    """For each segment, which of the customers `ids` are its members now (one query a batch).

    Reads all the customers' memberships and keeps those of `segment_ids` here: a range of
    the (customer, segment) index per customer, where filtering on a long list of segments
    made PostgreSQL probe the index once per segment."""
    found: dict[int, set[int]] = {pk: set() for pk in segment_ids}
    if not found:
        return found
    for batch in id_batches(sorted(ids)):
        rows = SegmentMembership.objects.filter(customer_id__in=batch)
        for segment_id, customer_id in rows.values_list("segment_id", "customer_id"):
            if segment_id in found:
                found[segment_id].add(customer_id)
    return found


Evaluate = Callable[[Segment], set[int]]


def _evaluator(
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
    from segments.evaluate import Evaluator, SegmentRef, load_people
    from segments.rules import parse_rules

    people = load_people(merchant, ids)
    refs = {segment.slug: segment for segment in segments}
    used = set().union(*(_referenced_slugs(s.rules) for s in segments if s.is_dynamic))
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


def _evaluate_customers(
    evaluate: Evaluate, segments: list[Segment], ids: Collection[int]
) -> dict[int, set[int]]:
    """For each segment, which of the customers `ids` its rules select. A segment whose
    stored rules cannot be evaluated (they no longer validate) is left out and logged; its
    next full refresh records the error."""
    matched: dict[int, set[int]] = {}
    for segment in segments:
        try:
            matched[segment.pk] = evaluate(segment) & set(ids)
        except Exception:
            logger.exception("Segment %s cannot be evaluated; skipped", segment.pk)
    return matched


def _dependency_waves(segments: list[Segment]) -> list[list[Segment]]:
    """Segments grouped so each group uses only segments of earlier groups: the first holds
    the segments that use no other segment (usually all of them)."""
    by_slug = {segment.slug: segment for segment in segments}
    level: dict[str, int] = {}

    def depth(slug: str, seen: frozenset[str]) -> int:
        if slug not in level:
            used = [
                s for s in _referenced_slugs(by_slug[slug].rules) if s in by_slug and s not in seen
            ]
            level[slug] = 1 + max((depth(s, seen | {slug}) for s in used), default=-1)
        return level[slug]

    waves: dict[int, list[Segment]] = {}
    for segment in segments:
        waves.setdefault(depth(segment.slug, frozenset()), []).append(segment)
    return [waves[k] for k in sorted(waves)]


def _lock_segments(segment_ids: Collection[int]) -> list[Segment]:
    """Lock several segments' rows (in id order, so two writers cannot deadlock) for the rest
    of the transaction and return them fresh; on SQLite take the write lock first, as in
    `_lock_segment`."""
    ids = sorted(segment_ids)
    if connection.vendor == "sqlite":
        Segment.objects.filter(pk__in=ids).update(definition_version=F("definition_version"))
    return list(Segment.objects.select_for_update(of=("self",)).filter(pk__in=ids).order_by("pk"))


def _apply_incremental(
    segment_ids: Collection[int],
    versions: Mapping[int, int],
    matched: Mapping[int, set[int]],
    ids: Collection[int],
) -> list[MembershipChange]:
    """Write the changed segments' memberships under their locks, in one savepoint; a
    segment deactivated, made manual or redefined since it was evaluated is skipped. If the
    write fails, each segment is tried alone in a savepoint of its own, so one failing
    segment does not stop the others."""

    def write(wanted: Collection[int]) -> list[MembershipChange]:
        with transaction.atomic():
            segments = [
                segment
                for segment in _lock_segments(wanted)
                if segment.is_active
                and segment.is_dynamic
                and segment.definition_version == versions[segment.pk]
            ]
            current = _members_among([s.pk for s in segments], ids)
            changes = [
                (
                    segment,
                    MembershipChange(
                        segment_id=segment.pk,
                        entered=matched[segment.pk] - current[segment.pk],
                        exited=current[segment.pk] - matched[segment.pk],
                    ),
                )
                for segment in segments
            ]
            _apply_changes(changes, reason=MembershipReason.RULE, now=timezone.now())
            return [change for _, change in changes if change.entered or change.exited]

    if not segment_ids:
        return []
    try:
        return write(segment_ids)
    except Exception:
        logger.exception("Incremental update of segments %s failed; one by one", segment_ids)
    written: list[MembershipChange] = []
    for segment_id in sorted(segment_ids):
        try:
            written += write([segment_id])
        except Exception:
            logger.exception("Incremental update of segment %s failed", segment_id)
    return written


def segment_memberships_update_for_customers(
    *, merchant_id: int, customer_ids: Iterable[int], as_of: dt.datetime | None = None
) -> list[MembershipChange]:
    """Re-evaluate these customers against every active dynamic segment of the merchant and
    apply the per-customer difference (events with reason "rule", `member_count` by F()).

    Cheap when nothing changes, which is the common case for one new purchase: the
    customers' rows are loaded once and every segment evaluated in Python (`_evaluator`),
    one query reads their current memberships, and only the segments whose membership
    differs are locked and written, together. Under their locks the current members are read
    again and the definition versions compared with the ones evaluated, so a full refresh or
    an edit that got there first is respected (an edit has queued its own full refresh). If
    that write fails, each segment is written alone: a failure is logged and leaves that
    segment alone. A segment that uses a segment which no longer exists is skipped (its next
    full refresh fails and records why). Segments that use other segments are handled in a
    later wave, after the ones they use were written. Customers of other merchants are
    ignored.
    """
    ids = set(
        Customer.objects.filter(merchant_id=merchant_id, pk__in=list(customer_ids)).values_list(
            "pk", flat=True
        )
    )
    changes: list[MembershipChange] = []
    if not ids:
        return changes
    every = list(Segment.objects.filter(merchant_id=merchant_id).select_related("merchant"))
    slugs = {segment.slug for segment in every}
    segments = []
    for candidate in segments_in_dependency_order(
        [s for s in every if s.is_dynamic and s.is_active]
    ):
        missing = _referenced_slugs(candidate.rules) - slugs
        if missing:
            # Its next full refresh fails and records why; never empty it from here.
            logger.warning("Segment %s uses missing segments %s", candidate.pk, missing)
            continue
        segments.append(candidate)
    if not segments:
        return changes
    evaluate = _evaluator(segments[0].merchant, every, ids, as_of)
    versions = {segment.pk: segment.definition_version for segment in segments}
    for wave in _dependency_waves(segments):
        matched = _evaluate_customers(evaluate, wave, ids)
        current = _members_among(list(matched), ids)
        differ = [pk for pk in matched if matched[pk] != current[pk]]
        changes += _apply_incremental(differ, versions, matched, ids)
    return changes


# --- manual segments ---------------------------------------------------------------------


def _manual_locked(segment: Segment) -> Segment:
    if segment.kind != SegmentKind.MANUAL:
        raise ValidationError(NOT_MANUAL_ERROR)
    locked = _lock_segment(segment.pk)
    if locked is None:
        raise Segment.DoesNotExist(segment.pk)
    return locked


def _own_customer_ids(segment: Segment, customers: Iterable[Customer | int]) -> set[int]:
    wanted = {c if isinstance(c, int) else c.pk for c in customers}
    own: set[int] = set()
    for batch in id_batches(sorted(wanted)):
        own.update(
            Customer.objects.filter(merchant_id=segment.merchant_id, pk__in=batch).values_list(
                "pk", flat=True
            )
        )
    foreign = wanted - own
    if foreign:
        listed = ", ".join(str(i) for i in sorted(foreign)[:UPLOAD_MAX_ERRORS])
        raise ValidationError(OTHER_MERCHANT_ERROR.format(ids=listed))
    return own


@transaction.atomic
def segment_members_add(
    *,
    segment: Segment,
    customers: Iterable[Customer | int],
    user: Actor = None,
) -> MembershipChange:
    """Add customers (objects or ids, of the segment's merchant) to a manual segment.
    Customers already in it are left as they are. `user` is who did it (for the log)."""
    locked = _manual_locked(segment)
    ids = _own_customer_ids(locked, customers)
    entered = ids - _current_members(locked, ids)
    _apply_change(
        locked, entered=entered, exited=(), reason=MembershipReason.MANUAL, now=timezone.now()
    )
    segment_stats_refresh(segment=locked)
    logger.info("User %s added %s customers to segment %s", user, len(entered), locked.pk)
    return MembershipChange(segment_id=locked.pk, entered=entered)


@transaction.atomic
def segment_members_remove(
    *,
    segment: Segment,
    customers: Iterable[Customer | int],
    user: Actor = None,
) -> MembershipChange:
    """Remove customers (objects or ids) from a manual segment; non-members are ignored."""
    locked = _manual_locked(segment)
    ids = _own_customer_ids(locked, customers)
    exited = _current_members(locked, ids)
    _apply_change(
        locked, entered=(), exited=exited, reason=MembershipReason.MANUAL, now=timezone.now()
    )
    segment_stats_refresh(segment=locked)
    logger.info("User %s removed %s customers from segment %s", user, len(exited), locked.pk)
    return MembershipChange(segment_id=locked.pk, exited=exited)


def _read_upload(file: IO[bytes] | IO[str]) -> list[tuple[int, str]]:
    """(line number, external_id) of each non-blank data line; the header is line 1."""
    raw = file.read()
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MembershipUploadError([UPLOAD_ENCODING_ERROR]) from exc
    else:
        text = raw.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or [h.strip().lower() for h in header if h.strip()] != ["external_id"]:
        raise MembershipUploadError([UPLOAD_HEADER_ERROR])
    rows = []
    for row in reader:
        value = row[0].strip() if row else ""
        if value:
            rows.append((reader.line_num, value))
    return rows


@transaction.atomic
def segment_members_upload(
    *, segment: Segment, file: IO[bytes] | IO[str], user: Actor = None
) -> MembershipChange:
    """Replace a manual segment's members by the customers listed in a CSV file.

    The file has the header `external_id` and one external id per line (blank lines are
    skipped, duplicates are fine), naming customers of the segment's merchant. If any id is
    unknown, `MembershipUploadError` lists the lines (the first 50) and nothing is written.
    Otherwise listed non-members enter and unlisted members leave, with events of reason
    "upload"; uploading the same file again changes nothing.
    """
    locked = _manual_locked(segment)
    rows = _read_upload(file)
    by_external: dict[str, int] = {}
    external_ids = sorted({external_id for _, external_id in rows})
    for start in range(0, len(external_ids), ID_BATCH):
        by_external.update(
            Customer.objects.filter(
                merchant_id=locked.merchant_id,
                external_id__in=external_ids[start : start + ID_BATCH],
            ).values_list("external_id", "pk")
        )
    unknown = [(line, ext) for line, ext in rows if ext not in by_external]
    if unknown:
        errors = [
            UPLOAD_UNKNOWN_ERROR.format(line=line, external_id=ext)
            for line, ext in unknown[:UPLOAD_MAX_ERRORS]
        ]
        if len(unknown) > UPLOAD_MAX_ERRORS:
            errors.append(UPLOAD_MORE_ERRORS.format(count=len(unknown) - UPLOAD_MAX_ERRORS))
        raise MembershipUploadError(errors)
    wanted = set(by_external.values())
    current = _current_members(locked)
    change = MembershipChange(
        segment_id=locked.pk, entered=wanted - current, exited=current - wanted
    )
    _apply_change(
        locked,
        entered=change.entered,
        exited=change.exited,
        reason=MembershipReason.UPLOAD,
        now=timezone.now(),
    )
    segment_stats_refresh(segment=locked)
    logger.info(
        "User %s uploaded %s members to segment %s (+%s -%s)",
        user,
        len(wanted),
        locked.pk,
        len(change.entered),
        len(change.exited),
    )
    return change


# --- schedule and dependency order -------------------------------------------------------


def segment_next_refresh_at(segment: Segment, after: dt.datetime) -> dt.datetime:
    """The first scheduled refresh strictly after `after` (aware), in UTC.

    hourly: the next full hour of the merchant's clock; daily: the next `refresh_hour`:00
    merchant-local; weekly: the next `refresh_weekday` (0 = Monday) at `refresh_hour`:00.
    Local times are built on the local calendar and then converted with the merchant's
    time zone, so "3:00" stays 3:00 across a DST change; a local time that a spring-forward
    skips resolves to the same instant one hour later on the wall clock.
    """
    tz = segment.merchant.tzinfo
    local = after.astimezone(tz)
    if segment.refresh_cadence == RefreshCadence.HOURLY:
        # Absolute arithmetic: an hour is 60 minutes even on the day the clock jumps.
        floor = after - dt.timedelta(
            minutes=local.minute, seconds=local.second, microseconds=local.microsecond
        )
        return (floor + dt.timedelta(hours=1)).astimezone(dt.UTC)
    at = dt.time(segment.refresh_hour)
    day = local.date()
    if segment.refresh_cadence == RefreshCadence.WEEKLY:
        day += dt.timedelta(days=(segment.refresh_weekday - day.weekday()) % 7)
        step = dt.timedelta(days=7)
    else:
        step = dt.timedelta(days=1)
    candidate = dt.datetime.combine(day, at, tzinfo=tz).astimezone(dt.UTC)
    while candidate <= after:
        day += step
        candidate = dt.datetime.combine(day, at, tzinfo=tz).astimezone(dt.UTC)
    return candidate


def dependency_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Order the nodes of `{slug: slugs it uses}` so each comes after the ones it uses.

    Pure and deterministic (ties by slug). References to slugs not in the graph are
    ignored. Cycle safe: the rule engine refuses cycles, but should one exist its members
    come last, in slug order, instead of looping or being dropped.
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
    graph: dict[str, set[str]] = {}
    for segment in segments:
        try:
            graph[segment.slug] = _referenced_slugs(segment.rules)
        except Exception:
            # Rules the engine cannot read: no known dependencies; its refresh will fail
            # and record why.
            logger.warning("Cannot read the rules of segment %s", segment.pk, exc_info=True)
            graph[segment.slug] = set()
    return [by_slug[slug] for slug in dependency_order(graph)]


def segments_refresh_due(*, now: dt.datetime | None = None) -> list[RefreshResult]:
    """Fully refresh every active dynamic segment whose `next_refresh_at` has come (or was
    never set), merchant by merchant, each merchant's in dependency order."""
    now = now or timezone.now()
    due = (
        Segment.objects.filter(kind=SegmentKind.DYNAMIC, is_active=True)
        .filter(Q(next_refresh_at__lte=now) | Q(next_refresh_at__isnull=True))
        .select_related("merchant")
        .order_by("merchant_id", "pk")
    )
    by_merchant: dict[int, list[Segment]] = {}
    for segment in due:
        by_merchant.setdefault(segment.merchant_id, []).append(segment)
    results = []
    for segments in by_merchant.values():
        for segment in segments_in_dependency_order(segments):
            results.append(segment_refresh(segment_id=segment.pk))
    return results


# --- statistics and size history ---------------------------------------------------------


def segment_stats_refresh(*, segment: Segment) -> None:
    """Compute and store the statistics of the segment's members' purchases (one aggregate
    over the members' metrics rows, one over the merchant's, one update), in the caller's
    transaction.

    - avg_transaction_value: the members' order totals / the members' orders;
    - avg_transactions: the members' orders / the members;
    - avg_spending: the members' net spend (orders minus refunds) / the members;
    - revenue_share: the members' net spend / the merchant's net spend (0 to 1);
    - avg_clv: empty until predicted lifetime value exists.
    Each is NULL where it is undefined (no members, no orders, no revenue).
    """
    members = CustomerMetrics.objects.filter(
        merchant_id=segment.merchant_id,
        customer__segment_memberships__segment_id=segment.pk,
    ).aggregate(
        members=Count("pk"),
        orders=Sum("orders_count"),
        gross=Sum("gross_spend"),
        net=Sum("net_spend"),
    )
    revenue = CustomerMetrics.objects.filter(merchant_id=segment.merchant_id).aggregate(
        net=Sum("net_spend")
    )["net"]
    count, orders = members["members"], members["orders"] or 0
    net = members["net"] or Decimal(0)
    Segment.objects.filter(pk=segment.pk).update(
        avg_transaction_value=_ratio(members["gross"], orders),
        avg_transactions=_ratio(Decimal(orders), count),
        avg_spending=_ratio(net, count),
        revenue_share=_ratio(net, revenue, places="0.0001") if revenue and revenue > 0 else None,
        avg_clv=None,
        stats_computed_at=timezone.now(),
    )


def _ratio(numerator: Any, denominator: Any, places: str = "0.01") -> Decimal | None:
    if not denominator or numerator is None:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(places))


def segment_snapshot_sizes(*, now: dt.datetime | None = None) -> int:
    """Record every segment's member count for its merchant's local day (updating the day's
    row when it exists); returns how many rows were written. Run hourly by beat."""
    now = now or timezone.now()
    written = 0
    segments = Segment.objects.select_related("merchant").only(
        "pk", "member_count", "merchant__time_zone"
    )
    by_merchant = groupby(segments.order_by("merchant_id", "pk"), lambda s: s.merchant_id)
    for merchant_id, group in by_merchant:
        rows = list(group)
        day = rows[0].merchant.today(now)
        SegmentSizeSnapshot.objects.bulk_create(
            [SegmentSizeSnapshot(segment=s, day=day, member_count=s.member_count) for s in rows],
            update_conflicts=True,
            unique_fields=["segment", "day"],
            update_fields=["member_count"],
        )
        written += len(rows)
        logger.debug("Snapshot of %s segments of merchant %s", len(rows), merchant_id)
    return written


def _snapshot(segment: Segment, member_count: int, now: dt.datetime) -> None:
    """Write (or overwrite) the segment's size for the merchant-local day of `now`."""
    SegmentSizeSnapshot.objects.bulk_create(
        [
            SegmentSizeSnapshot(
                segment=segment, day=segment.merchant.today(now), member_count=member_count
            )
        ],
        update_conflicts=True,
        unique_fields=["segment", "day"],
        update_fields=["member_count"],
    )


# --- list actions ------------------------------------------------------------------------

IN_USE_ERROR = '"{name}" is used by {users}; remove it from their rules first.'
COPY_NAME = "{name} (copy)"


class SegmentInUseError(ValidationError):
    """Some segments cannot be removed because other segments use them; `messages` names
    each one with the segments that use it. Nothing was removed."""


def segment_users(*, segments: Collection[Segment]) -> dict[int, list[Segment]]:
    """For each of `segments` (of one merchant), the other segments of the merchant whose
    rules use it (`{"field": "segment", ...}`). Campaigns do not exist yet."""
    if not segments:
        return {}
    merchant_id = next(iter(segments)).merchant_id
    by_slug = {segment.slug: segment.pk for segment in segments}
    users: dict[int, list[Segment]] = {segment.pk: [] for segment in segments}
    for other in Segment.objects.filter(merchant_id=merchant_id, kind=SegmentKind.DYNAMIC):
        for slug in _referenced_slugs(other.rules) & set(by_slug):
            if other.pk != by_slug[slug]:
                users[by_slug[slug]].append(other)
    return users


@transaction.atomic
def segments_remove(*, segments: Collection[Segment], user: Actor = None) -> int:
    """Delete these segments (of one merchant) with their memberships, events and history.

    Refused with `SegmentInUseError`, removing nothing, when another segment that is not
    being removed with them uses one of them. Returns how many were removed.
    """
    removing = {segment.pk for segment in segments}
    users = segment_users(segments=segments)
    blocked = []
    for segment in segments:
        others = [u for u in users[segment.pk] if u.pk not in removing]
        if others:
            names = ", ".join(f'"{u.name}"' for u in sorted(others, key=lambda u: u.name))
            blocked.append(IN_USE_ERROR.format(name=segment.name, users=names))
    if blocked:
        raise SegmentInUseError(blocked)
    count = 0
    for segment in segments:
        # Memberships and events have no database constraints: Django deletes them first.
        segment.delete()
        count += 1
    logger.info("User %s removed segments %s", user, sorted(removing))
    return count


def segments_set_active(
    *, segments: Collection[Segment], active: bool, user: Actor = None
) -> list[Segment]:
    """Activate or deactivate these segments; returns those that changed. An inactive
    segment keeps its definition and members but is not refreshed; activating a dynamic one
    queues a refresh."""
    changed = []
    for segment in segments:
        if segment.is_active != active:
            changed.append(segment_update(segment=segment, user=user, is_active=active))
    return changed


def segments_queue_refresh(*, segments: Collection[Segment]) -> list[Segment]:
    """Queue a full refresh of each active dynamic segment (status "queued"); returns them.
    Manual and inactive segments are not refreshed from rules and are left out."""
    queued = [s for s in segments if s.is_dynamic and s.is_active]
    if queued:
        Segment.objects.filter(pk__in=[s.pk for s in queued]).update(
            refresh_status=RefreshStatus.QUEUED
        )
        for segment in queued:
            _enqueue_refresh(segment.pk)
    return queued


@transaction.atomic
def segment_duplicate(*, segment: Segment, user: Actor = None) -> Segment:
    """A new segment with the same definition and schedule, named "<name> (copy)" with a
    slug of its own; a manual segment's members are copied too (events of reason manual), a
    dynamic segment is refreshed from its rules."""
    copy = segment_create(
        merchant=segment.merchant,
        name=COPY_NAME.format(name=segment.name)[:200],
        kind=segment.kind,
        description=segment.description,
        rules=segment.rules,
        created_by=user,
        is_active=segment.is_active,
        refresh_cadence=segment.refresh_cadence,
        refresh_weekday=segment.refresh_weekday,
        refresh_hour=segment.refresh_hour,
    )
    if not segment.is_dynamic:
        segment_members_add(segment=copy, customers=_current_members(segment), user=user)
    return copy


@transaction.atomic
def segment_restore_version(*, segment: Segment, version: int, user: Actor = None) -> Segment:
    """Make an earlier saved version the segment's definition again: name, description and
    rules are saved as a new version (history is never rewritten), and a dynamic segment is
    refreshed from the restored rules. Raises SegmentVersion.DoesNotExist."""
    saved = SegmentVersion.objects.get(segment=segment, version=version)
    return segment_update(
        segment=segment,
        user=user,
        name=saved.name,
        description=saved.description,
        rules=saved.rules,
    )
