"""Computing and storing the scores (`customers.scores.service`, `compute_scores`)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from customers.models import CustomerMetrics, ScoreChange, ScoreSettings, TierRule
from customers.scores.service import customer_scores_follow, scores_compute
from tests.factories import CustomerFactory, TierFactory, TransactionFactory

TORONTO = ZoneInfo("America/Toronto")
pytestmark = pytest.mark.django_db


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TORONTO)


def buy(customer, when, total="25.00", **kwargs):
    return TransactionFactory(customer=customer, occurred_at=when, total=Decimal(total), **kwargs)


def scores(customer):
    row = CustomerMetrics.objects.get(pk=customer.pk)
    return (
        row.lifecycle_stage,
        row.rfm_recency,
        row.rfm_frequency,
        row.rfm_monetary,
        row.rfm_group,
    )


AS_OF = local(2026, 6, 30, 12, 0)


def test_each_stage_and_rfm_on_hand_built_customers(merchant):
    # given five customers whose latest orders and counts put each in one stage
    days = lambda n: AS_OF - dt.timedelta(days=n)  # noqa: E731
    newbie = CustomerFactory(merchant=merchant)
    buy(newbie, days(3))
    loyal = CustomerFactory(merchant=merchant)
    for n in range(8):
        buy(loyal, days(2 + 30 * n), total="100.00")
    regular = CustomerFactory(merchant=merchant)
    for n in range(4):
        buy(regular, days(5 + 40 * n))
    at_risk = CustomerFactory(merchant=merchant)
    buy(at_risk, days(400))
    buy(at_risk, days(91))
    dormant = CustomerFactory(merchant=merchant)
    buy(dormant, days(181), total="900.00")
    prospect = CustomerFactory(merchant=merchant)

    # when
    summary = scores_compute(merchant=merchant, as_of=AS_OF)

    # then stages by the contract, and R, F, M over the five with an order (N = 5)
    assert scores(newbie) == ("new", 4, 1, 1, "promising")
    assert scores(loyal) == ("loyal", 5, 5, 4, "champions")
    assert scores(regular) == ("regular", 3, 4, 3, "loyal")
    assert scores(at_risk) == ("at_risk", 2, 3, 2, "at_risk")
    assert scores(dormant) == ("dormant", 1, 1, 5, "at_risk")
    assert scores(prospect) == (None, None, None, None, "prospects")
    assert summary["customers"] == 6 and summary["scored"] == 5
    assert summary["lifecycle"] == {
        "dormant": 1,
        "at_risk": 1,
        "new": 1,
        "loyal": 1,
        "regular": 1,
        "repeat": 0,
    }
    assert summary["rfm_groups"]["prospects"] == 1
    assert summary["bgnbd"] is None and "at least 50" in summary["prediction_error"]


def test_orders_after_as_of_are_ignored_and_refunds_can_make_spend_negative(merchant):
    late = CustomerFactory(merchant=merchant)
    buy(late, AS_OF - dt.timedelta(days=100), total="10.00")
    buy(late, AS_OF + dt.timedelta(minutes=1), total="5000.00")  # after as_of
    refunder = CustomerFactory(merchant=merchant)
    buy(refunder, AS_OF - dt.timedelta(days=1), total="20.00")
    buy(refunder, AS_OF - dt.timedelta(hours=1), total="80.00", refund=True)  # spend -60
    only_refund = CustomerFactory(merchant=merchant)
    buy(only_refund, AS_OF - dt.timedelta(days=1), total="5.00", refund=True)

    scores_compute(merchant=merchant, as_of=AS_OF)

    # the late purchase does not count: one order 100 days ago, spend 10
    assert scores(late) == ("at_risk", 1, 1, 5, "at_risk")
    # the lowest spend (negative) scores 1
    assert scores(refunder) == ("new", 5, 1, 1, "new")
    # a refund is not an order: no stage, no scores
    assert scores(only_refund) == (None, None, None, None, "prospects")


def test_a_single_scored_customer_scores_one(merchant):
    only = CustomerFactory(merchant=merchant)
    buy(only, AS_OF - dt.timedelta(days=1))
    scores_compute(merchant=merchant, as_of=AS_OF)
    assert scores(only) == ("new", 1, 1, 1, "dormant")


def test_days_are_merchant_local_across_a_dst_change(merchant):
    # given a last order at 23:30 on 31 October, local time (03:30 on 1 November in UTC),
    # the night before daylight saving time ends in Toronto
    late_night = CustomerFactory(merchant=merchant)
    buy(late_night, local(2026, 10, 31, 23, 30))
    morning = CustomerFactory(merchant=merchant)
    buy(morning, local(2026, 10, 31, 8, 0))
    later = CustomerFactory(merchant=merchant)
    buy(later, local(2026, 11, 15, 12, 0))

    # when computed 91 local days after 31 October
    scores_compute(merchant=merchant, as_of=local(2027, 1, 30, 12, 0))

    # then d = 91 (at risk), where a UTC date would give 90 (new); and the two orders of
    # 31 October tie on recency
    assert scores(late_night)[:2] == ("at_risk", 1)
    assert scores(morning)[:2] == ("at_risk", 1)
    assert scores(later)[:2] == ("new", 5)


def test_history_records_each_change_once(merchant):
    customer = CustomerFactory(merchant=merchant)
    buy(customer, AS_OF - dt.timedelta(days=10))
    ScoreChange.objects.all().delete()
    CustomerMetrics.objects.update(lifecycle_stage=None)

    scores_compute(merchant=merchant, as_of=AS_OF)
    scores_compute(merchant=merchant, as_of=AS_OF)  # nothing moved
    scores_compute(merchant=merchant, as_of=AS_OF + dt.timedelta(days=81))

    changes = list(
        ScoreChange.objects.filter(customer=customer)
        .order_by("changed_at")
        .values_list("kind", "from_value", "to_value", "changed_at")
    )
    assert changes == [
        ("lifecycle", "", "new", AS_OF),
        ("lifecycle", "new", "at_risk", AS_OF + dt.timedelta(days=81)),
    ]
    reason = ScoreChange.objects.filter(customer=customer).latest("changed_at").reason
    assert reason == "scheduled computation: latest order more than 90 days ago (up to 180)"


def test_a_purchase_moves_the_stage_at_once(merchant):
    customer = CustomerFactory(merchant=merchant)
    buy(customer, dt.datetime.now(dt.UTC) - dt.timedelta(days=120))
    assert scores(customer)[0] == "at_risk"  # the write chain followed the first purchase

    buy(customer, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))

    assert scores(customer)[0] == "repeat"
    latest = ScoreChange.objects.filter(customer=customer).latest("pk")
    assert (latest.from_value, latest.to_value) == ("at_risk", "repeat")
    assert latest.reason.startswith("purchase or refund: ")


@pytest.fixture
def tiers(merchant):
    bronze = TierFactory(merchant=merchant, name="Bronze", rank=1)
    gold = TierFactory(merchant=merchant, name="Gold", rank=3)
    TierRule.objects.create(merchant=merchant, tier=bronze, metric="spend", threshold=500)
    TierRule.objects.create(merchant=merchant, tier=gold, metric="spend", threshold=1000)
    return bronze, gold


def tier_of(customer):
    customer.refresh_from_db()
    metrics = CustomerMetrics.objects.get(pk=customer.pk)
    assert metrics.tier_id == customer.tier_id  # the copy the rules read follows
    return customer.tier.name if customer.tier else None, metrics.tier_below_since


def test_tier_upgrade_on_the_purchase_and_downgrade_after_the_grace_period(merchant, tiers):
    now = dt.datetime.now(dt.UTC)
    customer = CustomerFactory(merchant=merchant)
    buy(customer, now - dt.timedelta(days=3), total="600.00")
    assert tier_of(customer) == ("Bronze", None)

    # the purchase that reaches 1,000 upgrades at once
    buy(customer, now - dt.timedelta(days=2), total="450.00")
    assert tier_of(customer) == ("Gold", None)
    upgrade = ScoreChange.objects.filter(customer=customer, kind="tier").latest("pk")
    assert (upgrade.from_value, upgrade.to_value) == ("Bronze", "Gold")
    assert "reached Gold" in upgrade.reason

    # a refund brings spend to 750: a purchase-path write never downgrades ...
    buy(customer, now - dt.timedelta(days=1), total="300.00", refund=True)
    assert tier_of(customer) == ("Gold", None)
    # ... the computation starts the grace period, keeps Gold for 29 days, then downgrades
    scores_compute(merchant=merchant, as_of=now)
    today = merchant.today(now)
    assert tier_of(customer) == ("Gold", today)
    scores_compute(merchant=merchant, as_of=now + dt.timedelta(days=29))
    assert tier_of(customer) == ("Gold", today)
    scores_compute(merchant=merchant, as_of=now + dt.timedelta(days=30))
    assert tier_of(customer) == ("Bronze", None)
    downgrade = ScoreChange.objects.filter(customer=customer, kind="tier").latest("pk")
    assert (downgrade.from_value, downgrade.to_value) == ("Gold", "Bronze")
    assert "below the threshold" in downgrade.reason


def test_without_tier_rules_tiers_stay_as_imported(merchant):
    silver = TierFactory(merchant=merchant, name="Silver", rank=2)
    customer = CustomerFactory(merchant=merchant, tier=silver)
    buy(customer, AS_OF - dt.timedelta(days=1))
    scores_compute(merchant=merchant, as_of=AS_OF)
    assert tier_of(customer) == ("Silver", None)


def test_the_purchase_path_agrees_with_the_computation(merchant, tiers):
    # given varied customers (stages, tiers)
    now = dt.datetime.now(dt.UTC)
    for index in range(24):
        customer = CustomerFactory(merchant=merchant)
        for order in range(index % 9):
            buy(customer, now - dt.timedelta(days=3 + index * 9 + order * 40), total="130.00")
    scores_compute(merchant=merchant, as_of=now)
    computed = dict(CustomerMetrics.objects.values_list("pk", "lifecycle_stage"))
    tiers_computed = dict(CustomerMetrics.objects.values_list("pk", "tier_id"))
    predicted = ("smart_segment", "p_alive", "predicted_clv", "churn_cutoff_on")
    predictions = set(CustomerMetrics.objects.values_list("pk", *predicted))

    # when the stages and predictions are forgotten and the purchase path recomputes them
    CustomerMetrics.objects.update(
        lifecycle_stage=None, smart_segment="lost", p_alive=None, churn_cutoff_on=None
    )
    customer_scores_follow(merchant_id=merchant.pk, customer_ids=list(computed), as_of=now)

    # then both paths agree
    assert dict(CustomerMetrics.objects.values_list("pk", "lifecycle_stage")) == computed
    assert dict(CustomerMetrics.objects.values_list("pk", "tier_id")) == tiers_computed
    assert set(CustomerMetrics.objects.values_list("pk", *predicted)) == predictions
    assert len(set(computed.values())) >= 4


def test_compute_scores_command(merchant):
    customer = CustomerFactory(merchant=merchant)
    buy(customer, AS_OF - dt.timedelta(days=2))
    out = StringIO()
    call_command(
        "compute_scores", merchant="acme", as_of="2026-06-30T12:00:00", json=True, stdout=out
    )
    summary = json.loads(out.getvalue())
    assert summary["as_of"] == "2026-06-30T12:00:00-04:00"
    assert (summary["customers"], summary["scored"]) == (1, 1)
    assert summary["lifecycle"]["new"] == 1
    assert summary["smart_segments"]["one_time_shopper"] == 1
    assert sum(summary["smart_segments"].values()) == 1
    assert summary["bgnbd"] is None and summary["gamma_gamma"] is None
    assert summary["prediction_error"].endswith("customers with an order, there are 1")
    row = ScoreSettings.objects.get(merchant=merchant)
    assert row.status == "ok" and row.computed_as_of == AS_OF and row.summary == summary

    with pytest.raises(CommandError, match='unknown merchant "nope"') as unknown:
        call_command("compute_scores", merchant="nope")
    assert unknown.value.returncode == 2
    with pytest.raises(CommandError, match="not an ISO 8601") as bad:
        call_command("compute_scores", merchant="acme", as_of="yesterday")
    assert bad.value.returncode == 2


def test_only_the_schedule_downgrades_and_writes_keep_a_pending_downgrade(merchant, tiers):
    now = dt.datetime.now(dt.UTC)
    customer = CustomerFactory(merchant=merchant)
    buy(customer, now - dt.timedelta(days=5), total="1100.00")
    buy(customer, now - dt.timedelta(days=4), total="300.00", refund=True)  # spend 800
    scores_compute(merchant=merchant, as_of=now)
    today = merchant.today(now)
    assert tier_of(customer) == ("Gold", today)

    # a recomputation asked for in the portal, after the grace period: no downgrade
    scores_compute(merchant=merchant, as_of=now + dt.timedelta(days=40), scheduled=False)
    assert tier_of(customer) == ("Gold", today)
    # a merchant-level write (an import) keeps the pending downgrade too
    customer_scores_follow(merchant_id=merchant.pk, customer_ids=None)
    assert tier_of(customer) == ("Gold", today)
    # a purchase back over the threshold ends it
    buy(customer, now - dt.timedelta(days=1), total="250.00")
    assert tier_of(customer) == ("Gold", None)


def test_without_tier_rules_no_downgrade_stays_pending(merchant, tiers):
    now = dt.datetime.now(dt.UTC)
    customer = CustomerFactory(merchant=merchant)
    buy(customer, now - dt.timedelta(days=5), total="1100.00")
    buy(customer, now - dt.timedelta(days=4), total="300.00", refund=True)
    scores_compute(merchant=merchant, as_of=now)
    assert tier_of(customer)[1] is not None

    TierRule.objects.filter(merchant=merchant).delete()
    scores_compute(merchant=merchant, as_of=now)

    assert tier_of(customer) == ("Gold", None)


def test_the_metrics_shortcut_and_the_transactions_agree(merchant, tiers):
    # given varied customers, scored as of now from their metrics rows (nothing is later)
    now = dt.datetime.now(dt.UTC)
    for index in range(30):
        customer = CustomerFactory(merchant=merchant)
        for order in range(index % 7):
            buy(customer, now - dt.timedelta(days=1 + index * 7 + order * 50), total="180.00")
        if index % 5 == 0:
            buy(customer, now - dt.timedelta(days=2), total="40.00", refund=True)
    scores_compute(merchant=merchant, as_of=now)
    columns = ("lifecycle_stage", "rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_group")
    shortcut = {
        row[0]: row[1:] for row in CustomerMetrics.objects.values_list("pk", *columns, "tier_id")
    }

    # when a purchase dated tomorrow exists, the same instant is computed from transactions
    buy(CustomerFactory(merchant=merchant), now + dt.timedelta(days=1))
    CustomerMetrics.objects.update(lifecycle_stage=None, rfm_recency=None, rfm_group="prospects")
    scores_compute(merchant=merchant, as_of=now)

    # then every customer scored before has the same scores (the newcomer's order is later)
    exact = {
        row[0]: row[1:] for row in CustomerMetrics.objects.values_list("pk", *columns, "tier_id")
    }
    assert {pk: exact[pk] for pk in shortcut} == shortcut
    assert len({values[0] for values in shortcut.values()}) >= 4
