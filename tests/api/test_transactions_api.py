"""`POST /api/v1/transactions`: a batch of purchases and refunds with their line items,
validated and merged the import's way, all or nothing, idempotent by external id, scoped
to the token's merchant; metrics and memberships follow."""

import json
from decimal import Decimal

import pytest

from customers.models import CustomerMetrics, LineItem, Transaction
from customers.signals import customers_changed
from segments.models import SegmentMembership
from segments.services import segment_create
from tests.api.conftest import error_paths
from tests.factories import CustomerFactory, ProductFactory, TransactionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/transactions"
SPEND_100 = {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": 100}]}


def post(api, body):
    data = body if isinstance(body, str) else json.dumps(body)
    return api.client.post(URL, data=data, content_type="application/json", headers=api.headers)


def purchase(external_id, customer="c-1", total="60.00", **fields):
    return {
        "external_id": external_id,
        "customer": customer,
        "occurred_at": "2026-06-14T12:00:00",
        "total": total,
        **fields,
    }


@pytest.fixture
def ann(merchant):
    return CustomerFactory(merchant=merchant, external_id="c-1")


@pytest.fixture
def products(merchant):
    return [ProductFactory(merchant=merchant, sku=sku) for sku in ("P-1", "P-2")]


def test_a_batch_of_purchases_with_items_updates_metrics_and_memberships(
    writer, merchant, ann, products, django_capture_on_commit_callbacks
):
    # given: a dynamic segment of customers who spent 100 or more; Ann has spent nothing
    with django_capture_on_commit_callbacks(execute=True):
        big = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=SPEND_100)
    assert not SegmentMembership.objects.filter(segment=big).exists()
    items = [
        {"sku": "P-1", "quantity": 2, "amount": "40.00"},
        {"sku": "P-2", "quantity": 1, "amount": "20.00"},
    ]

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            writer,
            {"transactions": [purchase("t-1", items=items, branch=None), purchase("t-2")]},
        )

    # then
    assert response.status_code == 201, response.content
    assert response.json() == {
        "results": [
            {"external_id": "t-1", "status": "created"},
            {"external_id": "t-2", "status": "created"},
        ],
        "created": 2,
        "updated": 0,
        "unchanged": 0,
    }
    metrics = CustomerMetrics.objects.get(customer=ann)
    assert (metrics.orders_count, metrics.gross_spend) == (2, Decimal("120.00"))
    assert LineItem.objects.filter(transaction__external_id="t-1").count() == 2
    assert list(
        SegmentMembership.objects.filter(segment=big).values_list("customer", flat=True)
    ) == [ann.pk]


def test_a_repeated_batch_is_unchanged_and_writes_nothing(
    writer, ann, products, django_capture_on_commit_callbacks
):
    body = {
        "transactions": [purchase("t-1", items=[{"sku": "P-1", "quantity": 1, "amount": "60"}])]
    }
    assert post(writer, body).status_code == 201
    stored = Transaction.objects.get(external_id="t-1")
    lines = list(LineItem.objects.values_list("pk", flat=True))

    # when: the same batch again (the timestamp with an offset, the same instant)
    again = {**body["transactions"][0], "occurred_at": "2026-06-14T16:00:00+00:00"}
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(writer, {"transactions": [again]})

    # then
    assert response.status_code == 200, response.content
    assert response.json()["results"] == [{"external_id": "t-1", "status": "unchanged"}]
    assert (response.json()["created"], response.json()["unchanged"]) == (0, 1)
    assert Transaction.objects.get(pk=stored.pk).occurred_at == stored.occurred_at
    assert list(LineItem.objects.values_list("pk", flat=True)) == lines
    assert callbacks == []  # nothing committed, nothing announced


def test_an_existing_external_id_with_other_content_is_updated_as_the_import_does(
    writer, ann, products
):
    assert post(writer, {"transactions": [purchase("t-1")]}).status_code == 201

    response = post(
        writer,
        {
            "transactions": [
                purchase(
                    "t-1", total="75.50", items=[{"sku": "P-2", "quantity": 3, "amount": "75.5"}]
                ),
                purchase("t-2"),
            ]
        },
    )

    assert response.status_code == 201, response.content
    assert [r["status"] for r in response.json()["results"]] == ["updated", "created"]
    assert Transaction.objects.get(external_id="t-1").total == Decimal("75.50")
    assert CustomerMetrics.objects.get(customer=ann).gross_spend == Decimal("135.50")


