"""`merchant_create()` validates before it writes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from customers.models import Merchant
from customers.services import merchant_create
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def test_creates_a_merchant():
    merchant = merchant_create(
        slug="bean", name=" Bean Co ", time_zone="America/Vancouver", currency="cad"
    )

    merchant.refresh_from_db()
    assert (merchant.slug, merchant.name, merchant.time_zone, merchant.currency) == (
        "bean", "Bean Co", "America/Vancouver", "CAD",
    )  # fmt: skip


def test_currency_defaults_to_usd():
    assert merchant_create(slug="a", name="A", time_zone="UTC").currency == "USD"


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone", '"Mars/Olympus" is not a known time zone'),
        ({"currency": "DOLLARS"}, "currency", "three-letter ISO 4217 code"),
        ({"currency": "U1D"}, "currency", "three-letter ISO 4217 code"),
        ({"slug": "not a slug"}, "slug", "slug"),
        ({"name": "  "}, "name", "cannot be blank"),
    ],
)
def test_rejects_invalid_values(kwargs, field, message):
    values = {"slug": "ok", "name": "Ok", "time_zone": "UTC", **kwargs}

    with pytest.raises(ValidationError) as exc:
        merchant_create(**values)

    assert any(message in m for m in exc.value.message_dict[field])
    assert not Merchant.objects.exists()


def test_rejects_a_duplicate_slug():
    MerchantFactory(slug="taken")

    with pytest.raises(ValidationError) as exc:
        merchant_create(slug="taken", name="Again", time_zone="UTC")

    assert exc.value.message_dict["slug"] == ['A merchant with the slug "taken" already exists.']
    assert Merchant.objects.filter(slug="taken").count() == 1
