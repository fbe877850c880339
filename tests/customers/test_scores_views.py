"""The Scores pages, the settings service and the schedule (`customers.views.scores`,
`customers.scores.settings`, `customers.tasks`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from customers.models import (
    CustomerMetrics,
    Role,
    ScoreChange,
    ScoreSettings,
    ScoreSettingsChange,
    StaffMembership,
    Tier,
    TierRule,
)
from customers.scores.definitions import DEFAULT_RFM_GRID
from customers.scores.service import score_settings_for, scores_compute
from customers.scores.settings import (
    TierRuleInput,
    next_scheduled_run,
    score_settings_update,
    scores_due,
)
from customers.tasks import compute_due_scores
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    MerchantFactory,
    StaffMembershipFactory,
    TransactionFactory,
    UserFactory,
)
from tests.test_roles import score_settings_post

pytestmark = pytest.mark.django_db
TORONTO = ZoneInfo("America/Toronto")


@pytest.fixture
def manager_client(merchant) -> Client:
    user = UserFactory(username="maria")
    StaffMembershipFactory(user=user, merchant=merchant, role=Role.MANAGER)
    client = Client()
    assert client.login(username="maria", password=DEMO_PASSWORD)
    return client


def defaults() -> dict:
    return {
        "dormant_days": 180,
        "at_risk_days": 90,
        "window_days": 365,
        "loyal_orders": 8,
        "regular_orders": 4,
        "tier_grace_days": 30,
        "cadence": "daily",
        "weekday": 6,
    }


# -- the settings service -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"dormant_days": 90}, "dormant_days", "must exceed at-risk days"),
        ({"loyal_orders": 4}, "loyal_orders", "must exceed regular orders"),
        ({"at_risk_days": 0}, "at_risk_days", "from 1 to 3650"),
        ({"cadence": "hourly"}, "cadence", "every night or once a week"),
    ],
)
def test_settings_are_validated_as_a_whole_and_nothing_is_saved(merchant, changes, field, message):
    with pytest.raises(ValidationError) as refused:
        score_settings_update(
            merchant=merchant,
            user=None,
            values=defaults() | changes,
            grid=DEFAULT_RFM_GRID,
            tier_rules=[],
        )
    assert message in " ".join(refused.value.message_dict[field])
    assert ScoreSettingsChange.objects.count() == 0
    assert score_settings_for(merchant).dormant_days == 180


def test_a_grid_cell_must_be_a_group_name(merchant):
    grid = [list(row) for row in DEFAULT_RFM_GRID]
    grid[0][0] = "prospects"  # the group of the unscored is not a cell value
    with pytest.raises(ValidationError) as refused:
        score_settings_update(
            merchant=merchant, user=None, values=defaults(), grid=grid, tier_rules=[]
        )
    assert refused.value.message_dict["rfm_grid"][0].startswith(
        "Cell R = 5, FM = 1: 'prospects' is not one of"
    )


def test_tier_rules_are_checked(merchant):
    rules = [
        TierRuleInput("Gold", 3, "spend", "lifetime", Decimal("1000")),
        TierRuleInput("gold", 2, "orders", "lifetime", Decimal("2.5")),
    ]
    with pytest.raises(ValidationError) as refused:
        score_settings_update(
            merchant=merchant, user=None, values=defaults(), grid=DEFAULT_RFM_GRID, tier_rules=rules
        )
    assert refused.value.message_dict["tier_rules"] == [
        "Tier rule 2 (gold): the name is used twice.",
        "Tier rule 2 (gold): orders and points are whole numbers.",
    ]


def test_a_change_is_recorded_and_queues_a_recomputation(
    merchant, staff_user, django_capture_on_commit_callbacks
):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("700.00"))
    rules = [TierRuleInput("Silver", 2, "spend", "lifetime", Decimal("500"))]

    with django_capture_on_commit_callbacks(execute=True):
        change = score_settings_update(
            merchant=merchant,
            user=staff_user,
            values=defaults() | {"dormant_days": 200, "cadence": "weekly", "weekday": 0},
            grid=DEFAULT_RFM_GRID,
            tier_rules=rules,
        )

    assert change is not None and change.changed_by == staff_user
    assert change.old["dormant_days"] == 180 and change.new["dormant_days"] == 200
    assert change.new["tier_rules"] == [
        {
            "tier": "Silver",
            "rank": 2,
            "metric": "spend",
            "period": "lifetime",
            "threshold": "500.00",
        }
    ]
    # the tier was created, and the recomputation ran on commit and assigned it
    silver = Tier.objects.get(merchant=merchant, name="Silver")
    customer.refresh_from_db()
    assert customer.tier == silver
    assert score_settings_for(merchant).status == "ok"
    # saving the same values again records nothing
    assert (
        score_settings_update(
            merchant=merchant,
            user=staff_user,
            values=defaults() | {"dormant_days": 200, "cadence": "weekly", "weekday": 0},
            grid=DEFAULT_RFM_GRID,
            tier_rules=rules,
        )
        is None
    )
    assert ScoreSettingsChange.objects.count() == 1


# -- the pages ----------------------------------------------------------------------------------


def test_the_settings_page_shows_errors_in_place(manager_client, merchant):
    response = manager_client.post(
        reverse("customers:score_settings"),
        score_settings_post(dormant_days="60", grid_r4_fm3="winners"),
    )

    html = response.content.decode()
    assert response.status_code == 400
    assert "The settings were not saved" in html
    assert "Select a valid choice. winners is not one of the available choices." in html
    assert ScoreSettingsChange.objects.count() == 0

    response = manager_client.post(
        reverse("customers:score_settings"), score_settings_post(dormant_days="60")
    )
    assert response.status_code == 400
    assert "Dormant days (60) must exceed at-risk days (90)" in response.content.decode()


def test_the_settings_page_saves_and_lists_the_change(manager_client, merchant):
    data = score_settings_post(grid_r3_fm1="almost_lost")
    data |= {
        "tiers-TOTAL_FORMS": "2",
        "tiers-0-name": "Gold",
        "tiers-0-rank": "3",
        "tiers-0-metric": "spend",
        "tiers-0-period": "calendar_year",
        "tiers-0-threshold": "1000",
        "tiers-1-name": "",  # a blank row is ignored
        "tiers-1-metric": "spend",
        "tiers-1-period": "lifetime",
    }

    response = manager_client.post(reverse("customers:score_settings"), data, follow=True)

    html = response.content.decode()
    assert "Score settings saved" in html
    assert "RFM grid R 3, FM 1: needs_attention → almost_lost" in html
    assert "tier rule added: Gold (rank 3) from 1000.00 spend, this calendar year" in html
    assert ScoreSettings.objects.get(merchant=merchant).rfm_grid[2][0] == "almost_lost"
    assert TierRule.objects.get(merchant=merchant).period == "calendar_year"


def test_the_overview_counts_stages_groups_and_tiers(staff_client, merchant):
    now = dt.datetime.now(dt.UTC)
    for days in (1, 2, 100):
        TransactionFactory(
            customer=CustomerFactory(merchant=merchant), occurred_at=now - dt.timedelta(days=days)
        )
    CustomerFactory(merchant=merchant)
    scores_compute(merchant=merchant)

    response = staff_client.get(reverse("customers:scores"))

    html = response.content.decode()
    assert response.status_code == 200
    stages = response.context["stages"]
    assert [(name, count) for name, _, count, _ in stages if count] == [("new", 2), ("at_risk", 1)]
    assert response.context["no_stage"] == 1
    assert 'href="/customers/?lifecycle_stage=new"' in html
    assert "Up to date" in html
    assert "recompute-now" in html and "settings-link" in html  # an owner's buttons
    # a staff member sees neither
    StaffMembership.objects.filter(merchant=merchant).update(role=Role.STAFF)
    html = staff_client.get(reverse("customers:scores")).content.decode()
    assert "recompute-now" not in html and "settings-link" not in html


def test_recompute_now_queues_and_the_page_says_so(
    manager_client, merchant, django_capture_on_commit_callbacks
):
    TransactionFactory(customer=CustomerFactory(merchant=merchant))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = manager_client.post(reverse("customers:score_recompute"), follow=True)
    assert "being recomputed" in response.content.decode()
    assert ScoreSettings.objects.get(merchant=merchant).status == "queued"
    assert 'id="recompute-now" disabled' in response.content.decode()
    for callback in callbacks:
        callback()
    assert ScoreSettings.objects.get(merchant=merchant).status == "ok"


def test_a_failed_computation_keeps_the_old_scores_and_says_why(merchant, monkeypatch):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer)
    scores_compute(merchant=merchant)
    before = CustomerMetrics.objects.get(pk=customer.pk).rfm_group

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("customers.scores.service._write_lifecycle_and_rfm", broken)
    with pytest.raises(RuntimeError):
        scores_compute(merchant=merchant)

    row = ScoreSettings.objects.get(merchant=merchant)
    assert (row.status, row.error) == ("failed", "RuntimeError: disk full")
    assert CustomerMetrics.objects.get(pk=customer.pk).rfm_group == before


def test_transitions_count_each_customer_once_and_link_to_them(staff_client, merchant):
    week = dt.datetime(2026, 11, 2, 12, tzinfo=TORONTO)  # a Monday
    mover, back, other = (CustomerFactory(merchant=merchant) for _ in range(3))

    def change(customer, from_value, to_value, when):
        ScoreChange.objects.create(
            merchant=merchant,
            customer=customer,
            kind="lifecycle",
            from_value=from_value,
            to_value=to_value,
            changed_at=when,
        )

    change(mover, "new", "repeat", week)
    change(mover, "repeat", "at_risk", week + dt.timedelta(days=3))
    change(back, "loyal", "at_risk", week)  # moved and came back within the week
    change(back, "at_risk", "loyal", week + dt.timedelta(days=1))
    change(other, "", "new", week + dt.timedelta(days=6, hours=11, minutes=59))  # Sun 23:59
    change(other, "new", "repeat", week + dt.timedelta(days=7))  # next Monday: not counted

    response = staff_client.get(
        reverse("customers:score_transitions"), {"period": "week", "start": "2026-11-04"}
    )

    rows = {row[0]: dict(row[2]) for row in response.context["rows"]}
    assert response.context["moved"] == 2
    assert rows["new"]["at_risk"] == 1 and rows[""]["new"] == 1
    assert rows["loyal"]["at_risk"] == 0
    link = (
        f"{reverse('customers:score_transition_customers')}?kind=lifecycle&amp;period=week"
        "&amp;start=2026-11-02&amp;from=new&amp;to=at_risk"
    )
    assert link in response.content.decode()

    cell = staff_client.get(
        reverse("customers:score_transition_customers"),
        {"period": "week", "start": "2026-11-02", "from": "new", "to": "at_risk"},
    )
    assert [c.pk for c in cell.context["page_obj"]] == [mover.pk]


def test_another_merchants_changes_are_not_counted(staff_client, merchant, other_merchant):
    stranger = CustomerFactory(merchant=other_merchant)
    ScoreChange.objects.create(
        merchant=other_merchant,
        customer=stranger,
        kind="lifecycle",
        from_value="new",
        to_value="repeat",
        changed_at=dt.datetime.now(dt.UTC),
    )
    response = staff_client.get(reverse("customers:score_transitions"))
    assert response.context["moved"] == 0
    cell = staff_client.get(
        reverse("customers:score_transition_customers"), {"from": "new", "to": "repeat"}
    )
    assert list(cell.context["page_obj"]) == []


def test_the_customer_page_shows_scores_and_their_history(staff_client, merchant):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, occurred_at=dt.datetime.now(dt.UTC))
    scores_compute(merchant=merchant)

    html = staff_client.get(reverse("customers:detail", args=[customer.pk])).content.decode()

    assert 'id="lifecycle-stage">New<' in html
    assert "1-1-1" in html
    assert "purchase or refund: exactly one order" in html  # the purchase's history row


def test_the_customer_list_filters_by_stage_and_group(staff_client, merchant):
    buyer = CustomerFactory(merchant=merchant, external_id="B")
    TransactionFactory(customer=buyer)
    CustomerFactory(merchant=merchant, external_id="N")
    scores_compute(merchant=merchant)

    def listed(**params):
        response = staff_client.get(reverse("customers:list"), params)
        return [row.record.external_id for row in response.context["table"].paginated_rows]

    assert listed(lifecycle_stage="new") == ["B"]
    assert listed(lifecycle_stage="none") == ["N"]
    assert listed(lifecycle_stage=["none", "new"]) == ["B", "N"]
    assert listed(rfm_group="prospects") == ["N"]
    assert listed(smart_segment="one_time_shopper") == ["B"]
    assert listed(smart_segment=["waiting_first_order", "lost"]) == ["N"]


def test_the_overview_lists_the_smart_segments_with_their_rules(staff_client, merchant):
    # given two one-time shoppers, one of them long ago, and a customer without an order
    now = dt.datetime.now(dt.UTC)
    for days in (3, 400):
        TransactionFactory(
            customer=CustomerFactory(merchant=merchant), occurred_at=now - dt.timedelta(days=days)
        )
    CustomerFactory(merchant=merchant)
    scores_compute(merchant=merchant)

    # when
    response = staff_client.get(reverse("customers:scores"))

    # then every one of the ten, counted, with its rule and a link to its customers
    rows = {name: (count, rule) for name, _, count, rule in response.context["smart"]}
    assert len(rows) == 10
    assert rows["one_time_shopper"][0] == rows["lost"][0] == rows["waiting_first_order"][0] == 1
    assert rows["lost"][1] == (
        "step 2: one order, more than 90 days ago; or step 3: no order for more than 4 of "
        "their own gaps between orders"
    )
    html = response.content.decode()
    assert 'href="/customers/?smart_segment=one_time_shopper"' in html


# -- the schedule -------------------------------------------------------------------------------


def test_scores_are_due_nightly_or_weekly_from_three_in_the_merchants_time_zone(db):
    merchant = MerchantFactory(slug="tz", time_zone="America/Toronto")
    settings_row = score_settings_for(merchant)
    # never computed: due at once
    assert scores_due(now=dt.datetime(2026, 12, 5, 12, tzinfo=TORONTO)) == [merchant]
    ScoreSettings.objects.filter(pk=settings_row.pk).update(
        status="ok", scheduled_on=dt.date(2026, 12, 4)
    )
    # Saturday 02:59 local: not yet; 03:00: due; computed today: not again
    assert scores_due(now=dt.datetime(2026, 12, 5, 2, 59, tzinfo=TORONTO)) == []
    assert scores_due(now=dt.datetime(2026, 12, 5, 3, 0, tzinfo=TORONTO)) == [merchant]
    # weekly on Sunday: not on Saturday, on Sunday
    ScoreSettings.objects.filter(pk=settings_row.pk).update(cadence="weekly", weekday=6)
    assert scores_due(now=dt.datetime(2026, 12, 5, 4, 0, tzinfo=TORONTO)) == []
    assert scores_due(now=dt.datetime(2026, 12, 6, 4, 0, tzinfo=TORONTO)) == [merchant]
    settings_row.refresh_from_db()
    assert next_scheduled_run(
        merchant=merchant,
        settings_row=settings_row,
        now=dt.datetime(2026, 12, 5, 4, tzinfo=TORONTO),
    ) == dt.datetime(2026, 12, 6, 3, tzinfo=TORONTO)


def test_a_failed_or_manual_run_does_not_stand_in_for_the_schedule(merchant):
    TransactionFactory(customer=CustomerFactory(merchant=merchant))
    scores_compute(merchant=merchant, scheduled=False)  # "recompute now"
    assert scores_due() == [merchant]
    scores_compute(merchant=merchant)
    ScoreSettings.objects.filter(merchant=merchant).update(status="failed")
    assert scores_due() == []  # the scheduled run of today succeeded before


def test_a_running_computation_is_not_started_twice_unless_it_is_stale(db):
    merchant = MerchantFactory(slug="busy")
    now = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
    score_settings_for(merchant)
    ScoreSettings.objects.filter(merchant=merchant).update(
        status="running", started_at=now - dt.timedelta(minutes=30)
    )
    assert scores_due(now=now) == []
    assert scores_due(now=now + dt.timedelta(hours=2)) == [merchant]


def test_the_beat_task_computes_what_is_due(merchant):
    TransactionFactory(customer=CustomerFactory(merchant=merchant))
    assert compute_due_scores() == 1  # in process without a broker
    assert ScoreSettings.objects.get(merchant=merchant).status == "ok"
    assert compute_due_scores() == 0
