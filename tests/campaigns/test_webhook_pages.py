"""The owners' webhook pages: registering an endpoint (the secret shown once), the address
check shown under its field, editing, switching off and on, rotating the secret, removing,
the delivery log with its filters and resend, and the limits: owners only, and another
merchant's endpoints and deliveries answer 404."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookMessage,
)
from campaigns.services.webhooks import endpoint_create, endpoint_disable
from customers.models import Role
from tests.factories import DEMO_PASSWORD, StaffMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

ENTERED, EXITED, CAMPAIGN = "segment.entered", "segment.exited", "campaign.completed"


def signed_in(merchant, role: Role, username: str = "owner") -> Client:
    user = UserFactory(username=username)
    StaffMembershipFactory(user=user, merchant=merchant, role=role)
    client = Client()
    assert client.login(username=username, password=DEMO_PASSWORD)
    return client


@pytest.fixture
def owner(merchant) -> Client:
    return signed_in(merchant, Role.OWNER)


@pytest.fixture
def endpoint(merchant, http_server) -> WebhookEndpoint:
    return endpoint_create(
        merchant=merchant, url=http_server.url, events=[ENTERED, EXITED], description="CRM sync"
    )


def logged(
    endpoint: WebhookEndpoint,
    *,
    status: str = WebhookDeliveryStatus.SUCCEEDED,
    event: str = ENTERED,
    key: str = "msg_1",
    size: int = 1,
    payload: dict | None = None,
    made: dt.datetime | None = None,
    **fields,
) -> WebhookDelivery:
    """A message of the endpoint's merchant and its delivery to the endpoint, as the log has."""
    made = made or timezone.now()
    message = WebhookMessage.objects.create(
        merchant=endpoint.merchant,
        key=key,
        event=event,
        payload=payload or {"type": event, "timestamp": "2026-12-01T10:00:00Z", "data": {}},
        size=size,
        created_at=made,
    )
    return WebhookDelivery.objects.create(
        endpoint=endpoint, message=message, status=status, created_at=made, **fields
    )


def form(url: str, *events: str, description: str = "") -> dict:
    return {"url": url, "events": list(events), "description": description}


# --- registering ------------------------------------------------------------------------


def test_the_secret_is_shown_once_when_an_endpoint_is_registered(owner, merchant, http_server):
    # when an owner registers the local recording server (private hosts allowed in DEBUG)
    response = owner.post(
        reverse("webhooks:new"), form(http_server.url, ENTERED, CAMPAIGN, description="CRM")
    )

    # then the answer shows the secret, kept out of every cache
    endpoint = WebhookEndpoint.objects.get(merchant=merchant)
    assert response.status_code == 200
    assert endpoint.secret in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    assert endpoint.events == [ENTERED, CAMPAIGN]
    assert endpoint.description == "CRM"
    assert endpoint.created_by.username == "owner"
    # and no page shows it again
    for url in (reverse("webhooks:detail", args=[endpoint.pk]), reverse("webhooks:list")):
        page = owner.get(url).content.decode()
        assert endpoint.url in page
        assert endpoint.secret not in page


def test_a_private_address_is_refused_under_the_address_field(owner, merchant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False

    response = owner.post(reverse("webhooks:new"), form("http://127.0.0.1:8000/hook", ENTERED))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["url"]
    assert "loopback address" in errors["url"][0]
    assert 'id="error_1_id_url"' in response.content.decode()  # crispy: under the field
    assert not WebhookEndpoint.objects.exists()


def test_no_event_chosen_is_refused_under_the_events(owner, merchant, http_server):
    response = owner.post(reverse("webhooks:new"), form(http_server.url))

    assert response.status_code == 400
    assert response.context["form"].errors == {"events": ["Choose at least one event."]}
    assert 'id="events-error"' in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_refused_address_and_no_event_are_both_shown(owner):
    response = owner.post(reverse("webhooks:new"), form("ftp://files.example.com/in"))

    errors = response.context["form"].errors
    assert errors["url"] == ["The address must start with http:// or https://."]
    assert errors["events"] == ["Choose at least one event."]


def test_the_form_offers_every_event_with_its_label(owner):
    page = owner.get(reverse("webhooks:new")).content.decode()

    assert 'type="checkbox" name="events" value="customer.tier_changed"' in page
    assert "A customer&#x27;s tier changed" in page


def test_an_owner_edits_an_endpoint(owner, endpoint, http_server):
    url = reverse("webhooks:edit", args=[endpoint.pk])
    assert http_server.url in owner.get(url).content.decode()

    response = owner.post(url, form(http_server.url + "?v=2", EXITED, description="New"))

    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.events, endpoint.description) == (
        http_server.url + "?v=2",
        [EXITED],
        "New",
    )


