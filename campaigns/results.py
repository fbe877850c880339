"""A campaign's results: what happened to its deliveries, and the lift it measured against
its holdout (the control group who received nothing).

The contract (`docs/campaigns.md`, "Results and lift", says it for marketers):

- Recipients: the deliveries with status `sent`. Holdout: the deliveries `skipped` with
  reason `holdout`, a random, stable share of the eligible audience that received nothing.
- Attribution window: a recipient's starts at its `sent_at`; a holdout member's at its
  `not_before` when set (when it would have been sent, e.g. after quiet hours), else at the
  campaign's `started_at`. It lasts `attribution_days` days (or the `days` asked for), start
  included, end excluded.
- Conversion: at least one purchase (kind `purchase`) of the campaign's merchant by the
  member in their window. Revenue: the sum of those purchases' totals; refunds are not
  subtracted (a refund is neither a conversion nor negative revenue).
- Conversion rate = converters / group size; revenue per member = revenue / group size
  (non-converters count as 0).
- Lift: recipients' rate minus the holdout's, with a 95 % interval by Newcombe's hybrid
  score method (Newcombe 1998, method 10: the two Wilson score intervals combined), which
  keeps its coverage at the low rates campaigns have, where the simple Wald interval does
  not; the relative lift is that difference over the holdout's rate. The difference of
  revenue per member has a 95 % interval by Welch's normal approximation.
- Not ready: while either group has fewer than `MIN_GROUP_SIZE` members, or fewer than
  `MIN_OUTCOMES` converters or non-converters, the lift cannot be told yet: the intervals
  are None and `not_ready_reason` says why; the point estimates are kept.

Every query starts from the campaign's own deliveries, and purchases are the campaign's
merchant's only: `campaign_results` trusts its caller to have loaded the campaign from the
current merchant's rows.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DecimalField,
    Exists,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from campaigns.models import Campaign, Delivery, DeliveryStatus, SkipReason
from customers.models import Transaction, TransactionKind

#: The normal quantile of a two-sided 95 % interval.
Z95 = 1.959964
#: Fewer members in either group, or fewer converters or non-converters than
#: `MIN_OUTCOMES`, and the normal approximations behind both intervals are not trusted.
MIN_GROUP_SIZE = 30
MIN_OUTCOMES = 5
#: How many of the most common error texts of failed deliveries are listed.
TOP_ERRORS = 5

CENT = Decimal("0.01")

NOT_STARTED_REASON = "The campaign has not been sent yet."
NO_HOLDOUT_REASON = (
    "The campaign has no holdout: without a control group the lift cannot be measured."
)
GROUP_TOO_SMALL_REASON = (
    "The {group} has {count} members; the lift can be told from {minimum} in each group."
)
TOO_FEW_CONVERTERS_REASON = (
    "The {group} has {count} converters; the lift can be told from {minimum} in each group."
)
TOO_FEW_NON_CONVERTERS_REASON = (
    "The {group} has {count} members who did not convert; the lift can be told from "
    "{minimum} in each group."
)


# --- the statistics -----------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes / n` (Wilson 1927): the
    proportions p whose score test |p̂ - p| / sqrt(p(1 - p)/n) ≤ z. Unlike the Wald interval
    it stays within [0, 1] and is not empty at 0 or n successes. Raises ValueError when
    n < 1 or successes is not within 0..n."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, n >= 1: {successes}/{n}")
    p = successes / n
    z2 = z * z
    centre = (successes + z2 / 2) / (n + z2)
    half = z * math.sqrt(n) / (n + z2) * math.sqrt(p * (1 - p) + z2 / (4 * n))
    # TRICKY: at 0 (or n) successes the bound is exactly 0 (or 1); floating point may leave
    # a crumb either side.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def newcombe_difference(
    x1: int, n1: int, x0: int, n0: int, z: float = Z95
) -> tuple[float, float, float]:
    """The difference of two independent proportions x1/n1 - x0/n0 with its interval by
    Newcombe's hybrid score method (Newcombe 1998, "Interval estimation for the difference
    between independent proportions: comparison of eleven methods", Statistics in Medicine
    17:873-890, method 10): with (l, u) each proportion's Wilson interval and d = p1 - p0,

        low  = d - sqrt((p1 - l1)² + (u0 - p0)²)
        high = d + sqrt((u1 - p1)² + (p0 - l0)²)

    Returns (difference, low, high). Raises ValueError as `wilson_interval` does."""
    low1, high1 = wilson_interval(x1, n1, z)
    low0, high0 = wilson_interval(x0, n0, z)
    p1, p0 = x1 / n1, x0 / n0
    difference = p1 - p0
    low = difference - math.sqrt((p1 - low1) ** 2 + (high0 - p0) ** 2)
    high = difference + math.sqrt((high1 - p1) ** 2 + (p0 - low0) ** 2)
    return difference, low, high


def sample_variance(total: Decimal, sum_of_squares: Decimal, n: int) -> Decimal:
    """The sample variance (n - 1 in the denominator) of n values given their sum and the
    sum of their squares, exact in Decimal: (n·Σx² - (Σx)²) / (n·(n - 1)). Raises
    ValueError when n < 2."""
    if n < 2:
        raise ValueError(f"a sample variance needs at least 2 values: {n}")
    return (n * sum_of_squares - total * total) / (n * (n - 1))


def welch_difference(
    mean1: Decimal,
    variance1: Decimal,
    n1: int,
    mean0: Decimal,
    variance0: Decimal,
    n0: int,
    z: float = Z95,
) -> tuple[Decimal, Decimal, Decimal]:
    """The difference of two independent means mean1 - mean0 with its interval by Welch's
    normal approximation: difference ± z·sqrt(s1²/n1 + s0²/n0), the s² sample variances
    (unequal variances allowed; no pooling). Returns (difference, low, high), unrounded.
    Raises ValueError when a group has fewer than 2 values."""
    if n1 < 2 or n0 < 2:
        raise ValueError(f"welch_difference needs at least 2 values per group: {n1}, {n0}")
    difference = mean1 - mean0
    half = Decimal(str(z)) * (variance1 / n1 + variance0 / n0).sqrt()
    return difference, difference - half, difference + half


# --- the results --------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFigures:
    """The recipients or the holdout: members, converters, and what they spent."""

    size: int
    converters: int
    #: converters / size; None for an empty group.
    rate: float | None
    #: The purchases' totals in the members' windows (refunds not subtracted).
    revenue: Decimal
    #: revenue / size, to the cent; None for an empty group.
    revenue_per_member: Decimal | None


@dataclass(frozen=True)
class ChartDay:
    """Day `day` (1..days) of the window: the share of each group that had converted by its
    end, days counted from each member's own window start. None for an empty group."""

    day: int
    recipients: float | None
    holdout: float | None


