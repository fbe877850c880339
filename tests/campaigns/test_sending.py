"""Sending campaigns: who is eligible and why not, the snapshot, delivery that never sends
twice (a retried task, a sender killed in the middle, overlapping ticks), retries with
backoff, quiet hours across a DST change, the frequency cap across campaigns, the holdout,
finishing with one `last_contacted_at` change, and the scheduler's tick."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from typing import Any, ClassVar

import pytest
from django.core.exceptions import ValidationError
from django.test import TestCase, override_settings
from django.utils import timezone

from campaigns import audience
from campaigns.channels import ChannelBackend, ChannelError, OutgoingMessage
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Channel,
    ContactRules,
    Delivery,
    DeliveryStatus,
    SkipReason,
)
from campaigns.services import sending
from campaigns.services.campaigns import (
    campaign_delete,
    campaign_duplicate,
    campaign_save,
    campaign_schedule,
)
from customers.models import Customer, CustomerMetrics
from customers.signals import customers_changed
from segments import services as segment_services
from segments.models import SegmentKind
from tests.factories import CustomerFactory, MerchantFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 16, 0, tzinfo=dt.UTC)  # 12:00 in Toronto


class RecordingBackend(ChannelBackend):
    """Records every message; fails as told by `fail` (customer external id -> error)."""

    sent: ClassVar[list[OutgoingMessage]] = []
    fail: ClassVar[dict[str, ChannelError]] = {}
    opened: ClassVar[int] = 0

    def open(self) -> None:
        RecordingBackend.opened += 1

    def send(self, message: OutgoingMessage) -> None:
        error = self.fail.get(message.customer)
        if error is not None:
            raise error
        self.sent.append(message)


RECORDING = {
    channel: {"BACKEND": "tests.campaigns.test_sending.RecordingBackend", "OPTIONS": {}}
    for channel in ("email", "sms", "push")
}


@pytest.fixture(autouse=True)
def recording():
    RecordingBackend.sent = []
    RecordingBackend.fail = {}
    RecordingBackend.opened = 0
    with override_settings(CAMPAIGN_CHANNELS=RECORDING):
        yield RecordingBackend


@pytest.fixture
def merchant():
    return MerchantFactory(slug="acme", time_zone="America/Toronto")


def manual(merchant, name, customers):
    segment = segment_services.segment_create(merchant=merchant, name=name, kind=SegmentKind.MANUAL)
    segment_services.segment_members_add(segment=segment, customers=[c.pk for c in customers])
    return segment


def draft(merchant, include, exclude=(), **fields):
    values = {
        "name": "Spring",
        "channel": Channel.EMAIL,
        "subject": "Hi {{ first_name }}",
        "body": 'Hello {{ first_name|default:"friend" }}, you have {{ points_balance }} points.',
        "holdout_percent": 0,
        **fields,
    }
    return campaign_save(merchant=merchant, include=include, exclude=exclude, **values)


def start(campaign_id, **kwargs):
    """`campaign_start`, with what it does after its commit (start the senders) run too."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return sending.campaign_start(campaign_id=campaign_id, **kwargs)


def statuses(campaign):
    return Counter(Delivery.objects.filter(campaign=campaign).values_list("status", "skip_reason"))


# --- eligibility ---------------------------------------------------------------------------


