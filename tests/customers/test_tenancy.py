"""Tenancy of every portal URL: who may open it, and that it only ever shows own rows.

To cover a new portal URL, add a `PortalUrl` to `PORTAL_URLS`; the access tests pick it up.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.test import Client
from django.urls import reverse

from customers.portal.middleware import SESSION_KEY
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    StaffMembershipFactory,
    TagFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class PortalUrl:
    """One portal URL and what a signed-in member of a merchant gets from it."""

    name: str
    # Builds the URL kwargs from the `world` fixture (own and foreign objects).
    kwargs: Callable[[dict[str, Any]], dict[str, Any]] = lambda world: {}
    query: dict[str, str] = field(default_factory=dict)
    method: str = "get"
    data: dict[str, str] = field(default_factory=dict)
    # What a member gets; and a signed-in user without any membership.
    member_status: int = 200
    no_membership_status: int = 403
    # The page's template, when the page may not have been built yet.
    needs_template: str | None = None

    def url(self, world: dict[str, Any]) -> str:
        return reverse(self.name, kwargs=self.kwargs(world))

    def request(self, client: Client, world: dict[str, Any]):
        if self.method == "post":
            return client.post(self.url(world), self.data)
        return client.get(self.url(world), self.query)

    def __str__(self) -> str:
        extra = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{self.method.upper()} {self.name}{'?' + extra if extra else ''}"


PORTAL_URLS = [
    PortalUrl("customers:list"),
    PortalUrl("customers:list", query={"q": "a", "_export": "csv"}),
    PortalUrl("customers:list", query={"_export": "xlsx"}),
    PortalUrl("customers:list", query={"q": "a"}),
    PortalUrl("customers:detail", kwargs=lambda world: {"pk": world["own_customer"].pk}),
    PortalUrl(
        "customers:switch_merchant",
        method="post",
        data={"merchant": "acme"},
        member_status=302,
        # Only login is required: without memberships there is no merchant of yours to find.
        no_membership_status=404,
    ),
    PortalUrl("customers:import", needs_template="customers/import.html"),
]
URL_IDS = [str(u) for u in PORTAL_URLS]


@pytest.fixture
def world(merchant, other_merchant):
    own_tag = TagFactory(merchant=merchant, name="own-tag")
    foreign_tag = TagFactory(merchant=other_merchant, name="foreign-tag")
    return {
        "own_customer": CustomerFactory(
            merchant=merchant, external_id="OWN-1", first_name="Ada", tags=[own_tag]
        ),
        "foreign_customer": CustomerFactory(
            merchant=other_merchant, external_id="FOREIGN-1", first_name="Ada", tags=[foreign_tag]
        ),
        "own_tag": own_tag,
        "foreign_tag": foreign_tag,
    }


def login(username: str, **membership: Any) -> Client:
    user = UserFactory(username=username)
    if membership:
        StaffMembershipFactory(user=user, **membership)
    client = Client()
    assert client.login(username=username, password=DEMO_PASSWORD)
    return client


def require_page(portal_url: PortalUrl) -> None:
    """A listed page must exist: a deleted template fails here, never passes as skipped."""
    if portal_url.needs_template:
        try:
            get_template(portal_url.needs_template)
        except TemplateDoesNotExist:
            pytest.fail(f"{portal_url.needs_template} is missing")


# ----------------------------------------------------------------------------------------------
# Who may open each URL
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("portal_url", PORTAL_URLS, ids=URL_IDS)
def test_anonymous_is_sent_to_login(client, world, portal_url):
    response = portal_url.request(client, world)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("portal_url", PORTAL_URLS, ids=URL_IDS)
def test_user_without_membership_is_refused(world, portal_url):
    client = login("drifter")

    response = portal_url.request(client, world)

    assert response.status_code == portal_url.no_membership_status
    if response.status_code == 403:
        assert "No merchant yet" in response.content.decode()


@pytest.mark.parametrize("portal_url", PORTAL_URLS, ids=URL_IDS)
def test_member_can_open(staff_client, world, portal_url):
    require_page(portal_url)

    response = portal_url.request(staff_client, world)

    assert response.status_code == portal_url.member_status


@pytest.mark.parametrize("portal_url", PORTAL_URLS, ids=URL_IDS)
def test_no_response_mentions_another_merchants_rows(staff_client, world, portal_url):
    require_page(portal_url)

    response = portal_url.request(staff_client, world)

    body = b"" if response.streaming else response.content
    assert b"FOREIGN-1" not in body
    assert b"foreign-tag" not in body


# ----------------------------------------------------------------------------------------------
# Only own rows
# ----------------------------------------------------------------------------------------------


def test_list_shows_only_own_customers(staff_client, world):
    response = staff_client.get(reverse("customers:list"))

    assert [r.record.external_id for r in response.context["table"].paginated_rows] == ["OWN-1"]


def test_search_finds_only_own_customers(staff_client, world):
    response = staff_client.get(reverse("customers:list"), {"q": "ada"})

    assert [r.record.external_id for r in response.context["table"].paginated_rows] == ["OWN-1"]


def test_export_has_only_own_customers(staff_client, world):
    response = staff_client.get(reverse("customers:list"), {"_export": "csv"})

    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert [r[0] for r in rows[1:]] == ["OWN-1"]


def test_filter_choices_are_only_own(staff_client, world):
    form = staff_client.get(reverse("customers:list")).context["filter"].form

    assert list(form.fields["tags"].queryset) == [world["own_tag"]]


def test_foreign_filter_id_shows_nothing(staff_client, world):
    response = staff_client.get(reverse("customers:list"), {"tags": world["foreign_tag"].pk})

    assert list(response.context["table"].paginated_rows) == []
    assert "tags" in response.context["filter"].errors


def test_detail_of_another_merchants_customer_is_404(staff_client, world):
    url = reverse("customers:detail", args=[world["foreign_customer"].pk])

    assert staff_client.get(url).status_code == 404


def test_the_404_page_is_the_portals_with_a_way_back(staff_client, world, settings):
    settings.DEBUG = False
    url = reverse("customers:detail", args=[world["foreign_customer"].pk])

    response = staff_client.get(url)

    body = response.content.decode()
    assert response.status_code == 404
    assert 'id="not-found"' in body and "Page not found" in body
    assert 'class="navbar' in body  # in the portal's layout, with its navigation
    assert f'href="{reverse("segments:list")}"' in body
    assert "Traceback" not in body and "URLconf" not in body  # not Django's debug page


def test_a_404_for_someone_signed_out_links_to_the_portal(client, world, settings):
    settings.DEBUG = False

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "Back to the portal" in response.content.decode()


def test_detail_of_a_missing_customer_is_404(staff_client, world):
    assert staff_client.get(reverse("customers:detail", args=[999_999])).status_code == 404


# ----------------------------------------------------------------------------------------------
# Switching merchants
# ----------------------------------------------------------------------------------------------


def test_switch_to_a_merchant_not_yours_is_404(staff_client, world, other_merchant):
    response = staff_client.post(
        reverse("customers:switch_merchant"), {"merchant": other_merchant.slug}
    )

    assert response.status_code == 404
    listed = staff_client.get(reverse("customers:list")).context["table"].paginated_rows
    assert [r.record.external_id for r in listed] == ["OWN-1"]


def test_switch_to_an_unknown_merchant_is_404(staff_client, world):
    response = staff_client.post(reverse("customers:switch_merchant"), {"merchant": "nope"})

    assert response.status_code == 404


def test_switch_needs_post(staff_client, world):
    assert staff_client.get(reverse("customers:switch_merchant")).status_code == 405


def test_switching_changes_what_the_list_shows(world, merchant, other_merchant):
    user = UserFactory(username="both")
    StaffMembershipFactory(user=user, merchant=merchant)
    StaffMembershipFactory(user=user, merchant=other_merchant)
    client = Client()
    client.force_login(user)

    def listed():
        response = client.get(reverse("customers:list"))
        return response.context["current_merchant"], [
            r.record.external_id for r in response.context["table"].paginated_rows
        ]

    assert listed() == (merchant, ["OWN-1"])

    response = client.post(reverse("customers:switch_merchant"), {"merchant": other_merchant.slug})

    assert response.status_code == 302
    assert response["Location"] == reverse("customers:list")
    assert listed() == (other_merchant, ["FOREIGN-1"])
    detail = reverse("customers:detail", args=[world["own_customer"].pk])
    assert client.get(detail).status_code == 404  # now the other merchant's customer

    client.post(reverse("customers:switch_merchant"), {"merchant": merchant.slug})
    assert listed() == (merchant, ["OWN-1"])


def test_a_foreign_merchant_id_in_the_session_is_ignored(staff_client, world, other_merchant):
    session = staff_client.session
    session[SESSION_KEY] = other_merchant.pk
    session.save()

    response = staff_client.get(reverse("customers:list"))

    assert [r.record.external_id for r in response.context["table"].paginated_rows] == ["OWN-1"]