@dataclass(frozen=True)
class CampaignResults:
    """What `campaign_results` returns: counts, the two groups, the lift, the chart."""

    campaign_id: int
    #: The attribution window used, in days (the campaign's, or the override).
    days: int
    #: Every delivery row: the audience snapshotted when the send started.
    audience: int
    #: Deliveries per status (every `DeliveryStatus` value, zeros included).
    by_status: Mapping[str, int]
    #: Skipped deliveries per reason (every `SkipReason` value, zeros included).
    skipped_by_reason: Mapping[str, int]
    sent: int
    failed: int
    skipped: int
    #: The most common error texts of failed deliveries, most frequent first (at most 5).
    top_errors: tuple[tuple[str, int], ...]
    recipients: GroupFigures
    holdout: GroupFigures
    #: Recipients' conversion rate minus the holdout's (None when a group is empty).
    rate_difference: float | None
    #: Its 95 % interval (Newcombe's hybrid score); None when not ready.
    rate_difference_low: float | None
    rate_difference_high: float | None
    #: rate_difference / the holdout's rate; None when that rate is 0 (or the group empty).
    relative_lift: float | None
    #: Recipients' revenue per member minus the holdout's, to the cent.
    revenue_difference: Decimal | None
    #: Its 95 % interval (Welch's normal approximation), to the cent; None when not ready.
    revenue_difference_low: Decimal | None
    revenue_difference_high: Decimal | None
    #: Days 1..days: each group's cumulative conversion rate.
    chart: tuple[ChartDay, ...]
    #: When the last member's window ends: until then the figures may still change.
    final_at: dt.datetime | None
    #: Whether the groups are large enough to tell the lift (the intervals are set).
    ready: bool
    #: Why not, for the page ("" when ready).
    not_ready_reason: str


def _in_groups() -> Q:
    return Q(status=DeliveryStatus.SENT) | Q(
        status=DeliveryStatus.SKIPPED, skip_reason=SkipReason.HOLDOUT
    )


