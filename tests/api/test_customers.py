"""`PUT /api/v1/customers/{external_id}` (the import contract's columns, validated the
import's way, written through the write chain) and `GET` (the customer, its scores, its
segments and what it sees now), each scoped to the token's merchant."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import CodeMode, ContentBlock, ContentSegment, Offer, OfferSegment
from customers.models import Customer, CustomerMetrics, Tag, Tier
from segments import services as segment_services
from segments.models import SegmentKind, SegmentMembership
from tests.api.conftest import error_paths
from tests.factories import BranchFactory, CustomerFactory, TransactionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers/{}"
#: Valid by Django's email validator (up to 320 characters), longer than the column (254).
LONG_EMAIL = "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com"


def test_put_creates_a_customer_and_answers_201(writer, merchant):
    BranchFactory(merchant=merchant, code="DT")

    # when
    response = writer.put(
        URL.format("c-1"),
        {
            "first_name": "Ann",
            "email": "ann@example.com",
            "gender": "Female",
            "birth_date": "1990-05-31",
            "tags": ["VIP", "Newsletter"],
            "tier": "Gold",
            "joined_at": "2024-01-02T10:00:00",
            "home_branch": "DT",
            "sms_opt_in": True,
            "points_balance": 120,
        },
    )

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["external_id"] == "c-1" and body["first_name"] == "Ann"
    assert body["gender"] == "female"
    assert sorted(body["tags"]) == ["Newsletter", "VIP"]
    assert body["tier"] == "Gold" and body["home_branch"] == "DT"
    # a timestamp without an offset is merchant-local (Toronto, UTC-5 in January)
    assert body["joined_at"].startswith("2024-01-02T15:00:00")
    customer = Customer.objects.get(merchant=merchant, external_id="c-1")
    assert customer.sms_opt_in and customer.points_balance == 120
    # the write chain ran: the metrics row carries the profile
    metrics = CustomerMetrics.objects.get(customer=customer)
    assert metrics.tier_id == customer.tier_id and metrics.points_balance == 120
    assert sorted(metrics.tag_ids) == sorted(customer.tags.values_list("pk", flat=True))


def test_put_updates_given_fields_and_keeps_the_others(writer, merchant):
    customer = CustomerFactory(merchant=merchant, external_id="c-1", first_name="Ann")
    customer.tags.add(Tag.objects.create(merchant=merchant, name="VIP"))

    response = writer.put(
        URL.format("c-1"), {"joined_at": "2024-01-02T10:00:00Z", "last_name": "Lee"}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["first_name"], body["last_name"], body["tags"]) == ("Ann", "Lee", ["VIP"])
    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_put_refuses_a_bad_field_naming_it_and_writes_nothing(writer, merchant):
    response = writer.put(
        URL.format("c-1"),
        {"email": "not-an-email", "joined_at": "2024-01-02", "tier": "Gold", "tags": ["New"]},
    )

    assert response.status_code == 422
    assert error_paths(response) == ["email"]
    assert "not a valid email address" in response.json()["errors"][0]["message"]
    assert not Customer.objects.exists()
    assert not Tier.objects.exists() and not Tag.objects.exists()


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, ["joined_at"]),
        ({"joined_at": "yesterday"}, ["joined_at"]),
        ({"joined_at": "2024-01-02", "home_branch": "NOPE"}, ["home_branch"]),
        ({"joined_at": "2024-01-02", "points_balance": -1}, ["points_balance"]),
        ({"joined_at": "2024-01-02", "gender": "x", "phone": "1"}, ["phone", "gender"]),
        (
            {
                "joined_at": "2024-01-02",
                "email": "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com",
            },
            ["email"],
        ),
        ({"joined_at": "2024-01-02", "first_name": "a\x00b"}, ["first_name"]),
        ({"joined_at": "2024-01-02", "shoe_size": 42}, ["shoe_size"]),
        ({"joined_at": "2024-01-02", "first_name": 5}, ["first_name"]),
        ({"joined_at": "2024-01-02", "tags": "VIP"}, ["tags"]),
        ({"joined_at": "2024-01-02", "tags": [1]}, ["tags.0"]),
    ],
)
def test_put_names_the_field_of_each_error(writer, body, paths):
    response = writer.put(URL.format("c-1"), body)

    assert response.status_code == 422, response.content
    assert sorted(error_paths(response)) == sorted(paths)


@pytest.mark.parametrize("body", ["{not json", "[]", '"text"', "null", ""])
def test_put_refuses_a_body_that_is_not_an_object(writer, body):
    response = writer.put(URL.format("c-1"), body)

    assert response.status_code in {400, 422}, response.content
    error_paths(response)


def test_put_cannot_touch_another_merchants_customer(rival_writer, merchant, other_merchant):
    CustomerFactory(merchant=merchant, external_id="c-1", first_name="Ann")

    response = rival_writer.put(URL.format("c-1"), {"joined_at": "2024-01-02", "first_name": "X"})

    # the rival's PUT makes the rival's own customer c-1; Ann is untouched
    assert response.status_code == 201
    assert Customer.objects.get(merchant=merchant).first_name == "Ann"
    assert Customer.objects.get(merchant=other_merchant).first_name == "X"


def test_get_answers_404_for_another_merchants_customer(rival_writer, merchant):
    CustomerFactory(merchant=merchant, external_id="c-1")

    response = rival_writer.get(URL.format("c-1"))

    assert response.status_code == 404
    assert error_paths(response) == [""]


def test_get_answers_404_for_an_unknown_customer(reader):
    assert reader.get(URL.format("nobody")).status_code == 404


def test_get_answers_the_customer_with_scores_segments_and_what_it_sees(reader, merchant):
    # given: a customer with a purchase, in a manual segment that an offer (shared code)
    # and a content block are aimed at
    customer = CustomerFactory(merchant=merchant, external_id="c-1")
    TransactionFactory(customer=customer, total="40.00", occurred_at=timezone.now())
    vips = segment_services.segment_create(merchant=merchant, name="VIPs", kind=SegmentKind.MANUAL)
    segment_services.segment_members_add(segment=vips, customers=[customer.pk])
    offer = Offer.objects.create(
        merchant=merchant, name="Spring deal", code_mode=CodeMode.SHARED, shared_code="SPRING"
    )
    OfferSegment.objects.create(offer=offer, segment=vips)
    block = ContentBlock.objects.create(merchant=merchant, title="Member night")
    ContentSegment.objects.create(block=block, segment=vips)
    since = SegmentMembership.objects.get(customer=customer).since

    # when
    response = reader.get(URL.format("c-1"))

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["external_id"] == "c-1"
    assert body["metrics"]["orders_count"] == 1 and body["metrics"]["net_spend"] == "40.00"
    assert body["scores"]["lifecycle_stage"] is not None
    assert set(body["scores"]["rfm"]) == {"recency", "frequency", "monetary", "group"}
    assert "p_alive" in body["scores"]["predictions"]
    [segment] = body["segments"]
    assert (segment["slug"], segment["name"]) == (vips.slug, "VIPs")
    # JSON times carry milliseconds
    assert abs(dt.datetime.fromisoformat(segment["since"]) - since) < dt.timedelta(milliseconds=1)
    assert body["offers"] == [
        {
            "kind": "offer",
            "id": offer.pk,
            "name": "Spring deal",
            "because": "VIPs",
            "code": "SPRING",
        }
    ]
    assert [(c["name"], c["because"]) for c in body["content"]] == [("Member night", "VIPs")]


def test_get_reads_what_the_customer_sees_in_one_query(
    reader, merchant, django_assert_max_num_queries
):
    CustomerFactory(merchant=merchant, external_id="c-1")
    reader.get(URL.format("c-1"))  # the token's last use is recorded once a minute

    # the token, then one statement on PostgreSQL (campaigns.selectors.customer_read); the
    # customer (+metrics, tier, branch), tags, memberships and what it sees one by one on
    # SQLite
    with django_assert_max_num_queries(2 if connection.vendor == "postgresql" else 5):
        assert reader.get(URL.format("c-1")).status_code == 200


def test_get_answers_the_customer_as_the_put_does(writer, merchant):
    # given: a customer with every column given (the PUT answers from the stored model)
    BranchFactory(merchant=merchant, code="DT")
    put = writer.put(
        URL.format("c-7"),
        {
            "first_name": "Ann",
            "last_name": "Lee",
            "email": "ann@example.com",
            "phone": "+1 416 555 0100",
            "gender": "Female",
            "birth_date": "1990-05-31",
            "customer_type": "member",
            "tags": ["VIP", "Newsletter"],
            "tier": "Gold",
            "joined_at": "2024-01-02T10:00:00",
            "home_branch": "DT",
            "email_opt_in": False,
            "sms_opt_in": True,
            "push_opt_in": True,
            "points_balance": 120,
            "lifetime_points": 900,
            "last_contacted_at": "2024-06-01T09:30:00+00:00",
        },
    )
    assert put.status_code == 201, put.content

    # when: it is read (compiled, prepared statements, no models)
    got = writer.get(URL.format("c-7")).json()

    # then: every field as the PUT answered it, tags by name
    assert {name: got[name] for name in put.json()} == put.json()
    assert got["tags"] == ["Newsletter", "VIP"]
    assert got["metrics"]["orders_count"] == 0 and got["metrics"]["first_purchase_at"] is None


def test_get_tells_two_customers_apart(reader, merchant):
    # the compiled statements swap the customer in: each read answers its own customer
    CustomerFactory(merchant=merchant, external_id="c-1", first_name="Ann")
    CustomerFactory(merchant=merchant, external_id="c-2", first_name="Bob")

    names = [reader.get(URL.format(f"c-{n}")).json()["first_name"] for n in (1, 2, 1)]

    assert names == ["Ann", "Bob", "Ann"]


def test_put_then_get_round_trip(writer):
    writer.put(URL.format("c-9"), {"joined_at": "2024-03-04T05:06:07+00:00", "tier": "Silver"})

    body = writer.get(URL.format("c-9")).json()

    assert body["tier"] == "Silver" and body["segments"] == []
    assert dt.datetime.fromisoformat(body["joined_at"]) == dt.datetime(
        2024, 3, 4, 5, 6, 7, tzinfo=dt.UTC
    )
