"""Creating the ready-made segments over the customer scores (`segments.ready_made`)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from customers.models import Merchant
from segments.models import Segment, SegmentKind
from segments.ready_made import ready_made_segments, taken_check
from segments.services.definitions import segment_create


def segments_add_ready_made(*, merchant: Merchant, family: str, user: Any = None) -> list[Segment]:
    """Create the family's segments the merchant does not have yet (by slug, or by name),
    each refreshed on commit; returns the ones created. ValueError for an unknown family."""
    wanted = ready_made_segments(merchant=merchant, family=family)
    taken = taken_check(merchant)
    created = []
    with transaction.atomic():
        for item in wanted:
            if taken(item.slug, item.name):
                continue
            created.append(
                segment_create(
                    merchant=merchant,
                    name=item.name,
                    slug=item.slug,
                    description=item.description,
                    kind=SegmentKind.DYNAMIC,
                    rules=item.rules,
                    created_by=user,
                )
            )
    return created
