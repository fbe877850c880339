"""Celery entry points of the customers app: thin, they take ids and call a service."""

from __future__ import annotations

from celery import shared_task

from customers.models import Merchant
from customers.scores.service import scores_compute
from customers.scores.settings import scores_due


@shared_task
def compute_merchant_scores(merchant_id: int, scheduled: bool = True) -> dict[str, object] | None:
    """Compute and store every score of one merchant's customers (now): `scheduled` for the
    schedule's run (which also applies tier downgrades), not for "recompute now". Returns
    the summary, or None when the merchant is gone."""
    merchant = Merchant.objects.filter(pk=merchant_id).first()
    if merchant is None:
        return None
    return scores_compute(merchant=merchant, scheduled=scheduled)


@shared_task
def compute_due_scores() -> int:
    """Run by beat every hour: queue the computations whose time has come (each merchant's
    cadence, in its own time zone); returns how many were queued."""
    due = scores_due()
    for merchant in due:
        compute_merchant_scores.delay(merchant.pk)
    return len(due)
