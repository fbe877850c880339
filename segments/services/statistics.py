"""Stored statistics of a segment's members (purchases, predictions, reachability), and the
daily size snapshots."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from itertools import groupby
from typing import Any

from django.db.models import Avg, Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from customers.models import (
    CustomerMetrics,
    CustomerSales,
    SalesSpan,
    Transaction,
    TransactionKind,
)
from segments.exports import REACHABLE
from segments.models import (
    Segment,
    SegmentSizeSnapshot,
)

logger = logging.getLogger(__name__)


#: The window of the activity ratio: an order within this many days before the computation.
ACTIVITY_DAYS = 30


def segment_stats_refresh(*, segment: Segment, as_of: dt.datetime | None = None) -> None:
    """Compute and store the statistics of the segment's members (one aggregate over the
    members' metrics rows joined to their customers, one over the merchant's metrics rows,
    one update), in the caller's transaction. `as_of` (default: now) is the refresh's: the
    activity ratio and "registered" are counted up to it; the rest reads the metrics rows.

    - avg_transaction_value: the members' order totals / the members' orders;
    - avg_transactions: the members' orders / the members;
    - avg_spending: the members' net spend (orders minus refunds) / the members;
    - revenue_share: the members' net spend / the merchant's net spend (0 to 1);
    - avg_clv, avg_churn_risk, avg_p_order_30d: the means of the members' predicted CLV,
      churn risk and P(an order in the next 30 days), over the members that have one;
      predicted_count: how many have a churn risk;
    - activity_ratio: the share of members with an order in [as_of - 30 days, as_of];
    - revenue_30d, buyers_30d: the members' revenue (orders minus refunds) and how many
      ordered in the 30 merchant-local days up to the day of `as_of` (the reports' summary);
    - stats_member_count, and of those: registered_count (joined by as_of),
      purchasers_count (at least one order), and {email,sms,push}_reachable_count (opted in
      to the channel, with an email address / a phone number for email / SMS, as the
      downloads' `exports.REACHABLE`).
    Each is NULL where it is undefined (no members, no orders, no revenue, no predictions).
    """
    exact = as_of is not None
    as_of = as_of or timezone.now()
    since = as_of - dt.timedelta(days=ACTIVITY_DAYS)
    if exact:
        # TRICKY: the metrics rows hold the latest order of all time, which can be after a
        # past `as_of`; the transactions answer for that moment (one index probe a member).
        active = Q(
            Exists(
                Transaction.objects.filter(
                    customer_id=OuterRef("customer_id"),
                    kind=TransactionKind.PURCHASE,
                    occurred_at__gte=since,
                    occurred_at__lte=as_of,
                )
            )
        )
    else:
        active = Q(last_purchase_at__gte=since, last_purchase_at__lte=as_of)
    reachable = {
        f"{key}_reachable": Count("pk", filter=_reachable_q(opt_in, contact))
        for key, (_, opt_in, contact) in REACHABLE.items()
    }
    members = CustomerMetrics.objects.filter(
        merchant_id=segment.merchant_id,
        customer__segment_memberships__segment_id=segment.pk,
    ).aggregate(
        members=Count("pk"),
        orders=Sum("orders_count"),
        gross=Sum("gross_spend"),
        net=Sum("net_spend"),
        mean_clv=Avg("predicted_clv"),
        mean_churn_risk=Avg("churn_risk"),
        mean_p_order_30d=Avg("p_order_30d"),
        predicted=Count("churn_risk"),
        active=Count("pk", filter=active),
        registered=Count("pk", filter=Q(joined_at__lte=as_of)),
        purchasers=Count("pk", filter=Q(orders_count__gt=0)),
        **reachable,
    )
    revenue = CustomerMetrics.objects.filter(merchant_id=segment.merchant_id).aggregate(
        net=Sum("net_spend")
    )["net"]
    # The last 30 merchant-local days to the day of `as_of`, from the reports' summary.
    last_day = segment.merchant.today(as_of)
    recent = CustomerSales.objects.filter(
        merchant_id=segment.merchant_id,
        span=SalesSpan.DAY,
        starts_on__gte=last_day - dt.timedelta(days=ACTIVITY_DAYS - 1),
        starts_on__lte=last_day,
        customer_id__in=segment.memberships.values("customer_id"),
    ).aggregate(
        cents=Sum(F("gross_cents") - F("refund_cents")),
        buyers=Count("customer_id", filter=Q(orders__gt=0), distinct=True),
    )
    count, orders = members["members"], members["orders"] or 0
    net = members["net"] or Decimal(0)
    Segment.objects.filter(pk=segment.pk).update(
        avg_transaction_value=_ratio(members["gross"], orders),
        avg_transactions=_ratio(Decimal(orders), count),
        avg_spending=_ratio(net, count),
        revenue_share=_ratio(net, revenue, places="0.0001") if revenue and revenue > 0 else None,
        avg_clv=_rounded(members["mean_clv"]),
        avg_churn_risk=_rounded(members["mean_churn_risk"], places="0.0001"),
        avg_p_order_30d=_rounded(members["mean_p_order_30d"], places="0.0001"),
        predicted_count=members["predicted"],
        activity_ratio=_ratio(members["active"], count, places="0.0001"),
        stats_member_count=count,
        registered_count=members["registered"],
        purchasers_count=members["purchasers"],
        email_reachable_count=members["email_reachable"],
        sms_reachable_count=members["sms_reachable"],
        push_reachable_count=members["push_reachable"],
        revenue_30d=Decimal(recent["cents"] or 0) / 100,
        buyers_30d=recent["buyers"],
        stats_computed_at=timezone.now(),
    )


def _reachable_q(opt_in: str, contact: str) -> Q:
    """Opted in to the channel (the flag copied on the metrics row), and for email and SMS
    with an address or number on the customer."""
    q = Q(**{opt_in: True})
    return q & ~Q(**{f"customer__{contact}": ""}) if contact else q


def _ratio(numerator: Any, denominator: Any, places: str = "0.01") -> Decimal | None:
    if not denominator or numerator is None:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(places))


def _rounded(value: Decimal | float | None, places: str = "0.01") -> Decimal | None:
    # Through str(): a float's shortest form, not its binary expansion, is what is rounded.
    return None if value is None else Decimal(str(value)).quantize(Decimal(places))


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
