"""The portal's campaign pages: the list, the form (errors on their fields, nothing half
written), a campaign's page by status, the audience, progress and results partials, the
deliveries list, the actions (send through a file outbox, schedule in the merchant's time,
unschedule, test, duplicate, remove), the contact rules, tenancy (another merchant's
campaign is not found on any URL) and the roles (what staff may and may not do, and see)."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns import selectors
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Channel,
    ContactRules,
    Delivery,
    SkipReason,
)
from campaigns.services.campaigns import campaign_save
from customers.models import Role
from customers.portal.permissions import Action, denied_message
from segments import services as segment_services
from segments.models import Segment, SegmentKind
from tests.campaigns.factories import CampaignFactory, DeliveryFactory
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    StaffMembershipFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

#: Monday 15 June 2026, 12:00 in Toronto (the merchant's time zone): outside quiet hours.
NOW = dt.datetime(2026, 6, 15, 16, 0, tzinfo=dt.UTC)
BODY = 'Hello {{ first_name|default:"friend" }}, you have {{ points_balance }} points.'


@pytest.fixture(autouse=True)
def _pinned_time(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)


@pytest.fixture(autouse=True)
def outbox(settings, tmp_path) -> Path:
    """Every channel writes files under tmp_path (never the project's var/outbox)."""
    settings.CAMPAIGN_CHANNELS = {
        channel: {"BACKEND": "campaigns.channels.FileBackend", "OPTIONS": {"DIR": str(tmp_path)}}
        for channel in Channel.values
    }
    return tmp_path


def sent_files(outbox: Path, campaign: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((outbox / "acme" / campaign).glob("*.json"))]


def client_for(merchant, role: Role, username: str | None = None, **user) -> Client:
    person = UserFactory(username=username or f"as-{role.value}", **user)
    StaffMembershipFactory(user=person, merchant=merchant, role=role)
    client = Client()
    assert client.login(username=person.username, password=DEMO_PASSWORD)
    return client


@pytest.fixture
def manager(merchant) -> Client:
    return client_for(merchant, Role.MANAGER, "mona")


@pytest.fixture
def staff(merchant) -> Client:
    return client_for(merchant, Role.STAFF, "sam")


def manual(merchant, name, customers=(), *, active=True) -> Segment:
    segment = segment_services.segment_create(merchant=merchant, name=name, kind=SegmentKind.MANUAL)
    if customers:
        segment_services.segment_members_add(segment=segment, customers=[c.pk for c in customers])
    if not active:
        segment_services.segments_set_active(segments=[segment], active=False)
        segment.refresh_from_db()
    return segment


@pytest.fixture
def people(merchant):
    """Ann and Bob (opted in), Cid (no consent for anything)."""
    return [
        CustomerFactory(merchant=merchant, first_name="Ann", external_id="C-ANN", opted_in=True),
        CustomerFactory(merchant=merchant, first_name="Bob", external_id="C-BOB", opted_in=True),
        CustomerFactory(merchant=merchant, first_name="Cid", external_id="C-CID"),
    ]


@pytest.fixture
def regulars(merchant, people) -> Segment:
    return manual(merchant, "Regulars", people)


def draft(merchant, include, exclude=(), **fields) -> Campaign:
    values = {
        "name": "Spring",
        "channel": Channel.EMAIL,
        "subject": "Hi {{ first_name }}",
        "body": BODY,
        "holdout_percent": 0,
        **fields,
    }
    return campaign_save(merchant=merchant, include=include, exclude=exclude, **values)


@pytest.fixture
def spring(merchant, regulars) -> Campaign:
    return draft(merchant, [regulars])


def form_data(segment, **changes) -> dict:
    return {
        "name": "Summer sale",
        "channel": "email",
        "subject": "Hi {{ first_name }}",
        "body": BODY,
        "holdout_percent": "10",
        "attribution_days": "7",
        "include": [segment.pk],
        **changes,
    }


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def url(name: str, campaign: Campaign, query: str = "") -> str:
    return reverse(f"campaigns:{name}", args=[campaign.pk]) + query


def send(client: Client, campaign: Campaign, **data):
    """POST send (confirmed), running what the send does after its commit (the senders)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(url("send", campaign), {"confirmed": "1", **data})


# -- the list ---------------------------------------------------------------------------------


def test_the_list_says_when_there_is_no_campaign_yet(manager):
    response = manager.get(reverse("campaigns:list"))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="campaigns-empty"' in page
    assert "Create your first campaign" in page


def test_the_list_shows_each_campaign_with_its_segments_and_delivery_counts(
    merchant, manager, regulars
):
    # given: a sent campaign with 2 sent, 1 failed and 3 skipped, and a draft
    sent = CampaignFactory(merchant=merchant, name="Sent one")
    sent.targeting.create(segment=regulars)
    for _ in range(2):
        DeliveryFactory(campaign=sent)
    DeliveryFactory(campaign=sent, failed=True)
    for _ in range(3):
        DeliveryFactory(campaign=sent, skipped=True)
    draft(merchant, [regulars], name="Next one")

    # when
    response = manager.get(reverse("campaigns:list"))

    # then
    page = response.content.decode()
    row = re.search(rf'<tr[^>]*data-campaign="{sent.pk}".*?</tr>', page, re.S).group(0)
    assert "Sent one" in row and "Regulars" in row and "Sent" in row
    assert re.findall(r'<td class="num">(\d+)', row) == ["2", "1", "3"]
    assert "Next one" in page
    assert "Showing 1\N{EN DASH}2 of 2 campaigns" in page


def test_the_list_filters_by_status_and_searches_names(merchant, manager, regulars):
    CampaignFactory(merchant=merchant, name="Autumn news")
    draft(merchant, [regulars], name="Winter news")

    sent = manager.get(reverse("campaigns:list"), {"status": "sent"}).content.decode()
    winter = manager.get(reverse("campaigns:list"), {"q": "wint"}).content.decode()

    assert "Autumn news" in sent and "Winter news" not in sent
    assert "Winter news" in winter and "Autumn news" not in winter


def test_the_list_reads_the_same_few_queries_for_one_campaign_or_many(merchant, manager, regulars):
    def queries() -> int:
        with CaptureQueriesContext(connection) as seen:
            assert manager.get(reverse("campaigns:list")).status_code == 200
        return len(seen)

    one = draft(merchant, [regulars], name="One")
    DeliveryFactory(campaign=CampaignFactory(merchant=merchant, name="Sent"))
    few = queries()
    for i in range(6):
        copy = draft(merchant, [regulars], name=f"More {i}")
        DeliveryFactory(campaign=CampaignFactory(merchant=merchant, name=f"Sent {i}"))
        assert copy.pk != one.pk

    assert queries() == few


# -- the form ---------------------------------------------------------------------------------


def test_the_form_offers_active_segments_to_send_to_and_lists_the_placeholders(
    merchant, manager, regulars
):
    manual(merchant, "Sleeping", active=False)

    page = manager.get(reverse("campaigns:new")).content.decode()

    include = re.search(r'<select name="include".*?</select>', page, re.S).group(0)
    exclude = re.search(r'<select name="exclude".*?</select>', page, re.S).group(0)
    assert "Regulars" in include and "Sleeping" not in include
    assert "Sleeping (inactive)" in exclude
    placeholders = re.search(r'id="placeholders".*?</table>', page, re.S).group(0)
    assert "points_balance" in placeholders and "Points the customer can spend" in placeholders


def test_a_new_campaign_is_saved_as_a_draft_and_its_page_opens(merchant, manager, regulars):
    response = manager.post(reverse("campaigns:new"), form_data(regulars))

    campaign = Campaign.objects.get(name="Summer sale")
    assert response.status_code == 302
    assert response["Location"] == url("detail", campaign)
    assert (campaign.status, campaign.merchant, campaign.holdout_percent) == ("draft", merchant, 10)
    assert list(campaign.segments.all()) == [regulars]
    assert campaign.created_by.username == "mona"
    assert texts(response) == ['Campaign "Summer sale" saved.']


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"body": "Hi {{ nickname }}"}, "body", "Unknown placeholder {{ nickname }} on line 1"),
        ({"body": "{% if x %}hi{% endif %}"}, "body", "is not a placeholder"),
        ({"subject": ""}, "subject", "An email needs a subject."),
        ({"channel": "push", "subject": ""}, "subject", "A push needs a title."),
        ({"body": "  "}, "body", "Write the message."),
        ({"holdout_percent": "60"}, "holdout_percent", "less than or equal to 50"),
        ({"include": []}, "include", "This field is required."),
    ],
)
def test_a_refused_campaign_shows_each_error_on_its_field_and_saves_nothing(
    manager, regulars, changes, field, error
):
    response = manager.post(reverse("campaigns:new"), form_data(regulars, **changes))

    page = response.content.decode()
    assert response.status_code == 400
    assert "Nothing was saved." in page
    assert error in str(response.context["form"].errors[field])
    assert not Campaign.objects.exists()


def test_every_problem_of_the_form_is_shown_at_once(manager, regulars):
    response = manager.post(
        reverse("campaigns:new"),
        form_data(regulars, name="", subject="", body="Hi {{ nick }}", include=[]),
    )

    errors = response.context["form"].errors
    assert set(errors) == {"name", "subject", "body", "include"}
    assert "Unknown placeholder {{ nick }} on line 1" in errors["body"][0]


def test_a_segment_both_sent_to_and_left_out_is_refused_on_the_left_out_field(manager, regulars):
    response = manager.post(reverse("campaigns:new"), form_data(regulars, exclude=[regulars.pk]))

    assert response.status_code == 400
    assert response.context["form"].errors["exclude"] == [
        '"Regulars" cannot be both sent to and excluded.'
    ]
    assert not Campaign.objects.exists()


def test_another_merchants_or_an_inactive_segment_is_not_a_choice(
    merchant, other_merchant, manager, regulars
):
    theirs = manual(other_merchant, "Theirs")
    sleeping = manual(merchant, "Sleeping", active=False)

    for segment in (theirs, sleeping):
        response = manager.post(reverse("campaigns:new"), form_data(regulars, include=[segment.pk]))
        assert response.status_code == 400
        assert "is not one of the available choices" in str(response.context["form"].errors)
    assert not Campaign.objects.exists()


def test_an_sms_has_no_subject_and_the_form_labels_a_push_title(manager, regulars):
    manager.post(
        reverse("campaigns:new"),
        form_data(regulars, channel="sms", subject="left over", name="Text"),
    )
    push = manager.post(reverse("campaigns:new"), form_data(regulars, channel="push", body=""))

    assert Campaign.objects.get(name="Text").subject == ""
    assert re.search(r'for="id_subject" class="form-label">\s*Title\s*<', push.content.decode())


def test_a_draft_is_edited_with_its_segments_filled_in(merchant, manager, spring, regulars):
    others = manual(merchant, "Others")

    page = manager.get(url("edit", spring)).content.decode()
    response = manager.post(
        url("edit", spring), form_data(regulars, name="Spring, again", exclude=[others.pk])
    )

    assert re.search(rf'<option value="{regulars.pk}" selected>Regulars', page)
    assert response.status_code == 302
    spring.refresh_from_db()
    assert spring.name == "Spring, again"
    assert set(spring.targeting.values_list("segment__name", "exclude")) == {
        ("Regulars", False),
        ("Others", True),
    }


def test_a_sent_campaigns_edit_page_answers_with_a_message_not_an_error(merchant, manager):
    sent = CampaignFactory(merchant=merchant, name="Gone out")

    shown = manager.get(url("edit", sent))
    posted = manager.post(url("edit", sent), {"name": "Changed"})

    for response in (shown, posted):
        assert response.status_code == 302
        assert response["Location"] == url("detail", sent)
    assert texts(shown) == [
        '"Gone out" has been sent: it cannot be changed. Duplicate it to send it again.'
    ]
    sent.refresh_from_db()
    assert sent.name == "Gone out"


# -- a campaign's page --------------------------------------------------------------------------


def test_a_drafts_page_shows_the_content_for_the_first_member_its_segments_and_the_backend(
    merchant, manager, spring, regulars, people, outbox
):
    page = manager.get(url("detail", spring)).content.decode()

    assert 'id="campaign-channel">Email<' in page
    assert 'id="campaign-status">Draft<' in page
    # Ann is the first member (by id): her name and points fill the placeholders
    assert re.search(r'id="preview-subject">Hi Ann<', page)
    assert "Hello Ann, you have 0 points." in page
    assert reverse("segments:detail", args=[regulars.pk]) in page
    assert f"Email goes to files in {outbox}." in page
    assert f'hx-get="{url("audience", spring)}"' in page
    assert 'id="progress"' not in page and 'id="results"' not in page


def test_an_sms_shows_its_length_under_the_text(merchant, manager, regulars):
    sms = draft(merchant, [regulars], channel=Channel.SMS, subject="", body="x" * 200)

    page = manager.get(url("detail", sms)).content.decode()

    assert "200 characters (GSM-7), 2 messages" in page
    assert 'id="preview-subject"' not in page


def test_a_campaign_without_members_is_shown_for_a_sample_customer(merchant, manager):
    empty = draft(merchant, [manual(merchant, "Nobody")])

    page = manager.get(url("detail", empty)).content.decode()

    assert "Hi Alex" in page and "a sample customer" in page


def test_a_scheduled_send_that_did_not_start_says_why_while_it_is_a_draft(manager, spring):
    Campaign.objects.filter(pk=spring.pk).update(send_error="A segment was deactivated.")

    draft_page = manager.get(url("detail", spring)).content.decode()
    manager.post(url("schedule", spring), {"send_at": "2026-06-20T09:30"})
    scheduled_page = manager.get(url("detail", spring)).content.decode()

    assert "The scheduled send did not start:" in draft_page
    assert "A segment was deactivated." in draft_page
    assert "did not start" not in scheduled_page  # scheduled again: the old error is stale


# -- the audience -----------------------------------------------------------------------------


def test_the_audience_counts_the_eligible_and_each_skip_reason(manager, spring):
    response = manager.get(url("audience", spring), HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'id="audience-members">3<', page)
    assert re.search(r'id="audience-eligible">2<', page)
    for reason, label in SkipReason.choices:
        row = re.search(rf'<tr id="skip-{reason}">.*?</tr>', page, re.S).group(0)
        assert str(label) in row
        assert re.search(rf'class="num">{1 if reason == "no_consent" else 0}<', row)
    assert "audience-waits" not in page and "audience-stale" not in page


def test_sms_in_quiet_hours_wait_until_the_morning_and_stale_segments_are_named(
    merchant, manager, monkeypatch, people
):
    # given: 23:00 in Toronto, and a dynamic segment last refreshed three days ago
    monkeypatch.setattr(timezone, "now", lambda: dt.datetime(2026, 6, 16, 3, 0, tzinfo=dt.UTC))
    stale = segment_services.segment_create(
        merchant=merchant,
        name="Old rules",
        kind=SegmentKind.DYNAMIC,
        rules={"match": "all", "conditions": [{"field": "orders_count", "op": "gte", "value": 0}]},
    )
    Segment.objects.filter(pk=stale.pk).update(
        last_refreshed_at=dt.datetime(2026, 6, 12, 10, 0, tzinfo=dt.UTC)
    )
    sms = draft(merchant, [stale], channel=Channel.SMS, subject="")

    page = manager.get(url("audience", sms)).content.decode()

    assert "SMS and push wait until 09:00" in page
    stale_note = re.search(r'id="audience-stale">.*?</div>', page, re.S).group(0)
    assert "Old rules" in stale_note and "2026-06-12 06:00" in stale_note  # Toronto time


def test_the_send_dialog_states_the_eligible_recipients(manager, spring):
    page = manager.get(url("audience", spring)).content.decode()

    assert 'id="send-modal"' in page
    assert "Send to 2 customers" in page


# -- sending ------------------------------------------------------------------------------------


def test_sending_through_the_page_writes_each_message_and_the_results_follow(
    merchant, manager, spring, people, outbox
):
    # when: sent now, the senders running after the commit (as without a broker)
    response = send(manager, spring)

    # then: the messages are files in the outbox, one per eligible customer
    spring.refresh_from_db()
    assert response.status_code == 302 and response["Location"] == url("detail", spring)
    assert spring.status == CampaignStatus.SENT
    messages = sent_files(outbox, str(spring.pk))
    assert sorted(m["to"] for m in messages) == sorted(c.email for c in people[:2])
    assert {m["subject"] for m in messages} == {"Hi Ann", "Hi Bob"}
    assert spring.sent_by.username == "mona"

    # and the page shows the progress, polls no more, and loads the results
    page = manager.get(url("detail", spring)).content.decode()
    assert 'id="campaign-status">Sent<' in page
    assert re.search(r'id="progress-sent">2<', page)
    assert re.search(r'id="progress-skipped">1<', page)
    assert "every 2s" not in page
    assert f'hx-get="{url("results", spring)}"' in page
    assert 'id="edit-campaign"' not in page and 'id="delete-campaign"' not in page
    results = manager.get(url("results", spring)).content.decode()
    assert re.search(r'id="results-sent">2<', results)
    assert re.search(r'<tr id="results-skip-no_consent">.*?>1<', results, re.S)
    assert "The campaign has no holdout" in results


def test_the_confirmation_page_states_the_eligible_and_the_stale_segments(
    merchant, manager, people
):
    stale = segment_services.segment_create(
        merchant=merchant,
        name="Never refreshed",
        kind=SegmentKind.DYNAMIC,
        rules={"match": "all", "conditions": [{"field": "orders_count", "op": "gte", "value": 0}]},
    )
    Segment.objects.filter(pk=stale.pk).update(last_refreshed_at=None)
    campaign = draft(merchant, [manual(merchant, "Two", people[:2])], [stale])

    response = manager.post(url("send", campaign))

    page = response.content.decode()
    assert response.status_code == 200
    assert "goes to <strong>2 customers</strong>" in page
    assert "Never refreshed (last refreshed never)" in page
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_a_send_that_cannot_start_says_why_and_changes_nothing(merchant, manager, people):
    segment = manual(merchant, "Soon asleep", people)
    campaign = draft(merchant, [segment])
    segment_services.segments_set_active(segments=[segment], active=False)

    response = send(manager, campaign)

    assert texts(response) == ['The campaign "Spring" sends to inactive segments: Soon asleep.']
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    assert not Delivery.objects.exists()


def test_sending_a_sent_campaign_again_does_nothing(merchant, manager, spring, outbox):
    send(manager, spring)

    again = send(manager, spring)

    assert texts(again)[-1] == '"Spring" had already started sending: nothing more was done.'
    assert len(sent_files(outbox, str(spring.pk))) == 2
    assert Delivery.objects.count() == 3


# -- progress and results ------------------------------------------------------------------------


@pytest.fixture
def halfway(merchant):
    """Sending since 30 s ago: 3 sent in that time, 1 failed, 2 skipped, 4 queued."""
    campaign = CampaignFactory(
        merchant=merchant,
        name="Halfway",
        status=CampaignStatus.SENDING,
        started_at=NOW - dt.timedelta(seconds=30),
    )
    for seconds in (25, 15, 5):
        DeliveryFactory(campaign=campaign, sent_at=NOW - dt.timedelta(seconds=seconds))
    DeliveryFactory(campaign=campaign, failed=True)
    DeliveryFactory(campaign=campaign, skipped=True)
    DeliveryFactory(campaign=campaign, holdout=True)
    for _ in range(4):
        DeliveryFactory(campaign=campaign, queued=True)
    return campaign


def test_progress_counts_the_deliveries_and_the_rate_in_two_queries(halfway):
    with CaptureQueriesContext(connection) as seen:
        progress = selectors.campaign_progress(halfway)

    assert len(seen) == 2
    assert (progress.done, progress.total, progress.left) == (6, 10, 4)
    assert progress.percent == 60
    assert progress.rate == pytest.approx(0.1)  # 3 sent in the 30 s since the start
    assert progress.time_left == dt.timedelta(seconds=40)
    assert progress.time_left_text == "40 s"
    assert progress.waits_until is None


def test_the_rate_is_over_the_last_minute_once_the_send_is_older(halfway):
    Campaign.objects.filter(pk=halfway.pk).update(started_at=NOW - dt.timedelta(minutes=5))
    Delivery.objects.filter(status="sent").update(sent_at=NOW - dt.timedelta(minutes=2))
    DeliveryFactory(campaign=halfway, sent_at=NOW - dt.timedelta(seconds=10))
    halfway.refresh_from_db()

    progress = selectors.campaign_progress(halfway)

    assert progress.rate == pytest.approx(1 / 60)
    assert progress.time_left_text == "4 min"


def test_queued_rows_waiting_for_the_morning_are_said(halfway):
    morning = NOW + dt.timedelta(hours=9)
    Delivery.objects.filter(status="queued").update(not_before=morning)

    assert selectors.campaign_progress(halfway).waits_until == morning


def test_the_progress_partial_polls_while_sending_and_reloads_the_page_once_sent(manager, halfway):
    sending = manager.get(url("progress", halfway), HTTP_HX_REQUEST="true")

    page = sending.content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert re.search(r'id="progress-done">6 of 10 done<', page)
    assert re.search(r'id="progress-percent">60 %<', page)
    for name, n in (("sent", 3), ("failed", 1), ("skipped", 2), ("queued", 4)):
        assert re.search(rf'id="progress-{name}">{n}<', page)
    assert "0.1 messages a second, about 40 s left" in page
    assert "HX-Refresh" not in sending

    Campaign.objects.filter(pk=halfway.pk).update(status=CampaignStatus.SENT, finished_at=NOW)
    done = manager.get(url("progress", halfway, "?poll=1"), HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"
    assert "every 2s" not in done.content.decode()


@pytest.fixture
def measured(merchant):
    """A sent campaign: 40 recipients (10 bought) and 40 held out (5 bought)."""
    campaign = CampaignFactory(merchant=merchant, name="Measured", attribution_days=7)
    for i in range(40):
        sent = DeliveryFactory(campaign=campaign)
        held = DeliveryFactory(campaign=campaign, holdout=True)
        if i < 10:
            TransactionFactory(
                customer=sent.customer,
                occurred_at=sent.sent_at + dt.timedelta(days=1),
                total=Decimal("20.00"),
            )
        if i < 5:
            TransactionFactory(
                customer=held.customer,
                occurred_at=campaign.started_at + dt.timedelta(days=2),
                total=Decimal("10.00"),
            )
    return campaign


def test_the_results_show_both_groups_the_lift_and_the_chart(manager, measured):
    page = manager.get(url("results", measured)).content.decode()

    recipients = re.search(r'<tr id="group-recipients">.*?</tr>', page, re.S).group(0)
    holdout = re.search(r'<tr id="group-holdout">.*?</tr>', page, re.S).group(0)
    assert re.findall(r'class="num">([^<]*)<', recipients) == [
        "40", "10", "25.0%", "200.00", "5.00"
    ]  # fmt: skip
    assert re.findall(r'class="num">([^<]*)<', holdout) == ["40", "5", "12.5%", "50.00", "1.25"]
    assert re.search(r'id="lift-points">\+12.50 <span', page)
    assert 'id="lift-interval">95&nbsp;% interval' in page
    assert "relative lift +100\N{NO-BREAK SPACE}%" in page
    assert "+3.75 CAD" in page
    chart = json.loads(re.search(r'data-chart="([^"]*)"', page).group(1).replace("&quot;", '"'))
    assert chart["labels"][:2] == ["Day 1", "Day 2"]
    assert chart["datasets"][0]["data"][-1] == 0.25
    assert chart["datasets"][1]["data"][-1] == 0.125
    assert "Final: every window ended" in page


def test_the_results_window_can_be_chosen_and_a_bad_one_is_said(manager, measured):
    fourteen = manager.get(url("results", measured, "?days=14")).content.decode()
    bad = manager.get(url("results", measured, "?days=abc"))
    huge = manager.get(url("results", measured, "?days=1000"))

    assert '<option value="14" selected>' in fourteen
    assert "14-day windows" in fourteen
    for response in (bad, huge):
        assert response.status_code == 200
        assert "The window is 1 to 90 days: showing the campaign&#x27;s 7 days." in (
            response.content.decode()
        )


def test_a_lift_not_ready_says_why(merchant, manager):
    small = CampaignFactory(merchant=merchant)
    for _ in range(3):
        DeliveryFactory(campaign=small)
        DeliveryFactory(campaign=small, holdout=True)

    page = manager.get(url("results", small)).content.decode()

    assert "The lift cannot be told yet." in page
    assert "The recipients group has 3 members" in page


# -- deliveries ---------------------------------------------------------------------------------


@pytest.fixture
def delivered(merchant):
    campaign = CampaignFactory(merchant=merchant, name="Delivered")
    DeliveryFactory(campaign=campaign, customer__first_name="Zoe", customer__external_id="Z-1")
    DeliveryFactory(campaign=campaign, failed=True, customer__first_name="Yan")
    DeliveryFactory(campaign=campaign, holdout=True, customer__first_name="Xia")
    DeliveryFactory(campaign=campaign, skipped=True, customer__first_name="Wim")
    return campaign


def names(page: str) -> list[str]:
    table = re.search(r'<table[^>]*id="deliveries".*?</table>', page, re.S)
    return re.findall(r'customers/\d+/" hx-boost="false">(\w+)', table.group(0)) if table else []


def test_the_deliveries_list_links_each_customer_and_filters(manager, delivered):
    everyone = manager.get(url("deliveries", delivered)).content.decode()
    failed = manager.get(url("deliveries", delivered, "?status=failed")).content.decode()
    held = manager.get(url("deliveries", delivered, "?skip_reason=holdout")).content.decode()
    zoe = manager.get(url("deliveries", delivered, "?q=z-1")).content.decode()

    zoe_row = Delivery.objects.get(customer__external_id="Z-1")
    assert reverse("customers:detail", args=[zoe_row.customer_id]) in everyone
    assert sorted(names(everyone)) == ["Wim", "Xia", "Yan", "Zoe"]
    assert names(failed) == ["Yan"] and "Mailbox full" in failed
    assert names(held) == ["Xia"]
    assert names(zoe) == ["Zoe"]


def test_deliveries_export_as_csv_for_managers_only(merchant, manager, staff, delivered):
    exported = manager.get(url("deliveries", delivered, "?_export=csv"))
    refused = staff.get(url("deliveries", delivered, "?_export=csv"))

    assert exported.status_code == 200
    body = b"".join(exported.streaming_content if exported.streaming else [exported.content])
    assert body.decode().splitlines()[0].startswith("Customer,External id,Sent to,Status")
    assert "Mailbox full" in body.decode()
    assert (
        f"campaign-{delivered.pk}-deliveries-acme-2026-06-15.csv"
        in (exported["Content-Disposition"])
    )
    assert refused.status_code == 403
    assert "Export CSV" not in staff.get(url("deliveries", delivered)).content.decode()


# -- schedule, unschedule, test, duplicate, remove ------------------------------------------------


def test_a_schedule_is_read_as_the_merchants_local_time(manager, spring):
    response = manager.post(url("schedule", spring), {"send_at": "2026-06-20T09:30"})

    spring.refresh_from_db()
    assert spring.status == CampaignStatus.SCHEDULED
    assert spring.send_at == dt.datetime(2026, 6, 20, 13, 30, tzinfo=dt.UTC)  # 09:30 EDT
    assert texts(response) == ['"Spring" will be sent on 2026-06-20 at 09:30 (America/Toronto).']
    page = manager.get(url("detail", spring)).content.decode()
    assert "Saturday 20 June 2026, 09:30" in page
    assert 'value="2026-06-20T09:30"' in page


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("2026-06-15T11:00", "Choose a time in the future to schedule the send."),
        ("soon", "Send at: Enter a valid date/time."),
        (
            "2026-03-08T02:30",
            "couldn\N{RIGHT SINGLE QUOTATION MARK}t be interpreted in time zone America/Toronto",
        ),  # DST gap
        ("", "Send at: This field is required."),
    ],
)
def test_a_refused_schedule_says_why_and_leaves_the_draft(manager, spring, value, error):
    response = manager.post(url("schedule", spring), {"send_at": value})

    assert response.status_code == 302
    assert any(error in text for text in texts(response)), texts(response)
    spring.refresh_from_db()
    assert (spring.status, spring.send_at) == (CampaignStatus.DRAFT, None)


def test_a_schedule_is_cancelled(manager, spring):
    manager.post(url("schedule", spring), {"send_at": "2026-06-20T09:30"})

    response = manager.post(url("unschedule", spring))
    again = manager.post(url("unschedule", spring))

    spring.refresh_from_db()
    assert (spring.status, spring.send_at) == (CampaignStatus.DRAFT, None)
    assert texts(response)[-1] == '"Spring" is no longer scheduled: it is a draft again.'
    assert texts(again)[-1] == 'The campaign "Spring" is not scheduled.'


def test_a_test_send_goes_to_me_and_says_so(merchant, outbox, spring, regulars):
    me = client_for(merchant, Role.STAFF, "tess", email="tess@acme.example")
    sms = draft(merchant, [regulars], name="Text", channel=Channel.SMS, subject="")

    email = me.post(url("test", spring))
    text = me.post(url("test", sms))

    assert texts(email) == ["Test sent to tess@acme.example."]
    assert texts(text)[-1].startswith("Test sent to tess@acme.example (an email showing the SMS")
    tests = sent_files(outbox, "test")
    assert {m["subject"] for m in tests} == {"[Test] Hi Ann", "[Test SMS] Text"}
    assert not Delivery.objects.exists()


def test_a_test_send_without_my_email_says_what_to_do(merchant, spring, outbox):
    me = client_for(merchant, Role.STAFF, "noemail", email="")

    response = me.post(url("test", spring))

    assert texts(response) == ["Your account has no email address: add one to receive test sends."]
    assert not (outbox / "acme").exists()


def test_duplicating_opens_the_copy_to_edit(merchant, manager):
    sent = CampaignFactory(merchant=merchant, name="Gone out")

    response = manager.post(url("duplicate", sent))

    copy = Campaign.objects.get(name="Copy of Gone out")
    assert response["Location"] == url("edit", copy)
    assert copy.status == CampaignStatus.DRAFT


def test_a_draft_is_removed_after_a_confirmation_and_a_sent_one_is_kept(merchant, manager, spring):
    sent = CampaignFactory(merchant=merchant, name="Gone out")

    confirm = manager.get(url("delete", spring))
    removed = manager.post(url("delete", spring))
    kept = manager.post(url("delete", sent))

    assert 'id="confirm-delete"' in confirm.content.decode()
    assert removed["Location"] == reverse("campaigns:list")
    assert not Campaign.objects.filter(pk=spring.pk).exists()
    assert kept["Location"] == url("detail", sent)
    assert texts(kept)[-1] == (
        '"Gone out" has been sent: it is kept with its results and cannot be removed.'
    )
    assert Campaign.objects.filter(pk=sent.pk).exists()


# -- contact rules ------------------------------------------------------------------------------


def test_everyone_reads_the_contact_rules_and_managers_change_them(merchant, manager, staff):
    shown = staff.get(reverse("campaigns:rules")).content.decode()
    refused = staff.post(reverse("campaigns:rules"), {"cap_messages": "1"})
    saved = manager.post(
        reverse("campaigns:rules"),
        {"cap_messages": "2", "cap_days": "14", "quiet_start": "22:00", "quiet_end": "08:30"},
    )

    assert "at most 3 messages per channel in 7 days" in shown
    assert "between 21:00 and 09:00" in shown
    assert "<fieldset disabled>" in shown and 'id="save-rules"' not in shown
    assert refused.status_code == 403
    assert saved.status_code == 302
    rules = ContactRules.objects.get(merchant=merchant)
    assert (rules.cap_messages, rules.cap_days, rules.quiet_start, rules.quiet_end) == (
        2,
        14,
        dt.time(22, 0),
        dt.time(8, 30),
    )


def test_refused_contact_rules_are_shown_and_not_saved(manager):
    response = manager.post(
        reverse("campaigns:rules"),
        {"cap_messages": "500", "cap_days": "0", "quiet_start": "22:00", "quiet_end": "8"},
    )

    form = response.context["form"]
    assert response.status_code == 400
    assert set(form.errors) == {"cap_messages", "cap_days", "quiet_end"}
    assert "at most 3 messages" in response.content.decode()  # the saved rules, not the typed
    assert not ContactRules.objects.exists()


# -- tenancy and roles --------------------------------------------------------------------------

CAMPAIGN_URLS = [
    ("detail", "get"),
    ("edit", "get"),
    ("edit", "post"),
    ("audience", "get"),
    ("progress", "get"),
    ("results", "get"),
    ("deliveries", "get"),
    ("send", "post"),
    ("schedule", "post"),
    ("unschedule", "post"),
    ("test", "post"),
    ("duplicate", "post"),
    ("delete", "get"),
    ("delete", "post"),
]


@pytest.mark.parametrize(
    ("name", "method"), CAMPAIGN_URLS, ids=[f"{m}-{n}" for n, m in CAMPAIGN_URLS]
)
def test_another_merchants_campaign_is_not_found_on_any_url(other_merchant, manager, name, method):
    theirs = CampaignFactory(merchant=other_merchant, name="Theirs", draft=True)
    data = {"confirmed": "1", "send_at": "2026-06-20T09:30", "name": "Mine now"}

    response = getattr(manager, method)(url(name, theirs), data)

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert (theirs.name, theirs.status) == ("Theirs", CampaignStatus.DRAFT)
    assert Campaign.objects.count() == 1


def test_staff_may_draft_and_test_but_not_send_schedule_remove_or_set_the_rules(
    staff, regulars, spring, outbox
):
    drafted = staff.post(reverse("campaigns:new"), form_data(regulars, name="By staff"))
    edited = staff.post(url("edit", spring), form_data(regulars, name="Spring by staff"))
    tested = staff.post(url("test", spring))
    refused = {
        "send": staff.post(url("send", spring), {"confirmed": "1"}),
        "schedule": staff.post(url("schedule", spring), {"send_at": "2026-06-20T09:30"}),
        "unschedule": staff.post(url("unschedule", spring)),
        "delete": staff.post(url("delete", spring)),
        "rules": staff.post(reverse("campaigns:rules"), {"cap_messages": "1"}),
    }

    assert drafted.status_code == 302 and Campaign.objects.filter(name="By staff").exists()
    assert edited.status_code == 302
    assert texts(tested)[-1] == "Test sent to sam@example.com."
    for response in refused.values():
        assert response.status_code == 403
        assert denied_message(Action.SEND_CAMPAIGNS) in response.content.decode()
    spring.refresh_from_db()
    assert (spring.name, spring.status) == ("Spring by staff", CampaignStatus.DRAFT)
    assert not Delivery.objects.exists() and not ContactRules.objects.exists()


@pytest.mark.parametrize("role", [Role.STAFF, Role.MANAGER], ids=["staff", "manager"])
def test_the_pages_offer_the_buttons_the_role_may_use(merchant, spring, role):
    client = client_for(merchant, role)
    may_send = role == Role.MANAGER

    detail = client.get(url("detail", spring)).content.decode()
    audience = client.get(url("audience", spring)).content.decode()
    listing = client.get(reverse("campaigns:list")).content.decode()

    assert 'id="edit-campaign"' in detail and 'id="test-send"' in detail
    assert 'id="duplicate-campaign"' in detail and 'id="new-campaign"' in listing
    assert ('id="delete-campaign"' in detail) is may_send
    assert ('id="schedule-form"' in detail) is may_send
    assert ('id="send-now"' in audience) is may_send
    assert ("Export CSV" in listing) is may_send


def test_the_navigation_marks_campaigns_or_offers(manager, spring):
    campaigns = manager.get(url("detail", spring)).content.decode()
    offers = manager.get(reverse("campaigns:offers")).content.decode()

    def active(page: str) -> list[str]:
        return re.findall(r'class="nav-link active" href="[^"]*">(\w+)<', page)

    assert active(campaigns) == ["Campaigns"]
    assert active(offers) == ["Offers"]
