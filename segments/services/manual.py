"""Manual segments: members picked one by one or uploaded as a list."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from customers.models import Customer
from segments.models import (
    MembershipReason,
    Segment,
    SegmentKind,
)
from segments.services.common import (
    ID_BATCH,
    MembershipChange,
    current_members,
    id_batches,
    lock_segment,
    membership_write,
)
from segments.services.statistics import segment_stats_refresh

if TYPE_CHECKING:
    from segments.services.common import Actor

logger = logging.getLogger(__name__)

UPLOAD_MAX_ERRORS = 50
NOT_MANUAL_ERROR = "Only a manual segment's members are picked or uploaded by hand."
OTHER_MERCHANT_ERROR = "These customers do not belong to the segment's merchant: {ids}."
UPLOAD_HEADER_ERROR = 'line 1: the header must be "external_id".'
UPLOAD_UNKNOWN_ERROR = 'line {line}: no customer with external_id "{external_id}".'
UPLOAD_MORE_ERRORS = "... and {count} more unknown external ids."
UPLOAD_ENCODING_ERROR = "The file is not UTF-8 text."


class MembershipUploadError(ValueError):
    """An uploaded member list was refused; nothing was written. `errors` name the lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _manual_locked(segment: Segment) -> Segment:
    if segment.kind != SegmentKind.MANUAL:
        raise ValidationError(NOT_MANUAL_ERROR)
    locked = lock_segment(segment.pk)
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
    reason: str = MembershipReason.MANUAL,
) -> MembershipChange:
    """Add customers (objects or ids, of the segment's merchant) to a manual segment.
    Customers already in it are left as they are (the change's `entered` leaves them out).
    `user` is who did it (for the log); `reason` goes on the entry events (the API's
    writes say "api")."""
    locked = _manual_locked(segment)
    ids = _own_customer_ids(locked, customers)
    entered = ids - current_members(locked, ids)
    if entered:  # (adding only members changes nothing, statistics included)
        membership_write(locked, entered=entered, exited=(), reason=reason, now=timezone.now())
        segment_stats_refresh(segment=locked)
    logger.info("User %s added %s customers to segment %s", user, len(entered), locked.pk)
    return MembershipChange(segment_id=locked.pk, entered=entered)


@transaction.atomic
def segment_members_remove(
    *,
    segment: Segment,
    customers: Iterable[Customer | int],
    user: Actor = None,
    reason: str = MembershipReason.MANUAL,
) -> MembershipChange:
    """Remove customers (objects or ids) from a manual segment; non-members are ignored.
    `reason` goes on the exit events."""
    locked = _manual_locked(segment)
    ids = _own_customer_ids(locked, customers)
    exited = current_members(locked, ids)
    membership_write(locked, entered=(), exited=exited, reason=reason, now=timezone.now())
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
    *,
    segment: Segment,
    file: IO[bytes] | IO[str],
    user: Actor = None,
    reason: str = MembershipReason.UPLOAD,
) -> MembershipChange:
    """Replace a manual segment's members by the customers listed in a CSV file.

    The file has the header `external_id` and one external id per line (blank lines are
    skipped, duplicates are fine), naming customers of the segment's merchant. If any id is
    unknown, `MembershipUploadError` lists the lines (the first 50) and nothing is written.
    Otherwise listed non-members enter and unlisted members leave, with events of reason
    `reason` (default "upload"); uploading the same file again changes nothing.
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
    return _replace(locked, set(by_external.values()), user=user, reason=reason)


@transaction.atomic
def segment_members_replace(
    *,
    segment: Segment,
    customers: Iterable[Customer | int],
    user: Actor = None,
    reason: str = MembershipReason.MANUAL,
) -> MembershipChange:
    """Make these customers (objects or ids, of the segment's merchant) the manual
    segment's members: the others leave, with events of reason `reason` (a third-party
    system sourcing the segment through the API says "api")."""
    locked = _manual_locked(segment)
    return _replace(locked, _own_customer_ids(locked, customers), user=user, reason=reason)


def _replace(locked: Segment, wanted: set[int], *, user: Actor, reason: str) -> MembershipChange:
    """Write the difference between `wanted` and the locked segment's members."""
    current = current_members(locked)
    change = MembershipChange(
        segment_id=locked.pk, entered=wanted - current, exited=current - wanted
    )
    membership_write(
        locked,
        entered=change.entered,
        exited=change.exited,
        reason=reason,
        now=timezone.now(),
    )
    segment_stats_refresh(segment=locked)
    logger.info(
        "User %s set %s members of segment %s (+%s -%s)",
        user,
        len(wanted),
        locked.pk,
        len(change.entered),
        len(change.exited),
    )
    return change
