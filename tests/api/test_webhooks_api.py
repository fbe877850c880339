"""The webhook endpoints of the API: register (the secret once), read, change, switch off and
on, rotate the secret, remove, read the delivery log and resend; scoped to the token's
merchant, writes refused to a read token, addresses checked."""

from __future__ import annotations

import json

import pytest

from campaigns.models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from campaigns.services.webhooks import endpoint_create, endpoint_disable
from segments.models import SegmentKind
from segments.services import segment_members_add
from tests.api.conftest import error_paths
from tests.api.test_segments_api import send
from tests.factories import CustomerFactory
from tests.segments.refresh_helpers import make_segment

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks"


@pytest.fixture
def hook(merchant, http_server):
    return endpoint_create(merchant=merchant, url=http_server.url, events=["segment.entered"])


@pytest.fixture
def rival_hook(other_merchant, http_server):
    return endpoint_create(
        merchant=other_merchant, url=http_server.url + "?rival", events=["segment.entered"]
    )


def deliver_one(merchant, capture, count=1):
    segment = make_segment(merchant, f"picked-{count}", kind=SegmentKind.MANUAL)
    with capture(execute=True):
        segment_members_add(
            segment=segment,
            customers=CustomerFactory.create_batch(count, merchant=merchant),
        )


def test_post_registers_an_endpoint_and_shows_the_secret_once(writer, merchant, http_server):
    response = send(
        writer,
        "post",
        URL,
        {"url": http_server.url, "events": ["segment.exited", "segment.entered"]},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = WebhookEndpoint.objects.get(merchant=merchant)
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert body["events"] == ["segment.entered", "segment.exited"]
    assert body["active"] is True
    assert body["deliveries"] == {"pending": 0, "sending": 0, "succeeded": 0, "failed": 0}
    again = writer.get(f"{URL}/{endpoint.pk}").json()
    assert "secret" not in again and again["url"] == http_server.url


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"url": "ftp://example.com/x", "events": ["segment.entered"]}, "url"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["segment.moved"]}, "events.0"),
        ({"url": "https://example.com/x"}, "events"),
        ({"url": "https://example.com/x", "events": ["import.completed"], "x": 1}, "x"),
    ],
)
def test_post_refuses_a_bad_body_naming_the_field(writer, body, path):
    response = send(writer, "post", URL, body)

    assert response.status_code == 422
    assert path in error_paths(response)
    assert not WebhookEndpoint.objects.exists()


