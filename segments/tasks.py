"""Celery entry points: thin, they take ids and call a service.

Enqueue them with `transaction.on_commit(lambda: task.delay(...))` so a worker never looks
for rows its caller has not committed yet. Without a broker they run in-process.
"""

from __future__ import annotations

from celery import shared_task

from segments import services


@shared_task
def refresh_segment(segment_id: int) -> str:
    """Fully refresh one segment; returns the outcome ("ok", "superseded", ...)."""
    return services.segment_refresh(segment_id=segment_id).status


@shared_task
def update_customers(merchant_id: int, customer_ids: list[int]) -> int:
    """Re-evaluate these customers against the merchant's dynamic segments; returns how
    many segments changed."""
    changes = services.segment_memberships_update_for_customers(
        merchant_id=merchant_id, customer_ids=customer_ids
    )
    return len(changes)


@shared_task
def refresh_merchant_segments(merchant_id: int) -> list[str]:
    """Fully refresh every active dynamic segment of a merchant, in dependency order."""
    return [r.status for r in services.merchant_segments_refresh(merchant_id=merchant_id)]


@shared_task
def refresh_segments(segment_ids: list[int]) -> list[str]:
    """Fully refresh these segments (of one merchant), in dependency order."""
    return [r.status for r in services.refresh_in_order(segment_ids=segment_ids)]


@shared_task
def refresh_due_segments() -> int:
    """Run by beat every few minutes: refresh the segments whose time has come; returns how
    many were refreshed."""
    return len(services.segments_refresh_due())


@shared_task
def snapshot_segment_sizes() -> int:
    """Run by beat every hour: record each segment's member count for the merchant-local day
    (the size-over-time chart); returns how many were written."""
    return services.segment_snapshot_sizes()