def test_each_member_is_eligible_or_skipped_for_the_first_reason_that_applies(merchant):
    # given: one member per reason
    ok = CustomerFactory(merchant=merchant, opted_in=True)
    no_consent = CustomerFactory(merchant=merchant, opted_in=True, email_opt_in=False)
    no_address = CustomerFactory(merchant=merchant, opted_in=True, email="")
    both = CustomerFactory(merchant=merchant, email="", email_opt_in=False)  # consent first
    excluded = CustomerFactory(merchant=merchant, opted_in=True)
    CustomerFactory(merchant=merchant, opted_in=True)  # not a member
    members = manual(merchant, "Members", [ok, no_consent, no_address, both, excluded])
    blocked = manual(merchant, "Blocked", [excluded])
    campaign = draft(merchant, [members], [blocked])

    # when
    seen = audience.preview(campaign, now=NOW)

    # then: the preview's counts and the snapshot agree, reason by reason
    assert seen.members == 4
    assert seen.eligible == 1
    assert seen.skipped == {
        "no_consent": 2,
        "no_address": 1,
        "frequency_cap": 0,
        "holdout": 0,
    }
    start(campaign.pk, now=NOW)
    assert statuses(campaign) == {
        ("sent", ""): 1,
        ("skipped", "no_consent"): 2,
        ("skipped", "no_address"): 1,
    }
    assert [m.to for m in RecordingBackend.sent] == [ok.email]


def test_sms_needs_the_sms_opt_in_and_a_phone_and_push_only_the_push_opt_in(merchant):
    phone_less = CustomerFactory(merchant=merchant, opted_in=True, phone="")
    no_push = CustomerFactory(merchant=merchant, opted_in=True, push_opt_in=False)
    segment = manual(merchant, "All", [phone_less, no_push])

    sms = audience.preview(draft(merchant, [segment], channel=Channel.SMS, name="s"), now=NOW)
    push = audience.preview(draft(merchant, [segment], channel=Channel.PUSH, name="p"), now=NOW)

    assert (sms.eligible, sms.skipped["no_address"]) == (1, 1)
    assert (push.eligible, push.skipped["no_consent"]) == (1, 1)


def test_the_frequency_cap_counts_messages_of_the_channel_across_campaigns(merchant):
    # given: at most 2 emails in 7 days
    ContactRules.objects.create(merchant=merchant, cap_messages=2, cap_days=7)
    customer = CustomerFactory(merchant=merchant, opted_in=True)
    segment = manual(merchant, "One", [customer])
    first = draft(merchant, [segment], name="First")
    second = draft(merchant, [segment], name="Second")
    sms = draft(merchant, [segment], name="Text", channel=Channel.SMS)
    third = draft(merchant, [segment], name="Third")

    # when: two emails went out in the last week, and an SMS
    start(first.pk, now=NOW - dt.timedelta(days=3))
    start(second.pk, now=NOW - dt.timedelta(days=1))
    start(sms.pk, now=NOW - dt.timedelta(hours=1))

    # then: a third email is capped; the SMS counted only for SMS
    assert audience.preview(third, now=NOW).skipped["frequency_cap"] == 1
    # and a week after the first, one slot is free again
    later = NOW + dt.timedelta(days=4, minutes=1)
    assert audience.preview(third, now=later).eligible == 1


def test_the_holdout_is_its_share_of_the_eligible_and_the_same_every_time(merchant):
    # given: 1,000 opted-in members and 100 without consent
    eligible = [CustomerFactory(merchant=merchant, opted_in=True) for _ in range(400)]
    unreachable = [CustomerFactory(merchant=merchant) for _ in range(40)]
    segment = manual(merchant, "Big", eligible + unreachable)
    campaign = draft(merchant, [segment], holdout_percent=20)

    # when
    held = set(
        audience.with_reason(campaign, now=NOW)
        .filter(reason="holdout")
        .values_list("pk", flat=True)
    )
    again = set(
        audience.with_reason(campaign, now=NOW + dt.timedelta(days=1))
        .filter(reason="holdout")
        .values_list("pk", flat=True)
    )

    # then: drawn among the eligible only, about 20 % (80 of 400, binomial sd 8), stable, and
    # the same as the Python version
    assert held == again
    assert held <= {c.pk for c in eligible}
    assert 50 <= len(held) <= 110
    assert held == {
        c.pk for c in eligible if audience.in_holdout(c.pk, seed=campaign.holdout_seed, percent=20)
    }
    # a duplicate draws its own group
    copy = campaign_duplicate(campaign=campaign)
    other = set(
        audience.with_reason(copy, now=NOW).filter(reason="holdout").values_list("pk", flat=True)
    )
    assert other != held


