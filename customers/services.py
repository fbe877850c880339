"""Writes of the customers app (services: keyword-only, typed, `<entity>_<verb>`)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from customers.models import Merchant

MSG_DUPLICATE_SLUG = 'A merchant with the slug "{slug}" already exists.'


def merchant_create(*, slug: str, name: str, time_zone: str, currency: str = "USD") -> Merchant:
    """Create a merchant (a tenant), validated.

    Raises ValidationError with a message per field for an unknown time zone, a slug that
    is taken or malformed, a currency that is not a three-letter ISO 4217 code, or an empty
    name.
    """
    merchant = Merchant(
        slug=slug.strip(),
        name=name.strip(),
        time_zone=time_zone.strip(),
        currency=currency.strip().upper(),
    )
    # full_clean() runs the model's validators (time zone, currency, slug) and the unique
    # check on slug, which gives Django's generic message; ours names the slug.
    try:
        merchant.full_clean(validate_unique=False)
    except ValidationError as exc:
        errors = exc.message_dict
    else:
        errors = {}
    if Merchant.objects.filter(slug=merchant.slug).exists():
        errors.setdefault("slug", []).append(MSG_DUPLICATE_SLUG.format(slug=merchant.slug))
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        merchant.save()
    return merchant