def test_a_private_address_is_refused_in_production(writer, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False

    response = send(writer, "post", URL, {"url": "http://10.0.0.7/", "events": ["segment.entered"]})

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["path"] == "url" and "a private address" in error["message"]


def test_list_and_get_answer_the_merchants_endpoints_only(reader, hook, rival_hook):
    listed = reader.get(URL).json()["items"]

    assert [item["id"] for item in listed] == [hook.pk]
    assert all("secret" not in item for item in listed)
    assert reader.get(f"{URL}/{rival_hook.pk}").status_code == 404


def test_patch_changes_switches_off_and_on(writer, hook):
    changed = send(writer, "patch", f"{URL}/{hook.pk}", {"events": ["import.completed"]})
    assert changed.status_code == 200 and changed.json()["events"] == ["import.completed"]

    off = send(writer, "patch", f"{URL}/{hook.pk}", {"active": False}).json()
    assert (off["active"], off["disabled_reason"]) == (False, "Switched off through the API.")

    on = send(writer, "patch", f"{URL}/{hook.pk}", {"active": True}).json()
    assert (on["active"], on["disabled_reason"], on["disabled_at"]) == (True, "", None)


def test_patch_null_is_refused(writer, hook):
    response = send(writer, "patch", f"{URL}/{hook.pk}", {"url": None})

    assert response.status_code == 422 and error_paths(response) == ["url"]


def test_rotating_the_secret_answers_the_new_one(writer, hook):
    old = hook.secret

    response = send(writer, "post", f"{URL}/{hook.pk}/secret")

    hook.refresh_from_db()
    assert response.status_code == 200
    assert response.json() == {"secret": hook.secret} and hook.secret != old


def test_delete_removes_the_endpoint_and_its_log(
    writer, merchant, hook, django_capture_on_commit_callbacks
):
    deliver_one(merchant, django_capture_on_commit_callbacks)

    response = send(writer, "delete", f"{URL}/{hook.pk}")

    assert response.status_code == 204
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_the_delivery_log_is_paged_newest_first_and_filtered(
    reader, merchant, hook, http_server, django_capture_on_commit_callbacks
):
    for n in (1, 2, 3):
        deliver_one(merchant, django_capture_on_commit_callbacks, n)
    http_server.answers = [(500, {}, b"")]
    deliver_one(merchant, django_capture_on_commit_callbacks, 4)

    first = reader.get(f"{URL}/{hook.pk}/deliveries?limit=2").json()
    second = reader.get(first["next"]).json()
    failing = reader.get(f"{URL}/{hook.pk}/deliveries?status=pending").json()

    assert [d["events"] for d in first["items"]] == [4, 3]
    assert [d["events"] for d in second["items"]] == [2, 1] and second["next"] is None
    assert first["items"][0]["response_status"] == 500
    assert first["items"][0]["next_attempt_at"] is not None
    assert first["items"][1]["status"] == "succeeded"
    assert [d["events"] for d in failing["items"]] == [4]
    assert reader.get(f"{URL}/{hook.pk}/deliveries?limit=0").status_code == 422


def test_resend_posts_the_message_again(
    writer, merchant, hook, http_server, django_capture_on_commit_callbacks
):
    deliver_one(merchant, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = send(writer, "post", f"{URL}/{hook.pk}/deliveries/{delivery.pk}/resend")

    assert response.status_code == 202
    assert len(http_server.requests) == 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (WebhookDeliveryStatus.SUCCEEDED, 2)


def test_resend_to_an_endpoint_switched_off_is_a_conflict(
    writer, merchant, hook, django_capture_on_commit_callbacks
):
    deliver_one(merchant, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    endpoint_disable(endpoint=hook)

    response = send(writer, "post", f"{URL}/{hook.pk}/deliveries/{delivery.pk}/resend")

    assert response.status_code == 409 and error_paths(response) == [""]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("patch", "", {"description": "mine"}),
        ("delete", "", None),
        ("post", "/secret", None),
        ("get", "/deliveries", None),
    ],
)
def test_another_merchants_endpoint_is_not_found(writer, rival_hook, method, suffix, body):
    response = send(writer, method, f"{URL}/{rival_hook.pk}{suffix}", body)

    assert response.status_code == 404 and error_paths(response) == [""]
    rival_hook.refresh_from_db()
    assert rival_hook.description == ""


def test_another_merchants_delivery_is_not_found(
    writer, hook, other_merchant, rival_hook, django_capture_on_commit_callbacks
):
    deliver_one(other_merchant, django_capture_on_commit_callbacks)
    theirs = WebhookDelivery.objects.get(endpoint=rival_hook)

    for path in (
        f"{URL}/{rival_hook.pk}/deliveries/{theirs.pk}/resend",
        f"{URL}/{hook.pk}/deliveries/{theirs.pk}/resend",
    ):
        assert send(writer, "post", path).status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("post", "", {"url": "https://example.com/", "events": ["segment.entered"]}),
        ("patch", "/{pk}", {"description": "x"}),
        ("delete", "/{pk}", None),
        ("post", "/{pk}/secret", None),
    ],
)
def test_a_read_token_may_not_write(reader, hook, method, suffix, body):
    response = send(reader, method, URL + suffix.format(pk=hook.pk), body)

    assert response.status_code == 403
    assert WebhookEndpoint.objects.count() == 1
    hook.refresh_from_db()
    assert hook.description == "" and json.dumps(hook.events) == '["segment.entered"]'
