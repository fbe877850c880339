"""Writes of offers: handing out unique codes. Keyword-only, typed, in a transaction."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import CodeMode, CouponCode, Offer
from customers.models import Customer

NOT_UNIQUE_CODES = 'The offer "{offer}" has no pool of unique codes.'
NO_CODE_LEFT = 'Every code of the offer "{offer}" is taken: upload or generate more.'
OTHER_MERCHANT = 'The customer {customer} is not a customer of the offer "{offer}"\'s merchant.'


class OfferError(ValueError):
    """An offer that cannot do what was asked; the message says why."""


def offer_code_assign(*, offer: Offer, customer: Customer) -> CouponCode:
    """The customer's code of the offer's pool: the one they hold, or a free one given to
    them now. Atomic: two requests at once never hand one code to two customers (the free
    code is locked, skipping codes another request holds) nor two codes to one customer
    (a unique constraint; the loser reads the winner's code)."""
    if offer.code_mode != CodeMode.UNIQUE:
        raise OfferError(NOT_UNIQUE_CODES.format(offer=offer.name))
    if customer.merchant_id != offer.merchant_id:
        raise OfferError(OTHER_MERCHANT.format(customer=customer.external_id, offer=offer.name))
    held = CouponCode.objects.filter(offer=offer, customer=customer).first()
    if held is not None:
        return held
    try:
        with transaction.atomic():
            code = (
                CouponCode.objects.select_for_update(skip_locked=True)
                .filter(offer=offer, customer__isnull=True)
                .order_by("pk")
                .first()
            )
            if code is None:
                raise OfferError(NO_CODE_LEFT.format(offer=offer.name))
            code.customer = customer
            code.assigned_at = timezone.now()
            code.save(update_fields=["customer", "assigned_at"])
            return code
    except IntegrityError:
        # Another request gave this customer a code first: theirs is the customer's.
        return CouponCode.objects.get(offer=offer, customer=customer)