def test_a_batch_with_bad_rows_writes_nothing_and_names_every_path(writer, ann, products):
    response = post(
        writer,
        {
            "transactions": [
                purchase("t-1"),
                purchase("t-2", total="-3"),
                purchase(
                    "t-3",
                    kind="gift",
                    items=[
                        {"sku": "P-1", "quantity": 0, "amount": "1"},
                        {"sku": "NOPE", "quantity": 1, "amount": "1"},
                    ],
                ),
                purchase("t-1", occurred_at="yesterday"),
            ]
        },
    )

    assert response.status_code == 422, response.content
    assert error_paths(response) == [
        "transactions.1.total",
        "transactions.2.kind",
        "transactions.2.items.0.quantity",
        "transactions.2.items.1.sku",
        "transactions.3.external_id",
        "transactions.3.occurred_at",
    ]
    messages = [error["message"] for error in response.json()["errors"]]
    assert "first at transactions.0" in messages[4]
    assert not Transaction.objects.exists() and not LineItem.objects.exists()


def test_refunds_count_apart_from_purchases(writer, ann):
    response = post(
        writer,
        {"transactions": [purchase("t-1", total="80"), purchase("r-1", total="30", kind="refund")]},
    )

    assert response.status_code == 201, response.content
    metrics = CustomerMetrics.objects.get(customer=ann)
    assert (metrics.orders_count, metrics.refunds_count) == (1, 1)
    assert (metrics.refunds_total, metrics.net_spend) == (Decimal("30.00"), Decimal("50.00"))


def test_another_merchants_customer_is_unknown_and_nothing_is_written(
    rival_writer, merchant, other_merchant, ann
):
    response = post(rival_writer, {"transactions": [purchase("t-1", customer="c-1")]})

    assert response.status_code == 422
    assert error_paths(response) == ["transactions.0.customer"]
    assert response.json()["errors"][0]["message"] == 'customer "c-1" does not exist'
    assert not Transaction.objects.exists()


def test_another_merchants_transaction_ids_are_not_touched(writer, merchant, other_merchant, ann):
    theirs = TransactionFactory(
        customer=CustomerFactory(merchant=other_merchant, external_id="c-1"), external_id="t-1"
    )

    response = post(writer, {"transactions": [purchase("t-1", total="99")]})

    assert response.json()["results"] == [{"external_id": "t-1", "status": "created"}]
    assert Transaction.objects.get(pk=theirs.pk).total == theirs.total
    assert Transaction.objects.get(merchant=merchant, external_id="t-1").customer == ann


def test_a_read_token_may_not_post(reader, ann):
    response = post(reader, {"transactions": [purchase("t-1")]})

    assert response.status_code == 403
    assert not Transaction.objects.exists()


def test_a_batch_holds_at_most_1000_transactions(writer, ann):
    rows = [purchase(f"t-{n}") for n in range(1001)]

    response = post(writer, {"transactions": rows})

    assert response.status_code == 422
    assert error_paths(response) == ["transactions"]
    assert "1000" in response.json()["errors"][0]["message"]
    assert not Transaction.objects.exists()


def test_a_batch_of_1000_is_taken(writer, ann):
    response = post(writer, {"transactions": [purchase(f"t-{n}") for n in range(1000)]})

    assert response.status_code == 201, response.content
    assert response.json()["created"] == 1000
    assert CustomerMetrics.objects.get(customer=ann).orders_count == 1000


@pytest.mark.parametrize(
    ("row", "path"),
    [
        ({"customer": "c-1"}, "transactions.0.external_id"),
        ({**purchase("t-1"), "total": 12.5}, "transactions.0.total"),
        ({**purchase("t-1"), "shoe": 1}, "transactions.0.shoe"),
        (
            {**purchase("t-1"), "items": [{"sku": "P-1", "quantity": 1}]},
            "transactions.0.items.0.amount",
        ),
        ({**purchase("t-1"), "branch": "NOPE"}, "transactions.0.branch"),
    ],
)
def test_type_and_reference_errors_name_their_path(writer, ann, row, path):
    response = post(writer, {"transactions": [row]})

    assert response.status_code == 422, response.content
    assert path in error_paths(response)


def test_the_items_of_a_transaction_with_a_bad_external_id_are_not_blamed(writer, ann, products):
    item = {"sku": "P-1", "quantity": 1, "amount": "1"}

    response = post(writer, {"transactions": [purchase("t" * 101, items=[item])]})

    assert response.status_code == 422
    assert error_paths(response) == ["transactions.0.external_id"]


def test_the_batch_announces_its_customers_once(writer, merchant, ann):
    bob = CustomerFactory(merchant=merchant, external_id="c-2")
    announced = []

    def listen(sender, customer_ids, merchant_id, **kwargs):
        announced.append(customer_ids)

    customers_changed.connect(listen)
    try:
        response = post(
            writer,
            {"transactions": [purchase("t-1"), purchase("t-2", customer="c-2"), purchase("t-3")]},
        )
    finally:
        customers_changed.disconnect(listen)

    assert response.status_code == 201, response.content
    assert announced == [frozenset({ann.pk, bob.pk})]