def _window_start(campaign: Campaign) -> Case:
    """A delivery's window start: `sent_at` for a recipient; for a holdout member the time it
    would have been sent (`not_before`, e.g. after quiet hours), else the campaign's start."""
    return Case(
        When(status=DeliveryStatus.SENT, then=F("sent_at")),
        default=Coalesce(F("not_before"), Value(campaign.started_at, output_field=DateTimeField())),
        output_field=DateTimeField(),
    )


def _rate(count: int, size: int) -> float | None:
    return count / size if size else None


def _not_ready_reason(campaign: Campaign, recipients: GroupFigures, holdout: GroupFigures) -> str:
    if campaign.started_at is None:
        return NOT_STARTED_REASON
    if holdout.size == 0:
        return NO_HOLDOUT_REASON
    for name, group in (("recipients group", recipients), ("holdout", holdout)):
        if group.size < MIN_GROUP_SIZE:
            return GROUP_TOO_SMALL_REASON.format(
                group=name, count=group.size, minimum=MIN_GROUP_SIZE
            )
        if group.converters < MIN_OUTCOMES:
            return TOO_FEW_CONVERTERS_REASON.format(
                group=name, count=group.converters, minimum=MIN_OUTCOMES
            )
        if group.size - group.converters < MIN_OUTCOMES:
            return TOO_FEW_NON_CONVERTERS_REASON.format(
                group=name, count=group.size - group.converters, minimum=MIN_OUTCOMES
            )
    return ""


