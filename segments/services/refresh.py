"""Full refreshes: a segment's membership brought up to date with its rules, in SQL.

Three steps (`refresh_start`, the rules compiled once into a temporary table, the difference
applied by `diff_statements`), under the segment's lock with a version check, so an edit
made meanwhile supersedes the refresh and a failure keeps the old members with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from customers.sql import adapt
from segments.graph import raw_segment_slugs, segments_in_dependency_order
from segments.models import (
    MembershipEvent,
    MembershipEventKind,
    MembershipReason,
    RefreshStatus,
    Segment,
    SegmentKind,
    SegmentMembership,
)
from segments.services import seams
from segments.services.common import lock_segment
from segments.services.schedule import segment_next_refresh_at
from segments.services.statistics import segment_stats_refresh, snapshot_write
from segments.signals import memberships_changed

logger = logging.getLogger(__name__)

RefreshOutcome = Literal["ok", "superseded", "failed", "skipped"]


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


def enqueue_refresh(segment_id: int) -> None:
    from segments.tasks import refresh_segment

    transaction.on_commit(lambda: refresh_segment.delay(segment_id), robust=True)


#: The temporary table a full refresh materialises the compiled member ids into.
REFRESH_TABLE = "sp_refresh_members"


def diff_statements(
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
    # Written as the ORM writes it (SQLite: text without the "+00:00" a raw parameter gets),
    # so that `occurred_at=now` finds these rows again (webhooks read them back).
    [stamp] = adapt([now])
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
            [sid, MembershipEventKind.EXIT, rule, stamp, version, sid],
        ),
        (f"DELETE FROM {membership} WHERE {membership}.segment_id = %s AND {gone}", [sid]),
        (
            f"INSERT INTO {events} (segment_id, customer_id, kind, reason, occurred_at, "
            f"definition_version) SELECT %s, c.customer_id, %s, %s, %s, %s {new}",
            [sid, MembershipEventKind.ENTRY, rule, stamp, version, sid],
        ),
        (
            f"INSERT INTO {membership} (segment_id, customer_id, since) "
            f"SELECT %s, c.customer_id, %s {new}",
            [sid, stamp, sid],
        ),
        (f"DROP TABLE {members}", []),
    ]


def refresh_start(segment_id: int) -> Segment | None:
    """First, short transaction: mark the segment running and note the version it starts
    from. None when there is nothing to refresh (missing, manual or inactive)."""
    with transaction.atomic():
        segment = lock_segment(segment_id)
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
    segment = refresh_start(segment_id)
    if segment is None:
        return RefreshResult(segment_id=segment_id, status="skipped")
    started_version = segment.definition_version

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with transaction.atomic():
            locked = lock_segment(segment_id)
            if locked is None or not locked.is_dynamic or not locked.is_active:
                outcome: RefreshOutcome = "skipped"
            else:
                # Stored rules can go stale (a segment they use was deleted, which the
                # compiler would read as "nobody"): fail loudly and keep the old members.
                seams.validate_rules(locked.rules, merchant=locked.merchant, segment=locked)
                queryset = seams.matching_queryset(locked, as_of)
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
                with seams.evaluation_settings(), connection.cursor() as cursor:
                    for sql, params in diff_statements(locked, queryset, now, started_version):
                        cursor.execute(sql, params)
                        counts.append(max(cursor.rowcount, 0))
                # The rows deleted and inserted: the third and second statements from the end.
                exited, entered = counts[-4], counts[-2]
                if exited or entered:
                    memberships_changed.send(
                        sender=Segment,
                        merchant_id=locked.merchant_id,
                        segment_ids=[segment_id],
                        occurred_at=now,
                    )
                member_count = SegmentMembership.objects.filter(segment_id=segment_id).count()
                segment_stats_refresh(segment=locked, as_of=as_of)
                snapshot_write(locked, member_count, now)
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


def active_dynamic(merchant_id: int) -> list[Segment]:
    segments = Segment.objects.filter(
        merchant_id=merchant_id, kind=SegmentKind.DYNAMIC, is_active=True
    ).select_related("merchant")
    return segments_in_dependency_order(list(segments))


def merchant_segments_refresh(
    *, merchant_id: int, as_of: dt.datetime | None = None
) -> list[RefreshResult]:
    """Fully refresh every active dynamic segment of a merchant, in dependency order."""
    return [segment_refresh(segment_id=s.pk, as_of=as_of) for s in active_dynamic(merchant_id)]


def segments_reading(*, merchant_id: int, fields: Collection[str]) -> list[Segment]:
    """The merchant's active dynamic segments whose rules have a criterion that reads one of
    `fields` (`Criterion.reads`), with every segment built on one of them, in dependency
    order."""
    from segments.criteria import REGISTRY
    from segments.rule_tree import RuleValidationError
    from segments.rules import parse_rules

    wanted = set(fields)
    segments = active_dynamic(merchant_id)
    reading: set[str] = set()
    for segment in segments:
        try:
            tree = parse_rules(segment.rules)
        except RuleValidationError:  # no longer parses: refresh it, the refresh says why
            reading.add(segment.slug)
            continue
        if any(
            REGISTRY[c.field].reads & wanted for _, c in tree.conditions() if c.field in REGISTRY
        ):
            reading.add(segment.slug)
    # Segments built on those follow them (dependency order: dependencies come first).
    for segment in segments:
        if raw_segment_slugs(segment.rules) & reading:
            reading.add(segment.slug)
    return [s for s in segments if s.slug in reading]


def refresh_in_order(*, segment_ids: Collection[int]) -> list[RefreshResult]:
    """Fully refresh these segments, in dependency order (one merchant's)."""
    segments = list(Segment.objects.filter(pk__in=segment_ids).select_related("merchant"))
    return [segment_refresh(segment_id=s.pk) for s in segments_in_dependency_order(segments)]


def segments_queue_refresh(*, segments: Collection[Segment]) -> list[Segment]:
    """Queue a full refresh of each active dynamic segment (status "queued"); returns them.
    Manual and inactive segments are not refreshed from rules and are left out."""
    queued = [s for s in segments if s.is_dynamic and s.is_active]
    if queued:
        Segment.objects.filter(pk__in=[s.pk for s in queued]).update(
            refresh_status=RefreshStatus.QUEUED
        )
        for segment in queued:
            enqueue_refresh(segment.pk)
    return queued


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
