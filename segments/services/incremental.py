"""Incremental updates: a few customers changed, their memberships follow within moments,
evaluated in Python (`seams.evaluator`) and written only where they differ."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable, Mapping

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from customers.models import Customer
from segments.graph import dependency_waves, raw_segment_slugs, segments_in_dependency_order
from segments.models import (
    MembershipReason,
    Segment,
)
from segments.services import seams
from segments.services.common import MembershipChange, members_among, memberships_write

logger = logging.getLogger(__name__)


def _evaluate_customers(
    evaluate: seams.Evaluate, segments: list[Segment], ids: Collection[int]
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


def _lock_segments(segment_ids: Collection[int]) -> list[Segment]:
    """Lock several segments' rows (in id order, so two writers cannot deadlock) for the rest
    of the transaction and return them fresh; on SQLite take the write lock first, as in
    `lock_segment`."""
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
            current = members_among([s.pk for s in segments], ids)
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
            memberships_write(changes, reason=MembershipReason.RULE, now=timezone.now())
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
    customers' rows are loaded once and every segment evaluated in Python (`evaluator`),
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
        Customer.objects.filter(merchant_id=merchant_id, pk__any=list(customer_ids)).values_list(
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
        missing = raw_segment_slugs(candidate.rules) - slugs
        if missing:
            # Its next full refresh fails and records why; never empty it from here.
            logger.warning("Segment %s uses missing segments %s", candidate.pk, missing)
            continue
        segments.append(candidate)
    if not segments:
        return changes
    evaluate = seams.evaluator(segments[0].merchant, every, ids, as_of)
    versions = {segment.pk: segment.definition_version for segment in segments}
    for wave in dependency_waves(segments):
        matched = _evaluate_customers(evaluate, wave, ids)
        current = members_among(list(matched), ids)
        differ = [pk for pk in matched if matched[pk] != current[pk]]
        changes += _apply_incremental(differ, versions, matched, ids)
    return changes
