"""The owners' API token page (`customers:api_tokens`): a token is made there and shown once,
revoked there, and only owners of the token's own merchant reach it."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from customers.api_tokens import api_token_create
from customers.models import ApiToken, Role
from tests.api.conftest import ApiClient
from tests.factories import DEMO_PASSWORD, CustomerFactory, StaffMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
TOKEN_RE = re.compile(r"sp_[A-Za-z0-9_-]{43}")


def client_as(merchant, role: Role) -> Client:
    user = UserFactory(username=f"page-{role.value}")
    StaffMembershipFactory(user=user, merchant=merchant, role=role)
    client = Client()
    assert client.login(username=user.username, password=DEMO_PASSWORD)
    return client


@pytest.fixture
def owner(merchant):
    return client_as(merchant, Role.OWNER)


def test_owner_makes_a_token_and_sees_it_once(merchant, owner):
    customer = CustomerFactory(merchant=merchant, external_id="c-1")

    response = owner.post(
        reverse("customers:api_tokens"),
        {"name": "Loyalty app", "scope": "read", "expires_in_days": "30"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    shown = TOKEN_RE.findall(page)
    assert shown, page
    plaintext = shown[0]
    assert f"Authorization: Bearer {plaintext}" in page
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(merchant=merchant, name="Loyalty app")
    assert plaintext.startswith(token.prefix)
    assert token.expires_at is not None and token.created_by is not None
    assert plaintext not in response.cookies.output()
    # a reload shows the token's prefix only
    reload = owner.get(reverse("customers:api_tokens")).content.decode()
    assert plaintext not in reload and not TOKEN_RE.search(reload)
    assert "Loyalty app" in reload and f"{token.prefix}…" in reload
    # and the token works
    api = ApiClient(plaintext).get(f"/api/v1/customers/{customer.external_id}")
    assert api.status_code == 200, api.content


def test_a_bad_form_makes_no_token(merchant, owner):
    response = owner.post(reverse("customers:api_tokens"), {"name": " ", "scope": "admin"})

    assert response.status_code == 400
    assert not ApiToken.objects.exists()
    assert not TOKEN_RE.search(response.content.decode())


def test_revoked_token_gets_401(merchant, owner):
    CustomerFactory(merchant=merchant, external_id="c-1")
    token, plaintext = api_token_create(merchant=merchant, name="pos")
    assert ApiClient(plaintext).get("/api/v1/customers/c-1").status_code == 200

    response = owner.post(reverse("customers:api_token_revoke", args=[token.pk]))

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert ApiClient(plaintext).get("/api/v1/customers/c-1").status_code == 401
    page = owner.get(reverse("customers:api_tokens")).content.decode()
    assert "revoked" in page


def test_a_manager_gets_403(merchant):
    manager = client_as(merchant, Role.MANAGER)
    token, _ = api_token_create(merchant=merchant, name="pos")

    assert manager.get(reverse("customers:api_tokens")).status_code == 403
    assert manager.post(reverse("customers:api_tokens"), {"name": "x"}).status_code == 403
    revoke = manager.post(reverse("customers:api_token_revoke", args=[token.pk]))
    assert revoke.status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None
    assert not ApiToken.objects.filter(name="x").exists()


def test_another_merchants_token_is_404(merchant, other_merchant, owner):
    theirs, _ = api_token_create(merchant=other_merchant, name="rival pos")

    response = owner.post(reverse("customers:api_token_revoke", args=[theirs.pk]))

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert "rival pos" not in owner.get(reverse("customers:api_tokens")).content.decode()