# --- quiet hours ---------------------------------------------------------------------------


def test_quiet_hours_end_at_the_local_time_of_the_next_morning_across_a_dst_change():
    rules = ContactRules(quiet_start=dt.time(21, 0), quiet_end=dt.time(9, 0))
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    # 22:00 on Saturday 28 March 2026 (CET, +1); clocks go forward that night
    evening = dt.datetime(2026, 3, 28, 22, 0, tzinfo=berlin)

    opens = audience.send_time(channel=Channel.SMS, rules=rules, tz=berlin, now=evening)

    # 09:00 CEST (+2) is 07:00 UTC, not 08:00 (what adding 11 hours would give)
    assert opens == dt.datetime(2026, 3, 29, 7, 0, tzinfo=dt.UTC)
    assert opens is not None and opens.astimezone(berlin).time() == dt.time(9, 0)
    # after midnight, the same morning; email never waits; outside the window nobody waits
    night = dt.datetime(2026, 3, 29, 4, 0, tzinfo=berlin)
    assert audience.send_time(channel=Channel.PUSH, rules=rules, tz=berlin, now=night) == opens
    assert audience.send_time(channel=Channel.EMAIL, rules=rules, tz=berlin, now=evening) is None
    noon = dt.datetime(2026, 3, 29, 12, 0, tzinfo=berlin)
    assert audience.send_time(channel=Channel.SMS, rules=rules, tz=berlin, now=noon) is None


def test_a_window_that_does_not_cross_midnight_and_no_window():
    rules = ContactRules(quiet_start=dt.time(12, 0), quiet_end=dt.time(14, 0))
    assert audience.in_quiet_hours(rules, dt.time(12, 0))
    assert not audience.in_quiet_hours(rules, dt.time(14, 0))
    assert not audience.in_quiet_hours(
        ContactRules(quiet_start=dt.time(9), quiet_end=dt.time(9)), dt.time(9)
    )


def test_an_sms_started_in_quiet_hours_waits_for_the_window(merchant):
    customer = CustomerFactory(merchant=merchant, opted_in=True)
    campaign = draft(merchant, [manual(merchant, "One", [customer])], channel=Channel.SMS)
    # 23:30 tomorrow in Toronto (the senders run now, before the window opens)
    tomorrow = merchant.today() + dt.timedelta(days=1)
    late = dt.datetime.combine(tomorrow, dt.time(23, 30), tzinfo=merchant.tzinfo)

    start(campaign.pk, now=late)

    (row,) = Delivery.objects.filter(campaign=campaign)
    assert row.status == DeliveryStatus.QUEUED
    opens = dt.datetime.combine(tomorrow + dt.timedelta(days=1), dt.time(9), tzinfo=merchant.tzinfo)
    assert row.not_before == opens
    assert RecordingBackend.sent == []


# --- delivery that never sends twice ---------------------------------------------------------


