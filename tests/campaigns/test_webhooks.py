"""Webhooks: what events make, how they are signed, batched, retried, given up, switched off,
and where they may not go."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from campaigns.models import (
    CampaignStatus,
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookMessage,
)
from campaigns.services.sending import campaign_finish
from campaigns.services.webhooks import (
    delivery_resend,
    endpoint_create,
    endpoint_enable,
    webhooks_dispatch,
    webhooks_send,
)
from campaigns.webhooks import RETRY_DELAYS_SECONDS, AddressRefused, post, resolve
from customers.imports.service import import_files
from customers.models import Role, TierRule
from segments.models import MembershipReason, SegmentKind
from segments.services import segment_refresh
from segments.services.manual import segment_members_add
from tests.campaigns.factories import CampaignFactory, DeliveryFactory
from tests.factories import (
    CustomerFactory,
    StaffMembershipFactory,
    TierFactory,
    TransactionFactory,
    UserFactory,
)
from tests.segments.refresh_helpers import make_segment, spend_rules

ENTERED, EXITED = "segment.entered", "segment.exited"


def verify(secret: str, headers, body: bytes, *, tolerance: int = 300) -> dict:
    """A receiver written from the Standard Webhooks specification ("Verifying webhooks"):
    the timestamp within the tolerance, then any "v1," signature equal, in constant time, to
    base64 HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed with the decoded secret."""
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        raise ValueError("timestamp outside the tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return json.loads(body)
    raise ValueError("no valid signature")


def received(server) -> list[dict]:
    return [json.loads(body) for _, _, body in server.requests]


def spenders(merchant, *totals: str):
    customers = []
    for i, total in enumerate(totals):
        customer = CustomerFactory(merchant=merchant, external_id=f"C{i:02}")
        TransactionFactory(customer=customer, total=Decimal(total))
        customers.append(customer)
    return customers


@pytest.fixture
def endpoint(merchant, http_server):
    return endpoint_create(merchant=merchant, url=http_server.url, events=[ENTERED, EXITED])


def test_a_refresh_that_moves_many_members_sends_them_in_signed_batches(
    merchant, endpoint, http_server, settings, django_capture_on_commit_callbacks
):
    # given seven big spenders, two small ones, and batches of three
    settings.WEBHOOK_BATCH_SIZE = 3
    spenders(merchant, *["150.00"] * 7, "20.00", "30.00")
    segment = make_segment(merchant, "big-spenders", spend_rules(100))

    # when the segment is refreshed
    with django_capture_on_commit_callbacks(execute=True):
        segment_refresh(segment_id=segment.pk)

    # then three requests carry the seven entries, each signed with the endpoint's secret
    assert len(http_server.requests) == 3
    bodies = [verify(endpoint.secret, headers, body) for _, headers, body in http_server.requests]
    for _, headers, body in http_server.requests:
        assert Webhook(endpoint.secret).verify(body, dict(headers.items()))  # the reference
    assert {b["type"] for b in bodies} == {ENTERED}
    assert sorted((b["data"]["part"], b["data"]["parts"]) for b in bodies) == [
        (1, 3),
        (2, 3),
        (3, 3),
    ]
    events = [e for b in bodies for e in b["data"]["events"]]
    assert sorted(e["customer"] for e in events) == [f"C{i:02}" for i in range(7)]
    assert len({e["id"] for e in events}) == 7
    assert {e["reason"] for e in events} == {MembershipReason.RULE}
    assert bodies[0]["data"]["segment"] == {"slug": "big-spenders", "name": "Big Spenders"}
    assert bodies[0]["data"]["merchant"] == "acme"
    assert {h["webhook-id"] for _, h, _ in http_server.requests} == set(
        WebhookMessage.objects.values_list("key", flat=True)
    )
    assert WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.SUCCEEDED).count() == 3
    logged = WebhookDelivery.objects.first()
    assert logged.response_status == 202 and logged.attempts == 1
    assert logged.duration_ms is not None


def test_exits_go_to_endpoints_that_asked_for_them_and_not_to_other_merchants(
    merchant, other_merchant, http_server, django_capture_on_commit_callbacks
):
    # given one endpoint for entries only, one for exits only, and another merchant's
    entries = endpoint_create(merchant=merchant, url=http_server.url + "?e", events=[ENTERED])
    exits = endpoint_create(merchant=merchant, url=http_server.url + "?x", events=[EXITED])
    endpoint_create(merchant=other_merchant, url=http_server.url + "?o", events=[ENTERED, EXITED])
    spenders(merchant, "150.00", "500.00")
    segment = make_segment(merchant, "big-spenders", spend_rules(100))
    with django_capture_on_commit_callbacks(execute=True):
        segment_refresh(segment_id=segment.pk)

    # when the threshold rises and the segment is refreshed again
    type(segment).objects.filter(pk=segment.pk).update(rules=spend_rules(200))
    with django_capture_on_commit_callbacks(execute=True):
        segment_refresh(segment_id=segment.pk)

    # then the entries went to one endpoint, the exit to the other, nothing elsewhere
    by_query = {}
    for path, _, body in http_server.requests:
        by_query.setdefault(path.partition("?")[2], []).append(json.loads(body))
    assert sorted(by_query) == ["e", "x"]
    assert [e["customer"] for b in by_query["e"] for e in b["data"]["events"]] == ["C00", "C01"]
    assert [(b["type"], [e["customer"] for e in b["data"]["events"]]) for b in by_query["x"]] == [
        (EXITED, ["C00"])
    ]
    assert entries.deliveries.count() == 1 and exits.deliveries.count() == 1


def test_a_change_rolled_back_makes_no_message(merchant, endpoint):
    segment = make_segment(merchant, "hand-picked", kind=SegmentKind.MANUAL)
    customer = CustomerFactory(merchant=merchant)

    with pytest.raises(RuntimeError), transaction.atomic():
        segment_members_add(segment=segment, customers=[customer])
        assert WebhookMessage.objects.count() == 1  # made with the change ...
        raise RuntimeError

    assert WebhookMessage.objects.count() == 0  # ... and gone with it


def test_manual_additions_are_sent_with_their_reason(
    merchant, endpoint, http_server, django_capture_on_commit_callbacks
):
    segment = make_segment(merchant, "from-crm", kind=SegmentKind.MANUAL)
    customer = CustomerFactory(merchant=merchant, external_id="CRM-1")

    with django_capture_on_commit_callbacks(execute=True):
        segment_members_add(segment=segment, customers=[customer], reason=MembershipReason.API)

    [body] = received(http_server)
    assert [(e["customer"], e["reason"]) for e in body["data"]["events"]] == [("CRM-1", "api")]


def test_a_failing_endpoint_is_retried_with_backoff_and_the_same_id(
    merchant, endpoint, http_server, django_capture_on_commit_callbacks
):
    # given a receiver that fails twice, then accepts
    http_server.answers = [(500, {}, b"database down"), (503, {}, b"")]
    segment = make_segment(merchant, "hand-picked", kind=SegmentKind.MANUAL)
    with django_capture_on_commit_callbacks(execute=True):
        segment_members_add(segment=segment, customers=[CustomerFactory(merchant=merchant)])

    # then the first attempt failed and the next waits 5 s
    delivery = WebhookDelivery.objects.get()
    first = delivery.last_attempt_at
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert delivery.error == "Answered 500: database down"
    assert delivery.next_attempt_at == first + dt.timedelta(seconds=RETRY_DELAYS_SECONDS[0])
    assert webhooks_send(endpoint_id=endpoint.pk, now=first + dt.timedelta(seconds=4)) == 0

    # when the retries come due
    assert webhooks_send(endpoint_id=endpoint.pk, now=first + dt.timedelta(seconds=5)) == 1
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == delivery.last_attempt_at + dt.timedelta(seconds=30)
    endpoint.refresh_from_db()
    assert endpoint.failing_since == first
    assert webhooks_send(endpoint_id=endpoint.pk, now=first + dt.timedelta(seconds=40)) == 1

    # then the third attempt succeeded, with the same id and body as the first two
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 3, 202)
    assert len({h["webhook-id"] for _, h, _ in http_server.requests}) == 1
    assert len({body for _, _, body in http_server.requests}) == 1
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_message_is_given_up_after_the_retry_hours(
    merchant, endpoint, http_server, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_DISABLE_AFTER_HOURS = 1000
    http_server.answers = [(500, {}, b"")] * 3
    segment = make_segment(merchant, "hand-picked", kind=SegmentKind.MANUAL)
    with django_capture_on_commit_callbacks(execute=True):
        segment_members_add(segment=segment, customers=[CustomerFactory(merchant=merchant)])
    made = WebhookMessage.objects.get().created_at

    webhooks_send(endpoint_id=endpoint.pk, now=made + dt.timedelta(hours=23))
    assert WebhookDelivery.objects.get().status == WebhookDeliveryStatus.PENDING
    webhooks_send(endpoint_id=endpoint.pk, now=made + dt.timedelta(hours=24, minutes=5))

    assert WebhookDelivery.objects.get().status == WebhookDeliveryStatus.FAILED
    assert webhooks_send(endpoint_id=endpoint.pk, now=made + dt.timedelta(hours=30)) == 0


def test_an_endpoint_failing_for_hours_is_switched_off_and_its_owners_told(
    merchant, endpoint, http_server, settings, django_capture_on_commit_callbacks
):
    # given an owner with an email address, and a receiver that always fails
    settings.WEBHOOK_DISABLE_AFTER_HOURS = 12
    owner = UserFactory(email="owner@acme.example")
    StaffMembershipFactory(user=owner, merchant=merchant, role=Role.OWNER)
    http_server.answers = [(500, {}, b"")] * 5
    segment = make_segment(merchant, "hand-picked", kind=SegmentKind.MANUAL)
    with django_capture_on_commit_callbacks(execute=True):
        segment_members_add(segment=segment, customers=[CustomerFactory(merchant=merchant)])
    first = WebhookDelivery.objects.get().last_attempt_at

    # when it has failed for 12 hours
    with django_capture_on_commit_callbacks(execute=True):
        webhooks_send(endpoint_id=endpoint.pk, now=first + dt.timedelta(hours=6))
        assert endpoint.deliveries.get().status == WebhookDeliveryStatus.PENDING
        webhooks_send(endpoint_id=endpoint.pk, now=first + dt.timedelta(hours=12))

    # then it is off, says why, its owner got an email, and new events skip it
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.disabled_reason.startswith("Switched off: every attempt failed for 12 hours")
    [notice] = mail.outbox
    assert notice.to == ["owner@acme.example"] and endpoint.url in notice.subject
    with django_capture_on_commit_callbacks(execute=True):
        segment_members_add(segment=segment, customers=[CustomerFactory(merchant=merchant)])
    assert endpoint.deliveries.count() == 1
    with pytest.raises(ValidationError):
        delivery_resend(delivery=WebhookDelivery.objects.get())

    # when it is switched on again, what waited is sent
    http_server.answers = []
    with django_capture_on_commit_callbacks(execute=True):
        endpoint_enable(endpoint=endpoint)
    assert endpoint.is_active and endpoint.failing_since is None
    assert WebhookDelivery.objects.get().status == WebhookDeliveryStatus.SUCCEEDED


def test_resend_posts_the_same_message_again(
    merchant, endpoint, http_server, django_capture_on_commit_callbacks
):
    segment = make_segment(merchant, "hand-picked", kind=SegmentKind.MANUAL)
    with django_capture_on_commit_callbacks(execute=True):
        segment_members_add(segment=segment, customers=[CustomerFactory(merchant=merchant)])
    delivery = WebhookDelivery.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        delivery_resend(delivery=delivery)

    first, second = http_server.requests
    assert first[1]["webhook-id"] == second[1]["webhook-id"] and first[2] == second[2]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_the_dispatcher_puts_back_a_delivery_whose_sender_died(merchant, endpoint, http_server):
    segment = make_segment(merchant, "hand-picked", kind=SegmentKind.MANUAL)
    segment_members_add(segment=segment, customers=[CustomerFactory(merchant=merchant)])
    delivery = WebhookDelivery.objects.get()  # never kicked: the commit hook did not run
    WebhookDelivery.objects.update(
        status=WebhookDeliveryStatus.SENDING,
        claimed_at=timezone.now() - dt.timedelta(minutes=10),
    )

    assert webhooks_dispatch() == {"recovered": 1, "endpoints": 1}

    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.SUCCEEDED
    assert len(http_server.requests) == 1


def test_a_purchase_that_moves_stage_and_tier_is_heard(
    merchant, http_server, django_capture_on_commit_callbacks
):
    endpoint = endpoint_create(
        merchant=merchant,
        url=http_server.url,
        events=["customer.lifecycle_changed", "customer.tier_changed"],
    )
    gold = TierFactory(merchant=merchant, name="Gold", rank=1)
    TierRule.objects.create(merchant=merchant, tier=gold, metric="spend", threshold=100)
    customer = CustomerFactory(merchant=merchant, external_id="C-7")

    with django_capture_on_commit_callbacks(execute=True):
        TransactionFactory(customer=customer, total=Decimal("150.00"))

    bodies = {b["type"]: b["data"] for b in received(http_server)}
    [stage] = bodies["customer.lifecycle_changed"]["changes"]
    assert (stage["customer"], stage["from"], stage["to"]) == ("C-7", None, "new")
    [tier] = bodies["customer.tier_changed"]["changes"]
    assert (tier["customer"], tier["from"], tier["to"]) == ("C-7", None, "Gold")
    assert stage["id"] != tier["id"]
    assert endpoint.deliveries.count() == 2


def test_a_finished_campaign_is_heard_with_its_counts(
    merchant, http_server, django_capture_on_commit_callbacks
):
    endpoint_create(merchant=merchant, url=http_server.url, events=["campaign.completed"])
    campaign = CampaignFactory(merchant=merchant, name="Spring", status=CampaignStatus.SENDING)
    DeliveryFactory.create_batch(2, campaign=campaign)
    DeliveryFactory(campaign=campaign, skipped=True)
    DeliveryFactory(campaign=campaign, failed=True)

    with django_capture_on_commit_callbacks(execute=True):
        assert campaign_finish(campaign_id=campaign.pk)

    [body] = received(http_server)
    assert body["type"] == "campaign.completed"
    sent = body["data"]["campaign"]
    assert (sent["name"], sent["audience"], sent["sent"], sent["skipped"], sent["failed"]) == (
        "Spring",
        4,
        2,
        1,
        1,
    )
    assert DeliveryStatus.SENT == "sent"


def test_a_written_import_is_heard_and_a_dry_run_is_not(
    merchant, http_server, django_capture_on_commit_callbacks
):
    endpoint_create(merchant=merchant, url=http_server.url, events=["import.completed"])
    csv = "code,name\nB1,Montréal\nB2,Laval\n".encode()

    with django_capture_on_commit_callbacks(execute=True):
        import_files(merchant=merchant, files={"branches": io.BytesIO(csv)}, dry_run=True)
        import_files(merchant=merchant, files={"branches": io.BytesIO(csv)})

    [body] = received(http_server)
    assert body["type"] == "import.completed"
    assert body["data"]["files"] == {
        "branches": {"rows": 2, "created": 2, "updated": 0, "unchanged": 0}
    }


# --- where webhooks may go ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.5/",
        "http://172.16.9.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
    ],
)
def test_loopback_and_private_addresses_are_refused(merchant, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False

    with pytest.raises(ValidationError) as refused:
        endpoint_create(merchant=merchant, url=url, events=[ENTERED])

    [message] = refused.value.message_dict["url"]
    assert "webhooks go to hosts on the internet only" in message
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "must start with http:// or https://"),
        ("file:///etc/passwd", "must start with http:// or https://"),
        ("https://user:secret@93.184.216.34/", "no user name or password"),
        ("https://no-such-host.invalid/hook", 'The host "no-such-host.invalid" cannot be found'),
    ],
)
def test_other_addresses_are_refused_with_the_reason(merchant, settings, url, message):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False

    with pytest.raises(ValidationError) as refused:
        endpoint_create(merchant=merchant, url=url, events=[ENTERED])

    assert message in refused.value.message_dict["url"][0]


def test_a_public_address_is_accepted(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False

    assert resolve("https://93.184.216.34/hook") == ("93.184.216.34", 443, "93.184.216.34")


def test_the_address_is_checked_again_when_sending(merchant, endpoint, http_server, settings):
    # given an endpoint accepted while private hosts were allowed (or whose name now points
    # at a private address)
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False

    answer = post(endpoint.url, b"{}", {"Content-Type": "application/json"})

    assert answer.status is None and not answer.ok
    assert "a loopback address" in answer.error
    assert http_server.requests == []
    with pytest.raises(AddressRefused):
        resolve(endpoint.url)


def test_events_must_be_known_and_at_least_one(merchant, http_server):
    with pytest.raises(ValidationError) as refused:
        endpoint_create(merchant=merchant, url=http_server.url, events=[])
    assert refused.value.message_dict == {"events": ["Choose at least one event."]}

    with pytest.raises(ValidationError) as refused:
        endpoint_create(merchant=merchant, url=http_server.url, events=["segment.moved"])
    assert refused.value.message_dict["events"][0].startswith('"segment.moved" is not an event')


def test_a_score_computation_is_heard_in_batches(
    merchant, http_server, settings, django_capture_on_commit_callbacks
):
    # given three customers whose stage the set-based computation will write, batches of 2
    from customers.models import CustomerMetrics
    from customers.scores.service import scores_compute

    settings.WEBHOOK_BATCH_SIZE = 2
    for i in range(3):
        customer = CustomerFactory(merchant=merchant, external_id=f"S{i}")
        TransactionFactory(customer=customer, total=Decimal("40.00"))
    CustomerMetrics.objects.update(lifecycle_stage=None)
    endpoint_create(merchant=merchant, url=http_server.url, events=["customer.lifecycle_changed"])

    # when the scores are computed
    with django_capture_on_commit_callbacks(execute=True):
        scores_compute(merchant=merchant)

    # then the three changes arrive in two messages
    bodies = received(http_server)
    assert sorted((b["data"]["part"], b["data"]["parts"]) for b in bodies) == [(1, 2), (2, 2)]
    changes = [c for b in bodies for c in b["data"]["changes"]]
    assert sorted(c["customer"] for c in changes) == ["S0", "S1", "S2"]
    assert {c["from"] for c in changes} == {None}
