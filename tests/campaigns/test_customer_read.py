"""`campaigns.selectors.customer_read`: the API's customer read. On PostgreSQL its four parts
(card, tags, segments, what the customer sees) run as one statement; it must answer exactly
what the parts answer when each runs alone, the way the embedded database still runs them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import (
    CodeMode,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Offer,
    OfferSegment,
)
from campaigns.selectors import customer_read, customer_sees
from customers.models import Customer
from customers.selectors import customer_card
from segments import services as segment_services
from segments.models import SegmentKind
from segments.selectors import customer_segment_rows
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    MerchantFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
)

pytestmark = pytest.mark.django_db


def _parts_alone(merchant, external_id):
    """What the read answers, from its parts each run alone."""
    card = customer_card(merchant=merchant, external_id=external_id)
    assert card is not None
    customer_id = card.customer["id"]
    segments = customer_segment_rows(customer_id=customer_id, merchant_id=merchant.pk)
    sees = customer_sees(customer=Customer(pk=customer_id, merchant=merchant))
    return card, segments, sees


def test_the_read_answers_what_its_parts_answer_alone():
    # given: a customer with a tier, a home branch, two tags, a purchase, three segments
    # (named out of creation order), an offer with a shared code and one with a code from
    # a pool that the customer holds (% in names and codes), and two content blocks
    merchant = MerchantFactory()
    tier = TierFactory(merchant=merchant, name="Gold")
    customer = CustomerFactory(
        merchant=merchant,
        external_id="m-1",
        tier=tier,
        home_branch=BranchFactory(merchant=merchant, code="DT"),
    )
    customer.tags.add(TagFactory(merchant=merchant, name="zeta"), TagFactory(merchant=merchant))
    TransactionFactory(customer=customer, total="12.34", occurred_at=timezone.now())
    segments = [
        segment_services.segment_create(merchant=merchant, name=name, kind=SegmentKind.MANUAL)
        for name in ("Weekend 100%", "Alpha", "Locals")
    ]
    for segment in segments:
        segment_services.segment_members_add(segment=segment, customers=[customer.pk])
    shared = Offer.objects.create(
        merchant=merchant, name="b 10% off", code_mode=CodeMode.SHARED, shared_code="TEN%"
    )
    pooled = Offer.objects.create(merchant=merchant, name="A pooled", code_mode=CodeMode.UNIQUE)
    CouponCode.objects.create(
        offer=pooled, code="P-1", customer=customer, assigned_at=timezone.now()
    )
    for offer, segment in ((shared, segments[0]), (pooled, segments[1])):
        OfferSegment.objects.create(offer=offer, segment=segment)
    for title in ("Night", "breakfast"):
        block = ContentBlock.objects.create(merchant=merchant, title=title)
        ContentSegment.objects.create(block=block, segment=segments[2])

    # when
    read = customer_read(merchant=merchant, external_id="m-1")

    # then: the same card, segments (by name) and what it sees (offers, then content, by name)
    assert read is not None
    card, segment_rows, sees = _parts_alone(merchant, "m-1")
    assert read.card == card
    assert read.segments == segment_rows
    assert [name for _, name, _ in read.segments] == ["Alpha", "Locals", "Weekend 100%"]
    assert all(isinstance(since, dt.datetime) and since.tzinfo for _, _, since in read.segments)
    assert read.sees == sees
    assert [(item.kind, item.name, item.code) for item in read.sees] == [
        ("offer", "A pooled", "P-1"),
        ("offer", "b 10% off", "TEN%"),
        ("content", "breakfast", ""),
        ("content", "Night", ""),
    ]
    assert read.card.tags == sorted(read.card.tags) and "zeta" in read.card.tags
    assert (read.card.customer["tier"], read.card.customer["home_branch"]) == ("Gold", "DT")


def test_a_customer_with_nothing_but_a_profile():
    # given: no tags, no segments, no orders, nothing aimed at it
    merchant = MerchantFactory()
    CustomerFactory(merchant=merchant, external_id="bare")

    # when
    read = customer_read(merchant=merchant, external_id="bare")

    # then
    assert read is not None
    card, segment_rows, sees = _parts_alone(merchant, "bare")
    assert read.card == card and read.card.tags == []
    assert read.segments == segment_rows == [] and read.sees == sees == []


def test_another_merchants_or_an_unknown_customer_is_none():
    merchant, rival = MerchantFactory(), MerchantFactory()
    CustomerFactory(merchant=rival, external_id="theirs")

    assert customer_read(merchant=merchant, external_id="theirs") is None
    assert customer_read(merchant=merchant, external_id="nobody") is None
    assert customer_read(merchant=rival, external_id="theirs") is not None


def test_postgresql_reads_it_in_one_statement():
    if connection.vendor != "postgresql":
        pytest.skip("the embedded database runs the parts one by one")
    merchant = MerchantFactory()
    CustomerFactory(merchant=merchant, external_id="one")

    with CaptureQueriesContext(connection) as queries:
        assert customer_read(merchant=merchant, external_id="one") is not None

    assert len(queries) == 1
