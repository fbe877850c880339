"""API tokens: made with a plaintext shown once (only its hash stored), looked up while
usable, revoked, expired, and their last use recorded at most once a minute."""

import datetime as dt
import hashlib
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from customers.api_tokens import (
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
)
from customers.models import ApiToken, ApiTokenScope
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


def test_a_token_is_stored_as_its_hash_and_shown_once(merchant):
    # when
    token, plaintext = api_token_create(merchant=merchant, name=" loyalty app ", scope="write")

    # then
    assert plaintext.startswith("sp_") and len(plaintext) == 46
    assert token.prefix == plaintext[:8]
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert token.name == "loyalty app" and token.scope == ApiTokenScope.WRITE
    stored = ApiToken.objects.get()
    assert plaintext not in {getattr(stored, f.attname) for f in ApiToken._meta.concrete_fields}


def test_two_tokens_differ(merchant):
    first = api_token_create(merchant=merchant, name="a")[1]
    second = api_token_create(merchant=merchant, name="a")[1]

    assert first != second


def test_a_token_is_refused_without_a_name_or_with_an_unknown_scope_or_a_past_expiry(merchant):
    with pytest.raises(ValidationError) as caught:
        api_token_create(
            merchant=merchant,
            name=" ",
            scope="admin",
            expires_at=timezone.now() - dt.timedelta(days=1),
        )

    assert set(caught.value.message_dict) == {"name", "scope", "expires_at"}
    assert not ApiToken.objects.exists()


def test_lookup_finds_a_usable_token_with_its_merchant(merchant):
    token, plaintext = api_token_create(merchant=merchant, name="app")

    found = api_token_authenticate(plaintext=plaintext, now=NOW)

    assert found == token and found.merchant == merchant


@pytest.mark.parametrize("sent", ["", "sp_wrong", "not-ours", "sp_" + "x" * 300])
def test_lookup_refuses_unknown_tokens(merchant, sent):
    api_token_create(merchant=merchant, name="app")

    assert api_token_authenticate(plaintext=sent, now=NOW) is None


def test_a_revoked_token_is_refused(merchant):
    token, plaintext = api_token_create(merchant=merchant, name="app")

    api_token_revoke(token=token)
    first_revocation = token.revoked_at
    api_token_revoke(token=token)

    assert api_token_authenticate(plaintext=plaintext) is None
    token.refresh_from_db()
    assert token.revoked_at == first_revocation


def test_a_token_works_until_it_expires(merchant):
    expires = timezone.now() + dt.timedelta(days=30)
    _, plaintext = api_token_create(merchant=merchant, name="app", expires_at=expires)

    assert api_token_authenticate(plaintext=plaintext, now=expires - dt.timedelta(seconds=1))
    assert api_token_authenticate(plaintext=plaintext, now=expires) is None


def test_last_use_is_recorded_at_most_once_a_minute(merchant, django_assert_num_queries):
    token, plaintext = api_token_create(merchant=merchant, name="app")

    # when: used, used again within the minute, then a minute later
    with django_assert_num_queries(2):  # the look-up and the first record
        api_token_authenticate(plaintext=plaintext, now=NOW)
    with django_assert_num_queries(1):  # the look-up only
        api_token_authenticate(plaintext=plaintext, now=NOW + dt.timedelta(seconds=59))
    token.refresh_from_db()
    assert token.last_used_at == NOW
    api_token_authenticate(plaintext=plaintext, now=NOW + dt.timedelta(seconds=60))

    # then
    token.refresh_from_db()
    assert token.last_used_at == NOW + dt.timedelta(seconds=60)


def test_the_command_prints_a_working_token_once(merchant):
    out, err = StringIO(), StringIO()

    call_command(
        "api_token_create",
        "--merchant=acme",
        "--name=pos",
        "--scope=write",
        "--expires-days=90",
        stdout=out,
        stderr=err,
    )

    plaintext = out.getvalue().strip()
    assert "\n" not in plaintext
    token = api_token_authenticate(plaintext=plaintext)
    assert token is not None and token.merchant == merchant and token.scope == "write"
    assert token.expires_at is not None
    assert plaintext not in err.getvalue() and token.prefix in err.getvalue()


def test_the_command_refuses_an_unknown_merchant(merchant):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("api_token_create", "--merchant=nobody", "--name=pos", stdout=StringIO())


def test_the_admin_lists_tokens_without_their_hash_and_revokes_them(merchant):
    from django.test import Client

    token, _ = api_token_create(merchant=merchant, name="pos")
    client = Client()
    client.force_login(UserFactory(username="support", is_staff=True, is_superuser=True))
    listing = client.get(reverse("admin:customers_apitoken_changelist"))
    change = client.get(reverse("admin:customers_apitoken_change", args=[token.pk]))
    add = client.get(reverse("admin:customers_apitoken_add"))

    assert listing.status_code == 200 and token.prefix in listing.content.decode()
    assert "cannot be added here" in listing.content.decode()
    assert token.token_hash not in listing.content.decode() + change.content.decode()
    assert add.status_code == 403

    # when
    client.post(
        reverse("admin:customers_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )

    # then
    token.refresh_from_db()
    assert token.revoked_at is not None
