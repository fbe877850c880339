"""Sign-in throttling (django-axes): wrong passwords lock the account and the address for a
while, the right password is then refused too, and support unlocks in the admin."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from customers.portal.security import client_ip
from tests.factories import DEMO_PASSWORD, StaffMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _throttling_on(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5


def sign_in(client: Client, username: str, password: str, address: str = "203.0.113.7"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_the_right_password_is_refused_after_five_wrong_ones(merchant):
    StaffMembershipFactory(user=UserFactory(username="ann"), merchant=merchant)
    client = Client()

    for _ in range(4):
        assert sign_in(client, "ann", "wrong").status_code == 200  # the form again
    locked = sign_in(client, "ann", "wrong")
    after = sign_in(client, "ann", DEMO_PASSWORD)

    assert locked.status_code == 429
    assert after.status_code == 429
    assert "Too many failed sign-ins" in after.content.decode()
    assert after["Retry-After"] == "900"
    assert "_auth_user_id" not in client.session


def test_the_account_is_locked_from_any_address_and_the_address_for_any_account(merchant):
    for name in ("ann", "bob"):
        StaffMembershipFactory(user=UserFactory(username=name), merchant=merchant)
    for attempt in range(5):
        sign_in(Client(), "ann", "wrong", address=f"198.51.100.{attempt}")

    # ann is locked wherever she signs in from
    assert sign_in(Client(), "ann", DEMO_PASSWORD, address="192.0.2.1").status_code == 429
    # bob, from a fresh address, is not
    assert sign_in(Client(), "bob", DEMO_PASSWORD, address="192.0.2.2").status_code == 302

    # one address guessing five accounts is locked for every account
    for name in ("c1", "c2", "c3", "c4", "c5"):
        sign_in(Client(), name, "wrong", address="192.0.2.99")
    assert sign_in(Client(), "bob", DEMO_PASSWORD, address="192.0.2.99").status_code == 429


def test_a_success_before_the_limit_resets_the_count(merchant):
    StaffMembershipFactory(user=UserFactory(username="ann"), merchant=merchant)
    for _ in range(4):
        sign_in(Client(), "ann", "wrong")
    assert sign_in(Client(), "ann", DEMO_PASSWORD).status_code == 302
    for _ in range(4):
        sign_in(Client(), "ann", "wrong")
    assert sign_in(Client(), "ann", DEMO_PASSWORD).status_code == 302


def test_support_unlocks_in_the_admin(merchant):
    ann = UserFactory(username="ann")
    StaffMembershipFactory(user=ann, merchant=merchant)
    for _ in range(5):
        sign_in(Client(), "ann", "wrong")
    assert AccessAttempt.objects.filter(username="ann").exists()
    support = UserFactory(username="support", is_staff=True)
    for codename in ("view_user", "change_user"):
        support.user_permissions.add(Permission.objects.get(codename=codename))
    admin = Client()
    admin.force_login(support)

    response = admin.post(
        reverse("admin:auth_user_changelist"),
        {"action": "unlock_sign_in", "_selected_action": [ann.pk]},
        follow=True,
    )

    assert "Unlocked 1 user(s)" in response.content.decode()
    assert not AccessAttempt.objects.filter(username="ann").exists()
    assert sign_in(Client(), "ann", DEMO_PASSWORD, address="192.0.2.50").status_code == 302


def test_the_admin_sign_in_is_throttled_too(merchant):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(5):
        client.post(reverse("admin:login"), {"username": "root", "password": "wrong"})
    response = client.post(reverse("admin:login"), {"username": "root", "password": DEMO_PASSWORD})
    assert response.status_code == 429


@pytest.mark.parametrize(
    ("proxies", "meta", "expected"),
    [
        (0, {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, "10.0.0.1"),
        (1, {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4"}, "1.2.3.4"),
        (
            2,
            {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "9.9.9.9, 1.2.3.4, 10.0.0.2"},
            "1.2.3.4",
        ),
        (1, {"REMOTE_ADDR": "10.0.0.1"}, "10.0.0.1"),
    ],
)
def test_the_client_address_trusts_only_the_configured_proxies(
    settings, rf, proxies, meta, expected
):
    settings.PROXY_COUNT = proxies
    request = rf.get("/", **meta)
    assert client_ip(request) == expected
