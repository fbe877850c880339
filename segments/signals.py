"""Receivers that keep memberships current when customers change.

`customers_changed` is sent inside the transaction that wrote purchases (by the write chain
of `customers.services`, once per merchant), so the receiver only enqueues work for after the
commit. It first checks cheaply that the merchant has an active dynamic segment at all, so
imports and demo seeding of merchants without segments pay one small query and nothing else.
Whether a change is per customer or merchant-wide is the sender's decision, not this one's.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal

from segments.models import Segment, SegmentKind

#: Sent by every write of membership events (a refresh, an incremental update, manual
#: sourcing), inside its transaction. Arguments: `merchant_id`, `segment_ids` and
#: `occurred_at`: the events of this write are those of these segments at that instant.
#: Other apps listen (webhooks: `campaigns`); nothing here does.
memberships_changed = Signal()


def _has_dynamic_segments(merchant_id: int) -> bool:
    return Segment.objects.filter(
        merchant_id=merchant_id, kind=SegmentKind.DYNAMIC, is_active=True
    ).exists()


def on_customers_changed(
    sender: Any,
    *,
    merchant_id: int,
    customer_ids: frozenset[int] | None = None,
    fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """Enqueue, on commit, what the change calls for: an incremental update of these
    customers, or, for a merchant-level change (`customer_ids`
    None: many customers at once, decided by `customers.services`), a full refresh of the
    merchant's segments, or of only the segments that read the columns the change names
    (`fields`). Nothing for a merchant without active
    dynamic segments."""
    from segments.tasks import refresh_merchant_segments, update_customers

    if not _has_dynamic_segments(merchant_id):
        return
    if fields is not None and customer_ids is None:
        # Many customers, but only these columns changed: only the segments that read them
        # (and those built on them) follow; a campaign marking 100,000 customers contacted
        # refreshes the "not contacted in 30 days" segments, not every segment.
        from segments.services import segments_reading
        from segments.tasks import refresh_segments

        reading = [s.pk for s in segments_reading(merchant_id=merchant_id, fields=fields)]
        if reading:
            transaction.on_commit(lambda: refresh_segments.delay(reading), robust=True)
        return
    if customer_ids is None:
        transaction.on_commit(lambda: refresh_merchant_segments.delay(merchant_id), robust=True)
        return
    ids = sorted(customer_ids)
    transaction.on_commit(lambda: update_customers.delay(merchant_id, ids), robust=True)
