"""Campaign results: the interval statistics against published values and hand computations,
and `campaign_results` on built campaigns (windows and their edges, refunds, the holdout
delayed by quiet hours, counts, the not-ready cases, the number of queries)."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from decimal import Decimal

import pytest

from campaigns.models import DeliveryStatus, SkipReason
from campaigns.results import (
    GROUP_TOO_SMALL_REASON,
    NO_HOLDOUT_REASON,
    NOT_STARTED_REASON,
    TOO_FEW_CONVERTERS_REASON,
    TOO_FEW_NON_CONVERTERS_REASON,
    Z95,
    campaign_results,
    newcombe_difference,
    sample_variance,
    welch_difference,
    wilson_interval,
)
from customers.models import Transaction
from tests.campaigns.factories import STARTED_AT, CampaignFactory, DeliveryFactory
from tests.factories import CustomerFactory, MerchantFactory, TransactionFactory

DAY = dt.timedelta(days=1)

# --- the statistics -----------------------------------------------------------------------

# Newcombe RG, "Two-sided confidence intervals for the single proportion: comparison of seven
# methods", Statistics in Medicine 1998;17:857-872, Table I, method 3 (Wilson score interval
# without continuity correction), to 4 decimals.
WILSON_PUBLISHED = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]

# Newcombe RG, "Interval estimation for the difference between independent proportions:
# comparison of eleven methods", Statistics in Medicine 1998;17:873-890, Table II, examples
# (a) to (h), method 10 (hybrid score, no continuity correction), to 4 decimals. The same
# figures are pinned by the tests of the R package ratesci (`moverci(type = "wilson")`).
# TRICKY: for (d), 5/56 - 0/29, the interval -0.0326 to 0.1933 sometimes quoted is the
# Miettinen-Nurminen asymptotic score interval of the same table, not method 10.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.2000, 0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.6000, 0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.5714, 0.0582, 0.8062)),
    ((5, 56, 0, 29), (0.0893, -0.0381, 0.1926)),
    ((0, 10, 0, 20), (0.0000, -0.1611, 0.2775)),
    ((0, 10, 0, 10), (0.0000, -0.2775, 0.2775)),
    ((10, 10, 0, 20), (1.0000, 0.6791, 1.0000)),
    ((10, 10, 0, 10), (1.0000, 0.6075, 1.0000)),
]


@pytest.mark.parametrize(("successes", "n", "low", "high"), WILSON_PUBLISHED)
def test_wilson_interval_matches_newcombes_table(successes, n, low, high):
    assert wilson_interval(successes, n) == (
        pytest.approx(low, abs=5e-5),
        pytest.approx(high, abs=5e-5),
    )


def test_wilson_interval_is_exactly_0_or_1_at_the_edges_and_refuses_impossible_counts():
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0
    for successes, n in [(-1, 10), (11, 10), (0, 0)]:
        with pytest.raises(ValueError):
            wilson_interval(successes, n)


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE_TABLE_II)
def test_newcombe_difference_matches_newcombes_table_ii_method_10(counts, expected):
    difference, low, high = newcombe_difference(*counts)
    assert (difference, low, high) == pytest.approx(expected, abs=5e-5)


def test_newcombe_difference_from_first_principles():
    # Each Wilson bound is a root of the score equation (p̂ - p)² = z² p (1 - p) / n; the
    # hybrid interval adds the two arms' distances to them in quadrature.
    def score_roots(x, n):
        p_hat, z2 = x / n, Z95 * Z95
        a, b, c = 1 + z2 / n, -(2 * p_hat + z2 / n), p_hat * p_hat
        root = math.sqrt(b * b - 4 * a * c)
        return (-b - root) / (2 * a), (-b + root) / (2 * a)

    x1, n1, x0, n0 = 23, 1000, 11, 1000  # campaign-like rates: 2.3 % against 1.1 %
    (l1, u1), (l0, u0) = score_roots(x1, n1), score_roots(x0, n0)
    p1, p0 = x1 / n1, x0 / n0
    low = p1 - p0 - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = p1 - p0 + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)

    assert newcombe_difference(x1, n1, x0, n0) == pytest.approx((0.012, low, high), abs=1e-12)
    # wider above than below: the rates are near 0
    assert high - 0.012 > 0.012 - low


def test_welch_difference_matches_a_hand_computation():
    # recipients 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32 / 7
    # holdout 1, 2, 3: mean 2, sample variance 1
    # standard error sqrt(32/56 + 1/3) = sqrt(0.9047619) = 0.9511897
    # half-width 1.959964 * 0.9511897 = 1.8643
    recipients = [Decimal(v) for v in (2, 4, 4, 4, 5, 5, 7, 9)]
    holdout = [Decimal(v) for v in (1, 2, 3)]
    variance1 = sample_variance(sum(recipients), sum(v * v for v in recipients), 8)
    variance0 = sample_variance(sum(holdout), sum(v * v for v in holdout), 3)
    assert variance1 == pytest.approx(Decimal(32) / 7)
    assert variance0 == Decimal(1)
    assert float(variance1) == pytest.approx(statistics.variance(map(float, recipients)))

    difference, low, high = welch_difference(Decimal(5), variance1, 8, Decimal(2), variance0, 3)

    assert difference == Decimal(3)
    assert float(low) == pytest.approx(3 - 1.8643, abs=1e-4)
    assert float(high) == pytest.approx(3 + 1.8643, abs=1e-4)


def test_welch_difference_and_sample_variance_need_two_values_per_group():
    with pytest.raises(ValueError):
        sample_variance(Decimal(5), Decimal(25), 1)
    with pytest.raises(ValueError):
        welch_difference(Decimal(1), Decimal(1), 1, Decimal(1), Decimal(1), 10)


# --- campaign_results ---------------------------------------------------------------------


def purchase(customer, at, total="25.00", **fields):
    return TransactionFactory(customer=customer, occurred_at=at, total=Decimal(total), **fields)


@pytest.fixture
def built(db):
    """A campaign started at STARTED_AT, 7-day windows, with:

    recipients (5): r1 buys at its send (start included) and on day 3; r2 a second before
    its send and at its window's end (excluded); r3 a second before its window ends; r4 only
    a refund; r5 nothing in the campaign's merchant (a purchase of it recorded under another
    merchant).
    holdout (3): h1 buys at the campaign's start; h2 waited for quiet hours (not_before 11
    hours later) and buys before that, then on day 3 of its own window; h3 nothing.
    Others: 3 failed, 2 skipped (no consent, no address), 1 queued; a customer outside the
    campaign and another merchant's customer buy during the windows.
    """
    campaign = CampaignFactory(attribution_days=7)
    merchant = campaign.merchant
    r1, r2, r3, r4, r5 = (DeliveryFactory(campaign=campaign) for _ in range(5))
    h1, h2, _h3 = (DeliveryFactory(campaign=campaign, holdout=True) for _ in range(3))
    h2.not_before = STARTED_AT + dt.timedelta(hours=11)
    h2.save()
    DeliveryFactory(campaign=campaign, failed=True)
    DeliveryFactory(campaign=campaign, failed=True)
    DeliveryFactory(campaign=campaign, failed=True, error="Bounced")
    DeliveryFactory(campaign=campaign, skipped=True)
    DeliveryFactory(campaign=campaign, skipped=True, skip_reason=SkipReason.NO_ADDRESS)
    DeliveryFactory(campaign=campaign, queued=True)

    sent = r1.sent_at  # every recipient was sent at the same time
    purchase(r1.customer, sent, "30.00")
    purchase(r1.customer, sent + 2 * DAY + dt.timedelta(hours=5), "20.00")
    purchase(r2.customer, sent - dt.timedelta(seconds=1), "99.00")
    purchase(r2.customer, sent + 7 * DAY, "99.00")
    purchase(r3.customer, sent + 7 * DAY - dt.timedelta(seconds=1), "12.50")
    purchase(r4.customer, sent + DAY, "40.00", refund=True)
    other = MerchantFactory()
    # A row naming another merchant for r5 (written past `clean()`, as a bad import could).
    Transaction.objects.bulk_create(
        [
            Transaction(
                merchant=other,
                customer=r5.customer,
                external_id="X-1",
                occurred_at=sent + DAY,
                total=Decimal("70.00"),
            )
        ]
    )
    purchase(h1.customer, STARTED_AT, "40.00")
    purchase(h2.customer, STARTED_AT + dt.timedelta(hours=5), "99.00")
    purchase(h2.customer, h2.not_before + 2 * DAY, "15.00")
    purchase(CustomerFactory(merchant=merchant), sent + DAY, "80.00")
    purchase(CustomerFactory(merchant=other), sent + DAY, "80.00")
    return campaign


@pytest.mark.django_db
def test_counts_per_status_reason_and_the_most_common_errors(built):
    results = campaign_results(campaign=built)

    assert results.audience == 14
    assert results.by_status == {
        DeliveryStatus.QUEUED: 1,
        DeliveryStatus.SENDING: 0,
        DeliveryStatus.SENT: 5,
        DeliveryStatus.FAILED: 3,
        DeliveryStatus.SKIPPED: 5,
    }
    assert (results.sent, results.failed, results.skipped) == (5, 3, 5)
    assert results.skipped_by_reason == {
        SkipReason.NO_CONSENT: 1,
        SkipReason.NO_ADDRESS: 1,
        SkipReason.FREQUENCY_CAP: 0,
        SkipReason.HOLDOUT: 3,
    }
    assert results.top_errors == (("Mailbox full", 2), ("Bounced", 1))


@pytest.mark.django_db
def test_conversions_and_revenue_count_purchases_in_each_members_window_only(built):
    # when
    results = campaign_results(campaign=built)

    # then: recipients: r1 (30 + 20) and r3 (12.50) converted; r2 bought outside its window,
    # r4 only refunded, r5's row is another merchant's
    assert results.days == 7
    assert results.recipients.size == 5
    assert results.recipients.converters == 2
    assert results.recipients.rate == pytest.approx(0.4)
    assert results.recipients.revenue == Decimal("62.50")
    assert results.recipients.revenue_per_member == Decimal("12.50")
    # holdout: h1 (40) at the campaign's start; h2 (15) in the window from its not_before
    assert results.holdout.size == 3
    assert results.holdout.converters == 2
    assert results.holdout.revenue == Decimal("55.00")
    assert results.holdout.revenue_per_member == Decimal("18.33")
    # the point estimates are kept while not ready
    assert results.rate_difference == pytest.approx(0.4 - 2 / 3)
    assert results.relative_lift == pytest.approx((0.4 - 2 / 3) / (2 / 3))
    assert results.revenue_difference == Decimal("-5.83")
    assert results.final_at == STARTED_AT + dt.timedelta(hours=11) + 7 * DAY


@pytest.mark.django_db
def test_the_chart_counts_days_from_each_members_own_window_start(built):
    results = campaign_results(campaign=built)

    assert [point.day for point in results.chart] == [1, 2, 3, 4, 5, 6, 7]
    assert [point.recipients for point in results.chart] == pytest.approx(
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.4]
    )
    assert [point.holdout for point in results.chart] == pytest.approx(
        [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3]
    )


@pytest.mark.django_db
def test_days_overrides_the_campaigns_window(built):
    one = campaign_results(campaign=built, days=1)
    eight = campaign_results(campaign=built, days=8)

    # one day: r1's send-time purchase only; h1 only (h2 bought on day 3)
    assert (one.recipients.converters, one.recipients.revenue) == (1, Decimal("30.00"))
    assert (one.holdout.converters, one.holdout.revenue) == (1, Decimal("40.00"))
    assert len(one.chart) == 1
    # eight days: r2's purchase at the 7-day end now falls inside
    assert (eight.recipients.converters, eight.recipients.revenue) == (3, Decimal("161.50"))
    assert eight.chart[-1].recipients == pytest.approx(0.6)
    with pytest.raises(ValueError):
        campaign_results(campaign=built, days=0)


@pytest.mark.django_db
def test_small_groups_are_not_ready_and_have_no_intervals(built):
    results = campaign_results(campaign=built)

    assert not results.ready
    assert results.not_ready_reason == GROUP_TOO_SMALL_REASON.format(
        group="recipients group", count=5, minimum=30
    )
    assert results.rate_difference_low is None and results.rate_difference_high is None
    assert results.revenue_difference_low is None and results.revenue_difference_high is None


def populate(campaign, *, recipients, holdout, converting, holding_converters, total="10.00"):
    """`recipients` sent and `holdout` held-out deliveries; the first `converting` and
    `holding_converters` of each buy once, a day into their window."""
    for index in range(recipients):
        delivery = DeliveryFactory(campaign=campaign)
        if index < converting:
            purchase(delivery.customer, delivery.sent_at + DAY, total)
    for index in range(holdout):
        delivery = DeliveryFactory(campaign=campaign, holdout=True)
        if index < holding_converters:
            purchase(delivery.customer, STARTED_AT + DAY, total)


@pytest.mark.django_db
def test_large_enough_groups_get_both_intervals():
    # given: 40 recipients, 10 converted (25 %); 30 held out, 5 converted (16.7 %); 10.00 each
    campaign = CampaignFactory()
    populate(campaign, recipients=40, holdout=30, converting=10, holding_converters=5)

    # when
    results = campaign_results(campaign=campaign)

    # then
    assert results.ready and results.not_ready_reason == ""
    difference, low, high = newcombe_difference(10, 40, 5, 30)
    assert results.rate_difference == pytest.approx(difference)
    assert (results.rate_difference_low, results.rate_difference_high) == (low, high)
    assert low < 0 < high  # the interval includes 0: no lift shown yet
    # revenue per member 2.50 and 1.67: 10 of 40 at 10.00 has sample variance
    # (40 * 1000 - 100²) / (40 * 39) = 19.2308; 5 of 30: (30 * 500 - 50²) / (30 * 29) = 14.3678
    half = Z95 * math.sqrt(19.230769 / 40 + 14.367816 / 30)
    assert results.revenue_difference == Decimal("0.83")
    assert float(results.revenue_difference_low) == pytest.approx(2.5 - 5 / 3 - half, abs=0.006)
    assert float(results.revenue_difference_high) == pytest.approx(2.5 - 5 / 3 + half, abs=0.006)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("converting", "holding_converters", "reason"),
    [
        (10, 4, TOO_FEW_CONVERTERS_REASON.format(group="holdout", count=4, minimum=5)),
        (36, 5, TOO_FEW_NON_CONVERTERS_REASON.format(group="recipients group", count=4, minimum=5)),
    ],
)
def test_too_few_converters_or_non_converters_are_not_ready(converting, holding_converters, reason):
    campaign = CampaignFactory()
    populate(
        campaign,
        recipients=40,
        holdout=30,
        converting=converting,
        holding_converters=holding_converters,
    )

    results = campaign_results(campaign=campaign)

    assert not results.ready
    assert results.not_ready_reason == reason
    assert results.rate_difference is not None and results.rate_difference_low is None


@pytest.mark.django_db
def test_no_holdout_and_not_started_say_so():
    without = CampaignFactory(holdout_percent=0)
    DeliveryFactory.create_batch(3, campaign=without)
    draft = CampaignFactory(draft=True)

    no_holdout = campaign_results(campaign=without)
    not_started = campaign_results(campaign=draft)

    assert no_holdout.not_ready_reason == NO_HOLDOUT_REASON
    assert no_holdout.holdout.rate is None and no_holdout.relative_lift is None
    assert no_holdout.chart[0].holdout is None
    assert not_started.not_ready_reason == NOT_STARTED_REASON
    assert not_started.audience == 0 and not_started.final_at is None


@pytest.mark.django_db
def test_relative_lift_is_none_when_the_holdout_did_not_convert():
    campaign = CampaignFactory()
    populate(campaign, recipients=3, holdout=3, converting=1, holding_converters=0)

    results = campaign_results(campaign=campaign)

    assert results.holdout.rate == 0
    assert results.rate_difference == pytest.approx(1 / 3)
    assert results.relative_lift is None


@pytest.mark.django_db
def test_only_the_five_most_common_errors_are_listed():
    campaign = CampaignFactory()
    for count, error in enumerate(["a", "b", "c", "d", "e", "f"], start=1):
        DeliveryFactory.create_batch(count, campaign=campaign, failed=True, error=error)

    results = campaign_results(campaign=campaign)

    assert results.top_errors == (("f", 6), ("e", 5), ("d", 4), ("c", 3), ("b", 2))


@pytest.mark.django_db
def test_results_are_three_queries_whatever_the_audience(built, django_assert_num_queries):
    # counts, top errors, converters; the chart and sums are built in Python
    with django_assert_num_queries(3):
        campaign_results(campaign=built)

    populate(built, recipients=20, holdout=20, converting=8, holding_converters=6)
    with django_assert_num_queries(3):
        larger = campaign_results(campaign=built)
    assert larger.recipients.converters == 2 + 8


@pytest.mark.django_db
def test_no_failures_skip_the_errors_query_and_no_groups_the_converters_query(
    django_assert_num_queries,
):
    without_failures = CampaignFactory()
    populate(without_failures, recipients=2, holdout=1, converting=1, holding_converters=1)
    only_failures = CampaignFactory()
    DeliveryFactory(campaign=only_failures, failed=True)

    with django_assert_num_queries(2):
        assert campaign_results(campaign=without_failures).recipients.converters == 1
    with django_assert_num_queries(2):
        assert campaign_results(campaign=only_failures).top_errors == (("Mailbox full", 1),)
