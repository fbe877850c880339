"""Unique codes handed out by many requests at once, with real connections (PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from campaigns.models import CodeMode, CouponCode, Offer
from campaigns.services import OfferError, offer_code_assign
from customers.models import Customer
from tests.factories import CustomerFactory, MerchantFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs other connections to the test database"
    ),
]


def test_eight_customers_at_once_get_eight_different_codes_and_the_ninth_none():
    # given: eight codes, nine customers asking at the same moment
    merchant = MerchantFactory(slug="rush")
    offer = Offer.objects.create(merchant=merchant, name="Rush", code_mode=CodeMode.UNIQUE)
    CouponCode.objects.bulk_create(CouponCode(offer=offer, code=f"C{i}") for i in range(8))
    customers = [CustomerFactory(merchant=merchant).pk for _ in range(9)]
    start = threading.Barrier(len(customers))
    refused: list[int] = []

    def ask(customer_id: int) -> None:
        try:
            start.wait()
            offer_code_assign(offer=offer, customer=Customer.objects.get(pk=customer_id))
        except OfferError:
            refused.append(customer_id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask, args=(pk,)) for pk in customers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: every code went to exactly one customer, and one customer was told none is left
    held = list(CouponCode.objects.filter(offer=offer).values_list("customer_id", flat=True))
    assert None not in held
    assert len(set(held)) == 8
    assert len(refused) == 1 and refused[0] not in held
