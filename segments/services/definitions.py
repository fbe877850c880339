"""A segment's definition: create, change, duplicate, restore, switch on and off, remove.

A change of name, description or rules is a new version (`SegmentVersion`, in the same
transaction); new rules are validated first and queue a refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from customers.models import Merchant
from segments.models import (
    RefreshCadence,
    RefreshStatus,
    Segment,
    SegmentKind,
    SegmentVersion,
)
from segments.selectors import segment_removal_plan
from segments.services import seams
from segments.services.common import current_members, lock_segment, user_or_none
from segments.services.manual import segment_members_add
from segments.services.refresh import enqueue_refresh
from segments.services.schedule import segment_next_refresh_at

if TYPE_CHECKING:
    from segments.services.common import Actor

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
MANUAL_RULES_ERROR = "A manual segment has no rules; its members are picked or uploaded."
SLUG_TAKEN_ERROR = 'The merchant already has a segment with the slug "{slug}".'
NAME_TAKEN_ERROR = 'There is already a segment named "{name}": choose another name.'
UNKNOWN_FIELDS_ERROR = "These fields cannot be changed here: {fields}."
NUL_ERROR = "This text contains a NUL character (\\u0000), which cannot be stored."
COPY_NAME = "{name} (copy)"


class SegmentInUseError(ValidationError):
    """Some segments cannot be removed because other segments use them; `messages` names
    each one with the segments that use it. Nothing was removed."""


def _check_no_nul(**texts: object) -> None:
    """PostgreSQL's text cannot hold NUL, nor be compared with a text that does: refused
    here, by field, before the name and slug are looked up (a form's fields refuse it
    themselves; the API's bodies come straight here)."""
    errors = {
        field: [NUL_ERROR]
        for field, text in texts.items()
        if isinstance(text, str) and "\x00" in text
    }
    if errors:
        raise ValidationError(errors)


def _check_name_free(merchant: Merchant, name: str, *, segment: Segment | None) -> None:
    """Names are the merchant's way to tell segments apart: a second segment of the same
    name (any case) is refused, rather than saved under a slug that silently ends in -2."""
    others = Segment.objects.filter(merchant=merchant, name__iexact=name.strip())
    if segment is not None:
        others = others.exclude(pk=segment.pk)
    if others.exists():
        raise ValidationError({"name": NAME_TAKEN_ERROR.format(name=name.strip())})


def _free_copy_name(merchant: Merchant, name: str) -> str:
    """ "<name> (copy)", or "(copy 2)", "(copy 3)"... when taken."""
    base = COPY_NAME.format(name=name)[:190]
    taken = {
        n.lower()
        for n in Segment.objects.filter(merchant=merchant, name__istartswith=base).values_list(
            "name", flat=True
        )
    }
    candidate, n = base, 2
    while candidate.lower() in taken:
        candidate, n = f"{base[:-1]} {n})", n + 1
    return candidate


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


def _version_write(segment: Segment, user: Actor) -> SegmentVersion:
    return SegmentVersion.objects.create(
        segment=segment,
        version=segment.definition_version,
        name=segment.name,
        description=segment.description,
        rules=segment.rules,
        created_by=user_or_none(user),
    )


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
    _check_no_nul(name=name, slug=slug, description=description)
    if kind == SegmentKind.MANUAL:
        if rules:
            raise ValidationError({"rules": MANUAL_RULES_ERROR})
    else:
        seams.validate_rules(rules, merchant=merchant, segment=None)
    _check_name_free(merchant, name, segment=None)
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
        created_by=user_or_none(created_by),
        refresh_cadence=refresh_cadence,
        refresh_weekday=refresh_weekday,
        refresh_hour=refresh_hour,
        refresh_status=RefreshStatus.QUEUED if dynamic and is_active else RefreshStatus.NEVER,
    )
    segment.full_clean(exclude=["merchant", "created_by"])
    segment.save()
    _version_write(segment, created_by)
    if dynamic and is_active:
        enqueue_refresh(segment.pk)
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
    _check_no_nul(**{f: changes[f] for f in ("name", "description") if f in changes})
    locked = lock_segment(segment.pk)
    if locked is None:
        raise Segment.DoesNotExist(segment.pk)
    changed = {k: v for k, v in changes.items() if getattr(locked, k) != v}
    if "rules" in changed:
        changed["rules"] = changed["rules"] or {}
        if locked.kind == SegmentKind.MANUAL:
            if changed["rules"]:
                raise ValidationError({"rules": MANUAL_RULES_ERROR})
        else:
            seams.validate_rules(changed["rules"], merchant=locked.merchant, segment=locked)
    if "name" in changed:
        _check_name_free(locked.merchant, changed["name"], segment=locked)
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
        enqueue_refresh(locked.pk)
    return locked


@transaction.atomic
def segments_remove(*, segments: Collection[Segment], user: Actor = None) -> int:
    """Delete these segments (of one merchant) with their memberships, events and history.

    Refused with `SegmentInUseError`, removing nothing, when the removal plan
    (`selectors.segment_removal_plan`) says another segment that is not being removed with
    them uses one of them. Returns how many were removed.
    """
    removing = {segment.pk for segment in segments}
    plan = segment_removal_plan(segments=segments)
    if not plan.allowed:
        raise SegmentInUseError(plan.messages())
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


@transaction.atomic
def segment_duplicate(*, segment: Segment, user: Actor = None) -> Segment:
    """A new segment with the same definition and schedule, named "<name> (copy)" with a
    slug of its own; a manual segment's members are copied too (events of reason manual), a
    dynamic segment is refreshed from its rules."""
    copy = segment_create(
        merchant=segment.merchant,
        name=_free_copy_name(segment.merchant, segment.name),
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
        segment_members_add(segment=copy, customers=current_members(segment), user=user)
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
