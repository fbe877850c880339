"""Receivers that keep memberships current when customers change.

`customers_changed` is sent inside the transaction that wrote purchases, so the receiver
only enqueues work for after the commit. It first checks cheaply that the merchant has an
active dynamic segment at all, so imports and demo seeding of merchants without segments
pay one small query and nothing else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from customers.models import Customer
from segments.models import Segment, SegmentKind
from segments.services import ID_BATCH, INCREMENTAL_MAX_CUSTOMERS, id_batches


def _merchants_with_dynamic_segments(merchant_ids: Iterable[int]) -> set[int]:
    return set(
        Segment.objects.filter(
            merchant_id__in=list(merchant_ids), kind=SegmentKind.DYNAMIC, is_active=True
        )
        .values_list("merchant_id", flat=True)
        .distinct()
    )


def _enqueue_update(merchant_id: int, customer_ids: list[int]) -> None:
    from segments.tasks import refresh_merchant_segments, update_customers

    if len(customer_ids) > INCREMENTAL_MAX_CUSTOMERS:
        transaction.on_commit(lambda: refresh_merchant_segments.delay(merchant_id), robust=True)
    else:
        transaction.on_commit(
            lambda: update_customers.delay(merchant_id, customer_ids), robust=True
        )


def on_customers_changed(
    sender: Any,
    *,
    customer_ids: frozenset[int] | None = None,
    merchant_id: int | None = None,
    **kwargs: Any,
) -> None:
    """Enqueue, on commit, the membership update the change calls for: per customer for a
    set of ids, a full refresh of the merchant's segments for a merchant-wide change (or
    for more than `INCREMENTAL_MAX_CUSTOMERS` customers)."""
    from segments.tasks import refresh_merchant_segments

    if customer_ids is None:
        if merchant_id is not None and _merchants_with_dynamic_segments([merchant_id]):
            transaction.on_commit(lambda: refresh_merchant_segments.delay(merchant_id), robust=True)
        return
    by_merchant: dict[int, list[int]] = defaultdict(list)
    for batch in id_batches(sorted(customer_ids), ID_BATCH):
        for mid, cid in Customer.objects.filter(pk__in=batch).values_list("merchant_id", "pk"):
            by_merchant[mid].append(cid)
    for mid in sorted(_merchants_with_dynamic_segments(by_merchant)):
        _enqueue_update(mid, by_merchant[mid])
