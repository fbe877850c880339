"""Stored statistics of a segment's members, and the daily size snapshots."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from itertools import groupby
from typing import Any

from django.db.models import Count, Sum
from django.utils import timezone

from customers.models import CustomerMetrics
from segments.models import (
    Segment,
    SegmentSizeSnapshot,
)

logger = logging.getLogger(__name__)


def segment_stats_refresh(*, segment: Segment) -> None:
    """Compute and store the statistics of the segment's members' purchases (one aggregate
    over the members' metrics rows, one over the merchant's, one update), in the caller's
    transaction.

    - avg_transaction_value: the members' order totals / the members' orders;
    - avg_transactions: the members' orders / the members;
    - avg_spending: the members' net spend (orders minus refunds) / the members;
    - revenue_share: the members' net spend / the merchant's net spend (0 to 1);
    - avg_clv: empty until predicted lifetime value exists.
    Each is NULL where it is undefined (no members, no orders, no revenue).
    """
    members = CustomerMetrics.objects.filter(
        merchant_id=segment.merchant_id,
        customer__segment_memberships__segment_id=segment.pk,
    ).aggregate(
        members=Count("pk"),
        orders=Sum("orders_count"),
        gross=Sum("gross_spend"),
        net=Sum("net_spend"),
    )
    revenue = CustomerMetrics.objects.filter(merchant_id=segment.merchant_id).aggregate(
        net=Sum("net_spend")
    )["net"]
    count, orders = members["members"], members["orders"] or 0
    net = members["net"] or Decimal(0)
    Segment.objects.filter(pk=segment.pk).update(
        avg_transaction_value=_ratio(members["gross"], orders),
        avg_transactions=_ratio(Decimal(orders), count),
        avg_spending=_ratio(net, count),
        revenue_share=_ratio(net, revenue, places="0.0001") if revenue and revenue > 0 else None,
        avg_clv=None,
        stats_computed_at=timezone.now(),
    )


def _ratio(numerator: Any, denominator: Any, places: str = "0.01") -> Decimal | None:
    if not denominator or numerator is None:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(places))


def segment_snapshot_sizes(*, now: dt.datetime | None = None) -> int:
    """Record every segment's member count for its merchant's local day (updating the day's
    row when it exists); returns how many rows were written. Run hourly by beat."""
    now = now or timezone.now()
    written = 0
    segments = Segment.objects.select_related("merchant").only(
        "pk", "member_count", "merchant__time_zone"
    )
    by_merchant = groupby(segments.order_by("merchant_id", "pk"), lambda s: s.merchant_id)
    for merchant_id, group in by_merchant:
        rows = list(group)
        day = rows[0].merchant.today(now)
        SegmentSizeSnapshot.objects.bulk_create(
            [SegmentSizeSnapshot(segment=s, day=day, member_count=s.member_count) for s in rows],
            update_conflicts=True,
            unique_fields=["segment", "day"],
            update_fields=["member_count"],
        )
        written += len(rows)
        logger.debug("Snapshot of %s segments of merchant %s", len(rows), merchant_id)
    return written


def snapshot_write(segment: Segment, member_count: int, now: dt.datetime) -> None:
    """Write (or overwrite) the segment's size for the merchant-local day of `now`."""
    SegmentSizeSnapshot.objects.bulk_create(
        [
            SegmentSizeSnapshot(
                segment=segment, day=segment.merchant.today(now), member_count=member_count
            )
        ],
        update_conflicts=True,
        unique_fields=["segment", "day"],
        update_fields=["member_count"],
    )
