"""Demo segments: the template segments, a hand-picked list and the ready-made score
segments (lifecycle stages, RFM groups, tiers, smart segments) for a demo merchant, with a
size history, so a new portal shows segments, statistics and charts at once.

The history is true to the data, not invented: each past week's point is the number of
customers the segment's rules matched at the end of that merchant-local day, counted by the
engine's exact path over the transactions up to that instant.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from customers.models import Customer, CustomerMetrics, Merchant, ScoreChange
from customers.scores.definitions import UNSCORED_GROUP
from customers.scores.service import scores_compute
from customers.scores.smart import NO_ORDER_SEGMENT
from segments import engine, services
from segments.models import Segment, SegmentKind, SegmentSizeSnapshot
from segments.ready_made import FAMILIES
from segments.templates_catalog import TEMPLATES

CALL_LIST_NAME = "Front desk call list"
CALL_LIST_DESCRIPTION = "Picked by hand: the top spenders the store manager calls each month."
CALL_LIST_SIZE = 25


def seed_segments(*, merchant: Merchant, user: Any = None, weeks: int = 12) -> list[Segment]:
    """Create the template segments (dynamic) and a manual call list for `merchant`, fill
    them, and write a size point for the end of each of the past `weeks` weeks."""
    with transaction.atomic():
        segments = [
            services.segment_create(
                merchant=merchant,
                name=template["name"],
                description=template["description"],
                kind=SegmentKind.DYNAMIC,
                rules=template["rules"],
                created_by=user,
            )
            for template in TEMPLATES
        ]
    # Filled now, whether or not a worker would pick the queued refreshes up (a refresh
    # with nothing to change writes nothing).
    for segment in segments:
        services.segment_refresh(segment_id=segment.pk)
    call_list = services.segment_create(
        merchant=merchant,
        name=CALL_LIST_NAME,
        description=CALL_LIST_DESCRIPTION,
        kind=SegmentKind.MANUAL,
        created_by=user,
    )
    top = Customer.objects.filter(merchant=merchant).order_by("-metrics__net_spend", "pk")
    services.segment_members_add(segment=call_list, customers=list(top[:CALL_LIST_SIZE]), user=user)
    for segment in segments:
        backfill_sizes(segment, weeks=weeks)
    ready = [
        segment
        for family in FAMILIES
        for segment in services.segments_add_ready_made(merchant=merchant, family=family, user=user)
    ]
    backfill_scores(merchant, ready, weeks=weeks)
    services.segment_snapshot_sizes()  # today's point, the call list's too
    return [*segments, call_list, *ready]


def backfill_scores(merchant: Merchant, segments: list[Segment], *, weeks: int) -> None:
    """Compute the merchant's scores as of the end of the same weekday of each of the past
    `weeks` weeks, oldest first, and write the size of each score segment then; then as of
    now. The stage and tier history (and the transitions page) is so built in time order
    from the data: the scores the import left are set aside first."""
    today = merchant.today()
    ScoreChange.objects.filter(merchant=merchant).delete()
    CustomerMetrics.objects.filter(merchant=merchant).update(
        lifecycle_stage=None,
        rfm_recency=None,
        rfm_frequency=None,
        rfm_monetary=None,
        rfm_group=UNSCORED_GROUP,
        p_alive=None,
        churn_risk=None,
        expected_orders_90d=None,
        p_order_30d=None,
        predicted_clv=None,
        smart_segment=NO_ORDER_SEGMENT,
        churn_cutoff_on=None,
    )
    points = []
    for week in range(weeks, 0, -1):
        day = today - dt.timedelta(weeks=week)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), merchant.tzinfo)
        as_of = end - dt.timedelta(microseconds=1)
        scores_compute(merchant=merchant, as_of=as_of, announce=False, holdout=False)
        for segment in segments:
            count = engine.count_matching(merchant=merchant, rules=segment.rules, as_of=as_of)
            points.append(SegmentSizeSnapshot(segment=segment, day=day, member_count=count))
    _write_points(points)
    scores_compute(merchant=merchant, announce=False)
    for segment in segments:
        services.segment_refresh(segment_id=segment.pk)


def backfill_sizes(segment: Segment, *, weeks: int) -> None:
    """A size point at the end of the same weekday for each of the past `weeks` weeks."""
    merchant = segment.merchant
    today = merchant.today()
    points = []
    for week in range(1, weeks + 1):
        day = today - dt.timedelta(weeks=week)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), merchant.tzinfo)
        as_of = end - dt.timedelta(microseconds=1)
        count = engine.count_matching(merchant=merchant, rules=segment.rules, as_of=as_of)
        points.append(SegmentSizeSnapshot(segment=segment, day=day, member_count=count))
    _write_points(points)


def _write_points(points: list[SegmentSizeSnapshot]) -> None:
    """Write size points, replacing those of the same segment and day."""
    SegmentSizeSnapshot.objects.bulk_create(
        points,
        update_conflicts=True,
        unique_fields=["segment", "day"],
        update_fields=["member_count"],
    )
