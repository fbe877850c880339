"""What every write of the segments app shares: who did it, the segment's lock, and the
membership rows with their events (`memberships_write`)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from django.db import connection
from django.db.models import Case, F, Field, Model, Value, When

from segments.models import (
    MembershipEvent,
    MembershipEventKind,
    Segment,
    SegmentMembership,
)
from segments.signals import memberships_changed

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

    #: Who did it: a request's user (anonymous means nobody) or None.
    Actor = User | AbstractBaseUser | AnonymousUser | None

logger = logging.getLogger(__name__)

#: Customers per statement when ids are written or read in batches.
ID_BATCH = 500


@dataclass
class MembershipChange:
    """Entries and exits applied to one segment."""

    segment_id: int
    entered: set[int] = field(default_factory=set)
    exited: set[int] = field(default_factory=set)


def id_batches(ids: Iterable[int], size: int = ID_BATCH) -> Iterator[list[int]]:
    iterator = iter(ids)
    while batch := list(islice(iterator, size)):
        yield batch


def lock_segment(segment_id: int) -> Segment | None:
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


def user_or_none(actor: Actor) -> User | None:
    """The user to record, or None (nobody, or an anonymous request)."""
    if actor is None or not actor.is_authenticated:
        return None
    return actor  # type: ignore[return-value]


def memberships_write(
    changes: Collection[tuple[Segment, MembershipChange]], *, reason: str, now: dt.datetime
) -> None:
    """Write the membership rows, events and `member_count` of several segments' changes:
    a handful of statements whatever the number of segments."""
    _insert(
        SegmentMembership,
        ("segment", "customer"),
        [(segment.pk, c) for segment, change in changes for c in sorted(change.entered)],
        {"since": now},
    )
    # One DELETE per segment and batch of ids (an index range each), not an OR of pairs,
    # which PostgreSQL plans slowly once there are hundreds of them.
    for segment, change in changes:
        for batch in id_batches(sorted(change.exited)):
            SegmentMembership.objects.filter(segment_id=segment.pk, customer_id__any=batch).delete()
    _insert(
        MembershipEvent,
        ("segment", "customer", "kind", "definition_version"),
        [
            (segment.pk, c, kind.value, segment.definition_version)
            for segment, change in changes
            for kind, ids in (
                (MembershipEventKind.EXIT, change.exited),
                (MembershipEventKind.ENTRY, change.entered),
            )
            for c in sorted(ids)
        ],
        {"reason": reason, "occurred_at": now},
    )
    deltas = {
        segment.pk: len(change.entered) - len(change.exited)
        for segment, change in changes
        if change.entered or change.exited
    }
    moved: dict[int, list[int]] = {}
    for segment, change in changes:
        if change.entered or change.exited:
            moved.setdefault(segment.merchant_id, []).append(segment.pk)
    for merchant_id, segment_ids in moved.items():
        memberships_changed.send(
            sender=Segment, merchant_id=merchant_id, segment_ids=segment_ids, occurred_at=now
        )
    if deltas:
        Segment.objects.filter(pk__in=list(deltas)).update(
            member_count=F("member_count")
            + Case(*(When(pk=pk, then=Value(d)) for pk, d in deltas.items()), default=Value(0))
        )


def _insert(
    model: type[Model],
    names: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    constants: dict[str, Any] | None = None,
) -> None:
    """Insert plain rows of these fields, without model instances: a `bulk_create` of a few
    thousand memberships spent most of its time preparing each field of each instance.
    `constants`: fields with the same value in every row (sent once, not once a row).
    PostgreSQL: one statement over parallel arrays; SQLite: `executemany`."""
    if not rows:
        return
    constants = constants or {}
    fields = [cast(Field, model._meta.get_field(name)) for name in (*names, *constants)]
    table, columns = model._meta.db_table, ", ".join(f.column for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields[: len(names)])
            scalars = "".join(f", %s::{f.db_type(connection)}" for f in fields[len(names) :])
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT *{scalars} FROM unnest({arrays})",
                [
                    *constants.values(),  # the scalars come first in the statement
                    *(list(values) for values in zip(*rows, strict=True)),
                ],
            )
            return
        marks = ", ".join(["%s"] * len(fields))
        fixed = tuple(constants.values())
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",
            [
                [
                    f.get_db_prep_save(v, connection)
                    for f, v in zip(fields, row + fixed, strict=True)
                ]
                for row in rows
            ],
        )


def membership_write(
    segment: Segment,
    *,
    entered: Collection[int],
    exited: Collection[int],
    reason: str,
    now: dt.datetime,
) -> None:
    """Write the membership rows, events and member_count for one segment's change."""
    change = MembershipChange(segment_id=segment.pk, entered=set(entered), exited=set(exited))
    memberships_write([(segment, change)], reason=reason, now=now)


def current_members(segment: Segment, ids: Collection[int] | None = None) -> set[int]:
    members = SegmentMembership.objects.filter(segment=segment)
    if ids is None:
        return set(members.values_list("customer_id", flat=True))
    found: set[int] = set()
    for batch in id_batches(sorted(ids)):
        found.update(members.filter(customer_id__in=batch).values_list("customer_id", flat=True))
    return found


def members_among(segment_ids: Collection[int], ids: Collection[int]) -> dict[int, set[int]]:
    """For each segment, which of the customers `ids` are its members now (one query a batch).

    Reads all the customers' memberships and keeps those of `segment_ids` here: a range of
    the (customer, segment) index per customer, where filtering on a long list of segments
    made PostgreSQL probe the index once per segment."""
    found: dict[int, set[int]] = {pk: set() for pk in segment_ids}
    if not found:
        return found
    for batch in id_batches(sorted(ids)):
        rows = SegmentMembership.objects.filter(customer_id__any=batch)
        for segment_id, customer_id in rows.values_list("segment_id", "customer_id"):
            if segment_id in found:
                found[segment_id].add(customer_id)
    return found