def test_a_sender_run_again_after_a_crash_sends_only_what_was_not_sent(merchant):
    # given: 250 members; a sender claimed the first batch and died after sending 120
    customers = [CustomerFactory(merchant=merchant, opted_in=True) for _ in range(250)]
    campaign = draft(merchant, [manual(merchant, "Many", customers)])
    size = _start_without_senders(campaign)
    assert size == 250
    claimed = sending._claim(campaign.pk, now=timezone.now(), limit=sending.BATCH_SIZE)
    rows = list(Delivery.objects.filter(pk__in=claimed).order_by("pk"))
    for row in rows[:120]:  # sent and recorded before the crash
        RecordingBackend.sent.append(
            OutgoingMessage(
                key=f"c{campaign.pk}-d{row.pk}",
                channel="email",
                merchant="acme",
                campaign_id=campaign.pk,
                customer=row.customer.external_id,
                to="x",
                subject="",
                body="",
            )
        )
        Delivery.objects.filter(pk=row.pk).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now()
        )

    # when: the task is retried at once (the claim is still held) ...
    sending.deliveries_send(campaign_id=campaign.pk)
    # ... and, after the lease, the dispatcher requeues the interrupted rows and resumes
    sending.campaigns_dispatch(now=timezone.now() + sending.lease() + dt.timedelta(seconds=1))

    # then: every customer got exactly one message; the campaign is finished
    keys = Counter(m.key for m in RecordingBackend.sent)
    assert len(keys) == 250
    assert max(keys.values()) == 1
    assert statuses(campaign) == {("sent", ""): 250}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def _start_without_senders(campaign):
    """Snapshot the audience without running senders (as when the worker died at once)."""
    original = sending._start_senders
    sending._start_senders = lambda *args, **kwargs: None
    try:
        return sending.campaign_start(campaign_id=campaign.pk)
    finally:
        sending._start_senders = original


def test_two_starts_and_two_senders_at_once_send_each_message_once(merchant):
    customers = [CustomerFactory(merchant=merchant, opted_in=True) for _ in range(30)]
    campaign = draft(merchant, [manual(merchant, "Some", customers)])

    first = start(campaign.pk)
    second = start(campaign.pk)  # an overlapping tick
    sending.deliveries_send(campaign_id=campaign.pk)  # a retried task

    assert (first, second) == (30, 0)
    assert len(RecordingBackend.sent) == 30
    assert Delivery.objects.filter(campaign=campaign).count() == 30


def test_a_channel_error_that_may_pass_is_retried_later_and_a_permanent_one_fails(merchant):
    # given: the server refuses one address, and is down for another
    refused, flaky, fine = (CustomerFactory(merchant=merchant, opted_in=True) for _ in range(3))
    RecordingBackend.fail = {
        refused.external_id: ChannelError("550 no such user", retryable=False),
        flaky.external_id: ChannelError("connection refused", retryable=True),
    }
    campaign = draft(merchant, [manual(merchant, "Three", [refused, flaky, fine])])

    # when
    start(campaign.pk)

    # then: the refused one failed with the error; the flaky one waits 30 s and rows after
    # it were given back untried
    rows = {d.customer_id: d for d in Delivery.objects.filter(campaign=campaign)}
    assert rows[refused.pk].status == DeliveryStatus.FAILED
    assert rows[refused.pk].error == "550 no such user"
    assert rows[flaky.pk].status == DeliveryStatus.QUEUED
    assert rows[flaky.pk].attempts == 1
    assert rows[flaky.pk].not_before is not None
    assert rows[flaky.pk].not_before > timezone.now() + dt.timedelta(seconds=20)

    # when: the server stays down for every attempt
    for _ in range(sending.MAX_ATTEMPTS):
        Delivery.objects.filter(campaign=campaign, status="queued").update(not_before=None)
        sending.deliveries_send(campaign_id=campaign.pk)

    # then: it failed after MAX_ATTEMPTS; the campaign finished; the good one was sent once
    rows = {d.customer_id: d for d in Delivery.objects.filter(campaign=campaign)}
    assert rows[flaky.pk].status == DeliveryStatus.FAILED
    assert rows[flaky.pk].attempts == sending.MAX_ATTEMPTS
    assert rows[fine.pk].status == DeliveryStatus.SENT
    assert [m.customer for m in RecordingBackend.sent] == [fine.external_id]
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT


def test_backoff_grows():
    waits = [sending.backoff(n).total_seconds() for n in range(1, 5)]
    assert waits == [30, 120, 480, 1920]