def campaign_results(*, campaign: Campaign, days: int | None = None) -> CampaignResults:
    """The campaign's results over attribution windows of `days` days (default: the
    campaign's `attribution_days`); see the module docstring for every definition.

    Three queries whatever the audience's size (two when no delivery failed, and no third
    when nobody was sent or held out): the counts per status and reason (with each group's
    first and last window start), the top error texts, and the converters only, each with
    its window start, first purchase in the window and the window's revenue, read by
    correlated subqueries over the customer's transactions (the `txn_customer_time_idx`
    index on (customer, occurred_at)). The chart, the sums and the sums of squares are
    built in Python from the converters' rows.
    Raises ValueError when days < 1.
    """
    days = campaign.attribution_days if days is None else days
    if days < 1:
        raise ValueError(f"an attribution window lasts at least one day: {days}")
    window = dt.timedelta(days=days)
    deliveries = Delivery.objects.filter(campaign_id=campaign.pk)
    start = _window_start(campaign)

    # 1. counts, and the first and last window starts of the groups
    by_status = {status: 0 for status in DeliveryStatus.values}
    skipped_by_reason = {reason: 0 for reason in SkipReason.values}
    starts: list[dt.datetime] = []
    counts = (
        deliveries.values("status", "skip_reason")
        .annotate(count=Count("pk"), first_start=Min(start), last_start=Max(start))
        .order_by()
    )
    for row in counts:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        if row["status"] == DeliveryStatus.SKIPPED:
            reason = row["skip_reason"]
            skipped_by_reason[reason] = skipped_by_reason.get(reason, 0) + row["count"]
        in_group = row["status"] == DeliveryStatus.SENT or (
            row["status"] == DeliveryStatus.SKIPPED and row["skip_reason"] == SkipReason.HOLDOUT
        )
        if in_group and row["first_start"] is not None:
            starts += [row["first_start"], row["last_start"]]

    # 2. the most common errors
    top_errors: tuple[tuple[str, int], ...] = ()
    if by_status[DeliveryStatus.FAILED]:
        top_errors = tuple(
            deliveries.filter(status=DeliveryStatus.FAILED)
            .values("error")
            .annotate(count=Count("pk"))
            .order_by("-count", "error")
            .values_list("error", "count")[:TOP_ERRORS]
        )

    # 3. the converters: first purchase and revenue in each one's window
    sizes = {
        "recipients": by_status[DeliveryStatus.SENT],
        "holdout": skipped_by_reason[SkipReason.HOLDOUT],
    }
    converters: Iterable[tuple[str, dt.datetime, dt.datetime, Decimal]] = ()
    if starts:
        purchases = Transaction.objects.filter(
            merchant_id=campaign.merchant_id,
            customer_id=OuterRef("customer_id"),
            kind=TransactionKind.PURCHASE,
            occurred_at__gte=OuterRef("window_start"),
            occurred_at__lt=OuterRef("window_start") + Value(window),
        )
        converters = (
            deliveries.filter(_in_groups())
            .annotate(window_start=start)
            # TRICKY: redundant with each member's window, these constant bounds (the span
            # of all windows) let PostgreSQL read only that span of the merchant's purchases
            # (txn_merchant_time_idx) when it hashes them for the semi-join; without them
            # it hashed every purchase the merchant ever had.
            .filter(
                Exists(
                    purchases.filter(
                        occurred_at__gte=min(starts), occurred_at__lt=max(starts) + window
                    )
                )
            )
            .annotate(
                first_purchase=Subquery(
                    purchases.order_by("occurred_at").values("occurred_at")[:1],
                    output_field=DateTimeField(),
                ),
                revenue=Subquery(
                    purchases.order_by()
                    .values("customer_id")
                    .annotate(revenue=Sum("total"))
                    .values("revenue"),
                    output_field=DecimalField(max_digits=14, decimal_places=2),
                ),
            )
            .values_list("status", "window_start", "first_purchase", "revenue")
        )
    converted = {"recipients": 0, "holdout": 0}
    revenue = {"recipients": Decimal(0), "holdout": Decimal(0)}
    squares = {"recipients": Decimal(0), "holdout": Decimal(0)}
    # converted_on[group][d - 1]: members whose first purchase fell on day d of their window
    converted_on = {"recipients": [0] * days, "holdout": [0] * days}
    for status, window_start, first_purchase, amount in converters:
        group = "recipients" if status == DeliveryStatus.SENT else "holdout"
        converted[group] += 1
        revenue[group] += amount
        squares[group] += amount * amount
        day = (first_purchase - window_start) // dt.timedelta(days=1)
        converted_on[group][day] += 1

    figures = {
        group: GroupFigures(
            size=sizes[group],
            converters=converted[group],
            rate=_rate(converted[group], sizes[group]),
            revenue=revenue[group].quantize(CENT),
            revenue_per_member=(
                (revenue[group] / sizes[group]).quantize(CENT) if sizes[group] else None
            ),
        )
        for group in sizes
    }
    recipients, holdout = figures["recipients"], figures["holdout"]

    chart = []
    so_far = {"recipients": 0, "holdout": 0}
    for day in range(1, days + 1):
        for group in so_far:
            so_far[group] += converted_on[group][day - 1]
        chart.append(
            ChartDay(
                day=day,
                recipients=_rate(so_far["recipients"], recipients.size),
                holdout=_rate(so_far["holdout"], holdout.size),
            )
        )

    reason = _not_ready_reason(campaign, recipients, holdout)
    ready = not reason
    rate_difference = rate_low = rate_high = relative_lift = None
    revenue_difference = revenue_low = revenue_high = None
    if recipients.size and holdout.size:
        assert recipients.rate is not None and holdout.rate is not None
        rate_difference = recipients.rate - holdout.rate
        relative_lift = rate_difference / holdout.rate if holdout.rate else None
        mean1 = revenue["recipients"] / recipients.size
        mean0 = revenue["holdout"] / holdout.size
        revenue_difference = (mean1 - mean0).quantize(CENT)
        if ready:
            _, rate_low, rate_high = newcombe_difference(
                recipients.converters, recipients.size, holdout.converters, holdout.size
            )
            _, low, high = welch_difference(
                mean1,
                sample_variance(revenue["recipients"], squares["recipients"], recipients.size),
                recipients.size,
                mean0,
                sample_variance(revenue["holdout"], squares["holdout"], holdout.size),
                holdout.size,
            )
            revenue_low, revenue_high = low.quantize(CENT), high.quantize(CENT)

    return CampaignResults(
        campaign_id=campaign.pk,
        days=days,
        audience=sum(by_status.values()),
        by_status=by_status,
        skipped_by_reason=skipped_by_reason,
        sent=by_status[DeliveryStatus.SENT],
        failed=by_status[DeliveryStatus.FAILED],
        skipped=by_status[DeliveryStatus.SKIPPED],
        top_errors=top_errors,
        recipients=recipients,
        holdout=holdout,
        rate_difference=rate_difference,
        rate_difference_low=rate_low,
        rate_difference_high=rate_high,
        relative_lift=relative_lift,
        revenue_difference=revenue_difference,
        revenue_difference_low=revenue_low,
        revenue_difference_high=revenue_high,
        chart=tuple(chart),
        final_at=max(starts) + window if starts else None,
        ready=ready,
        not_ready_reason=reason,
    )