def test_an_edit_to_a_refused_address_changes_nothing(owner, endpoint, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    before = endpoint.url

    response = owner.post(
        reverse("webhooks:edit", args=[endpoint.pk]), form("ftp://example.com/x", ENTERED)
    )

    assert response.status_code == 400
    assert "url" in response.context["form"].errors
    endpoint.refresh_from_db()
    assert endpoint.url == before


# --- switching, rotating, removing --------------------------------------------------------


def test_switching_off_shows_the_reason_and_time_and_switching_on_clears_them(owner, endpoint):
    switch = reverse("webhooks:switch", args=[endpoint.pk])
    detail = reverse("webhooks:detail", args=[endpoint.pk])

    owner.post(switch, {"active": "0", "reason": "Moving the CRM"})
    endpoint.refresh_from_db()
    page = owner.get(detail).content.decode()

    assert not endpoint.is_active
    assert 'id="switched-off"' in page and "Moving the CRM" in page
    local = timezone.localtime(endpoint.disabled_at, endpoint.merchant.tzinfo)
    assert local.strftime("%H:%M") in page and "America/Toronto" in page
    assert 'id="switch-on"' in page

    owner.post(switch, {"active": "1"})
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.disabled_reason == ""
    assert 'id="switched-off"' not in owner.get(detail).content.decode()


def test_switching_off_without_a_reason_names_who_did(owner, endpoint):
    owner.post(reverse("webhooks:switch", args=[endpoint.pk]), {"active": "0"})

    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "Switched off by owner on the Webhooks page."


def test_rotating_shows_the_new_secret_once(owner, endpoint):
    old = endpoint.secret

    response = owner.post(reverse("webhooks:rotate", args=[endpoint.pk]))

    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert endpoint.secret in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    assert (
        endpoint.secret
        not in owner.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    )


def test_rotating_needs_a_post(owner, endpoint):
    assert owner.get(reverse("webhooks:rotate", args=[endpoint.pk])).status_code == 405


def test_removing_an_endpoint_removes_its_log(owner, endpoint):
    logged(endpoint)

    response = owner.post(reverse("webhooks:delete", args=[endpoint.pk]), follow=True)

    assert not WebhookEndpoint.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert WebhookMessage.objects.count() == 1  # messages stay for the other endpoints
    assert "its delivery log are removed" in response.content.decode()
    assert 'id="webhooks-empty"' in response.content.decode()


# --- the list and the log -----------------------------------------------------------------


def test_the_empty_list_explains_webhooks_and_links_the_help(owner):
    page = owner.get(reverse("webhooks:list")).content.decode()

    assert 'id="webhooks-empty"' in page
    assert reverse("help", args=["webhooks"]) in page
    assert owner.get(reverse("help", args=["webhooks"])).status_code == 200


def test_the_list_shows_each_endpoint_with_its_state_and_counts(
    owner, merchant, endpoint, http_server, django_assert_max_num_queries
):
    other = endpoint_create(merchant=merchant, url=http_server.url + "?b", events=[CAMPAIGN])
    endpoint_disable(endpoint=other, reason="Paused for the migration")
    now = timezone.now()
    logged(endpoint, key="msg_a", made=now - dt.timedelta(hours=2))
    logged(endpoint, key="msg_b", made=now - dt.timedelta(hours=1))
    logged(endpoint, key="msg_c", status=WebhookDeliveryStatus.FAILED, made=now)
    logged(endpoint, key="msg_d", status=WebhookDeliveryStatus.PENDING, made=now)

    with django_assert_max_num_queries(12):
        page = owner.get(reverse("webhooks:list")).content.decode()

    row = page.split(f'id="endpoint-{endpoint.pk}"')[1].split("</tr>")[0]
    assert "CRM sync" in row and ">On<" in row
    assert [cell.split("<")[0] for cell in row.split('<td class="num">')[1:]] == ["2", "1", ""]
    assert 'text-danger">1<' in row
    off = page.split(f'id="endpoint-{other.pk}"')[1].split("</tr>")[0]
    assert ">Off<" in off and "Paused for the migration" in off and "none yet" in off


def test_the_log_lists_deliveries_and_filters_them_by_status_and_event(owner, endpoint):
    logged(endpoint, key="msg_ok", size=1000, response_status=202, duration_ms=41, attempts=1)
    logged(
        endpoint,
        key="msg_bad",
        event=EXITED,
        status=WebhookDeliveryStatus.FAILED,
        response_status=500,
        error="Answered 500: boom",
        attempts=9,
    )
    logged(endpoint, key="msg_wait", status=WebhookDeliveryStatus.PENDING)
    detail = reverse("webhooks:detail", args=[endpoint.pk])

    page = owner.get(detail).content.decode()
    failed = owner.get(detail, {"status": "failed"}).content.decode()
    exits = owner.get(detail, {"event": EXITED}).content.decode()
    partial = owner.get(detail, {"status": "succeeded"}, headers={"HX-Request": "true"})

    assert all(key in page for key in ("msg_ok", "msg_bad", "msg_wait"))
    assert "1,000" in page and "Answered 500: boom" in page
    assert "msg_bad" in failed and "msg_ok" not in failed and "msg_wait" not in failed
    assert "msg_bad" in exits and "msg_ok" not in exits
    assert "<html" not in partial.content.decode() and "msg_ok" in partial.content.decode()
    assert page.count(">Resend</button>") == 3


def test_a_message_page_shows_its_payload_escaped(owner, endpoint):
    delivery = logged(
        endpoint,
        payload={"type": ENTERED, "data": {"segment": {"name": "<script>alert(1)</script>"}}},
    )

    page = owner.get(reverse("webhooks:delivery", args=[endpoint.pk, delivery.pk]))

    body = page.content.decode()
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body
    assert "  &quot;type&quot;: &quot;segment.entered&quot;" in body  # indented
    assert "msg_1" in body


# --- resend -------------------------------------------------------------------------------


def test_resend_puts_the_row_back_to_pending(owner, endpoint, django_capture_on_commit_callbacks):
    delivery = logged(endpoint, status=WebhookDeliveryStatus.FAILED, attempts=9)

    with django_capture_on_commit_callbacks(execute=False):
        response = owner.post(reverse("webhooks:resend", args=[endpoint.pk, delivery.pk]))

    delivery.refresh_from_db()
    assert response.status_code == 302
    assert delivery.status == WebhookDeliveryStatus.PENDING


def test_resend_posts_the_message_again(
    owner, endpoint, http_server, django_capture_on_commit_callbacks
):
    delivery = logged(endpoint, status=WebhookDeliveryStatus.FAILED, attempts=9, key="msg_again")

    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(
            reverse("webhooks:resend", args=[endpoint.pk, delivery.pk]), follow=True
        )

    delivery.refresh_from_db()
    assert [h["webhook-id"] for _, h, _ in http_server.requests] == ["msg_again"]
    assert (delivery.status, delivery.attempts) == (WebhookDeliveryStatus.SUCCEEDED, 10)
    assert "msg_again is sent again now" in response.content.decode()


def test_resend_is_refused_while_the_endpoint_is_off(owner, endpoint):
    delivery = logged(endpoint, status=WebhookDeliveryStatus.FAILED)
    endpoint_disable(endpoint=endpoint, reason="off")

    response = owner.post(reverse("webhooks:resend", args=[endpoint.pk, delivery.pk]), follow=True)

    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.FAILED
    assert "switch it on before resending" in response.content.decode()
    assert ">Resend</button>" in response.content.decode()  # shown, but disabled
    assert 'disabled title="Switch the endpoint on to resend"' in response.content.decode()


# --- who may, and whose -------------------------------------------------------------------

PAGES = [
    ("get", "webhooks:list", False),
    ("get", "webhooks:new", False),
    ("get", "webhooks:detail", True),
    ("get", "webhooks:edit", True),
    ("post", "webhooks:switch", True),
    ("post", "webhooks:rotate", True),
    ("post", "webhooks:delete", True),
    ("get", "webhooks:delivery", True),
    ("post", "webhooks:resend", True),
]


def _url(name: str, endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> str:
    if name in ("webhooks:list", "webhooks:new"):
        return reverse(name)
    if name in ("webhooks:delivery", "webhooks:resend"):
        return reverse(name, args=[endpoint.pk, delivery.pk])
    return reverse(name, args=[endpoint.pk])


@pytest.mark.parametrize(
    ("method", "name"), [(m, n) for m, n, scoped in PAGES if scoped], ids=lambda v: str(v)
)
def test_another_merchants_endpoint_or_delivery_answers_404(
    owner, endpoint, other_merchant, http_server, method, name
):
    # given the other merchant's endpoint and delivery, and one of ours
    theirs = endpoint_create(merchant=other_merchant, url=http_server.url, events=[ENTERED])
    their_delivery = logged(theirs, key="msg_theirs", status=WebhookDeliveryStatus.FAILED)
    our_delivery = logged(endpoint, key="msg_ours", status=WebhookDeliveryStatus.FAILED)
    data = {"active": "0"} if name == "webhooks:switch" else {}
    if name == "webhooks:edit" and method == "get":
        data = {}

    # when our owner asks for theirs, or for their delivery under our endpoint
    send = getattr(owner, method)
    answers = [send(_url(name, theirs, their_delivery), data).status_code]
    if name in ("webhooks:delivery", "webhooks:resend"):
        answers.append(send(_url(name, endpoint, their_delivery), data).status_code)
        answers.append(send(_url(name, theirs, our_delivery), data).status_code)

    # then every one is not found, and nothing of theirs changed
    assert answers == [404] * len(answers)
    theirs.refresh_from_db()
    their_delivery.refresh_from_db()
    assert theirs.is_active and their_delivery.status == WebhookDeliveryStatus.FAILED


def test_another_merchants_endpoint_cannot_be_edited(owner, other_merchant, http_server):
    theirs = endpoint_create(merchant=other_merchant, url=http_server.url, events=[ENTERED])

    response = owner.post(
        reverse("webhooks:edit", args=[theirs.pk]), form(http_server.url + "?mine", EXITED)
    )

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.url == http_server.url


@pytest.mark.parametrize("role", [Role.STAFF, Role.MANAGER], ids=lambda r: r.value)
@pytest.mark.parametrize(("method", "name", "scoped"), PAGES, ids=lambda v: str(v))
def test_staff_and_managers_are_refused(merchant, endpoint, role, method, name, scoped):
    delivery = logged(endpoint, status=WebhookDeliveryStatus.FAILED)
    client = signed_in(merchant, role, username=f"as-{role.value}")

    response = getattr(client, method)(_url(name, endpoint, delivery), {"active": "0"})

    assert response.status_code == 403
    assert "Only owners may manage webhooks." in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.is_active and WebhookEndpoint.objects.count() == 1


def test_the_nav_links_webhooks_for_owners_only(merchant, owner):
    manager = signed_in(merchant, Role.MANAGER, username="manager")

    assert 'id="nav-webhooks"' in owner.get(reverse("customers:list")).content.decode()
    assert 'id="nav-webhooks"' not in manager.get(reverse("customers:list")).content.decode()