def test_the_message_is_rendered_for_each_customer(merchant):
    anna = CustomerFactory(merchant=merchant, opted_in=True, first_name="Anna", points_balance=40)
    nameless = CustomerFactory(merchant=merchant, opted_in=True, first_name="")
    campaign = draft(merchant, [manual(merchant, "Two", [anna, nameless])])

    start(campaign.pk)

    by_customer = {m.customer: m for m in RecordingBackend.sent}
    assert by_customer[anna.external_id].subject == "Hi Anna"
    assert by_customer[anna.external_id].body == "Hello Anna, you have 40 points."
    assert by_customer[nameless.external_id].body.startswith("Hello friend,")
    assert by_customer[anna.external_id].key.startswith(f"c{campaign.pk}-d")


# --- finishing ---------------------------------------------------------------------------


def test_finishing_sets_last_contacted_of_those_reached_as_one_change(merchant):
    reached = [CustomerFactory(merchant=merchant, opted_in=True) for _ in range(3)]
    not_reached = CustomerFactory(merchant=merchant)
    campaign = draft(merchant, [manual(merchant, "Four", [*reached, not_reached])])
    announced: list[dict[str, Any]] = []

    def listen(sender, **kwargs):
        announced.append(kwargs)

    customers_changed.connect(listen)
    try:
        start(campaign.pk)
    finally:
        customers_changed.disconnect(listen)

    contacted = dict(
        Customer.objects.filter(merchant=merchant).values_list("pk", "last_contacted_at")
    )
    copies = dict(
        CustomerMetrics.objects.filter(merchant=merchant).values_list(
            "customer_id", "last_contacted_at"
        )
    )
    assert all(contacted[c.pk] is not None for c in reached)
    assert contacted[not_reached.pk] is None
    assert copies == contacted  # the segment engine's copy follows
    assert len(announced) == 1
    assert announced[0]["customer_ids"] == frozenset(c.pk for c in reached)


# --- guards and the life of a campaign --------------------------------------------------------


def test_a_sent_campaign_cannot_be_edited_or_removed_but_can_be_duplicated(merchant):
    customer = CustomerFactory(merchant=merchant, opted_in=True)
    segment = manual(merchant, "One", [customer])
    campaign = draft(merchant, [segment])
    start(campaign.pk)
    campaign.refresh_from_db()

    with pytest.raises(ValidationError, match="duplicate it"):
        campaign_save(merchant=merchant, campaign=campaign, include=[segment], name="New")
    with pytest.raises(ValidationError, match="duplicate it"):
        campaign_delete(campaign=campaign)
    copy = campaign_duplicate(campaign=campaign)
    assert copy.status == CampaignStatus.DRAFT
    assert copy.name == "Copy of Spring"
    assert list(copy.targeting.values_list("segment_id", "exclude")) == [(segment.pk, False)]
    assert copy.duplicated_from_id == campaign.pk
    assert not Delivery.objects.filter(campaign=copy).exists()


def test_an_inactive_segment_cannot_be_targeted_and_an_unknown_placeholder_is_refused(merchant):
    segment = manual(merchant, "Dormant", [])
    segment_services.segment_update(segment=segment, is_active=False)

    with pytest.raises(ValidationError, match="inactive"):
        draft(merchant, [segment])
    active = manual(merchant, "Active", [])
    with pytest.raises(ValidationError) as error:
        draft(merchant, [active], body="Hi {{ frist_name }}")
    assert "frist_name" in str(error.value.message_dict["body"])
    with pytest.raises(ValidationError) as error:
        draft(merchant, [active], body="{% for x in y %}")
    assert "not allowed" in str(error.value.message_dict["body"])


def test_a_segment_made_inactive_after_saving_stops_the_send(merchant):
    segment = manual(merchant, "Soon dormant", [CustomerFactory(merchant=merchant)])
    campaign = draft(merchant, [segment])
    segment_services.segment_update(segment=segment, is_active=False)

    with pytest.raises(sending.SendError, match="inactive segments: Soon dormant"):
        start(campaign.pk)
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_stale_segments_are_named_in_the_preview(merchant):
    fresh = segment_services.segment_create(
        merchant=merchant, name="Fresh", kind=SegmentKind.DYNAMIC, rules=_rules()
    )
    stale = segment_services.segment_create(
        merchant=merchant, name="Stale", kind=SegmentKind.DYNAMIC, rules=_rules()
    )
    from segments.models import Segment

    Segment.objects.filter(pk=fresh.pk).update(last_refreshed_at=NOW - dt.timedelta(hours=2))
    Segment.objects.filter(pk=stale.pk).update(last_refreshed_at=NOW - dt.timedelta(days=2))
    campaign = draft(merchant, [fresh, stale])

    assert [s.name for s in audience.preview(campaign, now=NOW).stale_segments] == ["Stale"]


def _rules():
    return {"match": "all", "conditions": [{"field": "total_spend", "op": "gt", "value": 0}]}


def test_the_scheduler_starts_a_due_campaign_once(merchant):
    customer = CustomerFactory(merchant=merchant, opted_in=True)
    campaign = draft(merchant, [manual(merchant, "One", [customer])])
    campaign_schedule(campaign=campaign, send_at=timezone.now() + dt.timedelta(hours=1))

    with TestCase.captureOnCommitCallbacks(execute=True):
        early = sending.campaigns_dispatch()
        due = sending.campaigns_dispatch(now=timezone.now() + dt.timedelta(hours=1, minutes=1))
        again = sending.campaigns_dispatch(now=timezone.now() + dt.timedelta(hours=1, minutes=2))

    assert early["started"] == 0
    assert due["started"] == 1
    assert again["started"] == 0
    assert len(RecordingBackend.sent) == 1
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT


def test_scheduling_in_the_past_is_refused(merchant):
    campaign = draft(merchant, [manual(merchant, "One", [])])
    with pytest.raises(ValidationError, match="future"):
        campaign_schedule(campaign=campaign, send_at=timezone.now() - dt.timedelta(minutes=1))


def test_the_skip_reasons_are_all_listed_in_order():
    assert [r for r, _, _ in audience.AudiencePreview(0, 0).skipped_rows] == [
        SkipReason.NO_CONSENT,
        SkipReason.NO_ADDRESS,
        SkipReason.FREQUENCY_CAP,
        SkipReason.HOLDOUT,
    ]


def test_a_segment_a_campaign_uses_cannot_be_removed_and_the_refusal_names_it(merchant):
    segment = manual(merchant, "Members", [CustomerFactory(merchant=merchant)])
    draft(merchant, [segment], name="Spring news")

    with pytest.raises(segment_services.SegmentInUseError) as refused:
        segment_services.segments_remove(segments=[segment])

    assert "the campaign “Spring news”" in str(refused.value)


def test_content_broken_after_saving_stops_the_send_and_writes_nothing(merchant):
    campaign = draft(merchant, [manual(merchant, "One", [CustomerFactory(merchant=merchant)])])
    Campaign.objects.filter(pk=campaign.pk).update(body="Hi {{ nickname }}")

    with pytest.raises(sending.SendError, match=r"cannot be sent as written.*nickname"):
        start(campaign.pk)
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_a_scheduled_start_that_failed_says_why_until_the_campaign_is_changed(merchant):
    segment = manual(merchant, "Soon dormant", [CustomerFactory(merchant=merchant)])
    campaign = draft(merchant, [segment])
    campaign_schedule(campaign=campaign, send_at=timezone.now() + dt.timedelta(minutes=5))
    segment_services.segment_update(segment=segment, is_active=False)

    sending.campaigns_dispatch(now=timezone.now() + dt.timedelta(minutes=6))

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    assert "inactive segments: Soon dormant" in campaign.send_error
    other = manual(merchant, "Active", [CustomerFactory(merchant=merchant)])
    campaign_save(merchant=merchant, campaign=campaign, include=[other], name="Spring")
    campaign.refresh_from_db()
    assert campaign.send_error == ""
