"""New transactions added to the per-customer rows by delta (`customers.metrics_delta`, on
PostgreSQL) leave exactly the rows a recomputation from the whole history gives: random
histories, random batches of new purchases and refunds (backdated before the first order,
on the first day, between the first and second days, several on one day, at 23:30 local
time, with and without a branch), each batch written through `transactions_write` and
compared, row for row, with `refresh_merchant_metrics` afterwards."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from customers.imports.batch import CREATED, BatchTransaction, transactions_write
from customers.metrics import METRIC_COLUMNS, refresh_merchant_metrics
from customers.metrics_delta import transactions_add
from customers.models import (
    CustomerMetrics,
    CustomerProductStats,
    Merchant,
    Transaction,
)
from tests.customers.test_customer_sales import stored_sales
from tests.factories import BranchFactory, CustomerFactory, MerchantFactory, ProductFactory

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="deltas are kept on PostgreSQL only"
)

START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)  # the DST change in Toronto is 8 March


def snapshot(merchant: Merchant) -> dict[str, Any]:
    """Every derived row of the merchant, comparable."""
    metrics = {
        pk: values
        for pk, *values in CustomerMetrics.objects.filter(merchant=merchant)
        .order_by("pk")
        .values_list("pk", *METRIC_COLUMNS)
    }
    stats = sorted(
        CustomerProductStats.objects.filter(merchant=merchant).values_list(
            "customer_id", "product_id", "units", "last_purchased_at"
        )
    )
    return {"metrics": metrics, "stats": stats, "sales": stored_sales(merchant)}


class Shop:
    def __init__(self, merchant: Merchant, rng: random.Random) -> None:
        self.merchant = merchant
        self.rng = rng
        self.customers = [
            CustomerFactory(merchant=merchant, external_id=f"c-{n}") for n in range(12)
        ]
        self.branches: list[str | None] = [
            None,
            *(str(BranchFactory(merchant=merchant).code) for _ in range(2)),
        ]
        self.skus = [str(ProductFactory(merchant=merchant).sku) for _ in range(4)]
        self.serial = 0

    def when(self) -> dt.datetime:
        """Within 40 days of START, often at 23:30 or 00:30 Toronto time (a day's edge)."""
        day = START + dt.timedelta(days=self.rng.randrange(40))
        if self.rng.random() < 0.3:
            edge = self.rng.choice([dt.time(23, 30), dt.time(0, 30)])
            local = day.astimezone(self.merchant.tzinfo).replace(hour=edge.hour, minute=edge.minute)
            return local.astimezone(dt.UTC)
        return day + dt.timedelta(minutes=self.rng.randrange(-600, 600))

    def row(self, customer: str | None = None) -> BatchTransaction:
        rng = self.rng
        self.serial += 1
        kind = "refund" if rng.random() < 0.15 else "purchase"
        total = Decimal(rng.randrange(0, 30000)) / 100
        items: list[dict[str, str | None]] = []
        if kind == "purchase" and rng.random() < 0.8:
            items = [
                {
                    "sku": rng.choice(self.skus),
                    "quantity": str(rng.randrange(1, 4)),
                    "amount": str(Decimal(rng.randrange(0, 10000)) / 100),
                }
                for _ in range(rng.randrange(1, 4))
            ]
        branch: str | None = rng.choice(self.branches)
        cells: dict[str, str | None] = {
            "external_id": f"t-{self.serial}",
            "customer_external_id": customer or str(rng.choice(self.customers).external_id),
            "occurred_at": self.when().isoformat(),
            "kind": kind,
            "total": str(total),
            "branch": branch,
            "points_redeemed": str(rng.choice([0, 0, 50])),
        }
        return BatchTransaction(cells=cells, items=items)

    def write(self, rows: list[BatchTransaction]) -> None:
        result = transactions_write(merchant=self.merchant, transactions=rows)
        assert result.ok, result.errors
        assert set(result.statuses) == {CREATED}


@postgres_only
@pytest.mark.parametrize("seed", range(6))
def test_random_batches_added_by_delta_equal_the_recomputation(seed):
    # given: a shop whose customers have random histories (some have none)
    merchant = MerchantFactory()
    shop = Shop(merchant, random.Random(seed))
    shop.write([shop.row() for _ in range(30)])
    for _ in range(4):
        # when: a batch of new transactions (several for some customers) is added by delta
        rows = [shop.row() for _ in range(shop.rng.randrange(1, 25))]
        shop.write(rows)
        added = snapshot(merchant)
        # then: recomputing every customer's rows from scratch changes nothing
        refresh_merchant_metrics(merchant.pk)
        assert snapshot(merchant) == added


@postgres_only
def test_the_first_days_follow_a_purchase_before_on_and_after_the_first_day(merchant):
    # given: Ann's one order on 10 March (local), Bob's two on 10 March
    ann = CustomerFactory(merchant=merchant, external_id="ann")
    bob = CustomerFactory(merchant=merchant, external_id="bob")
    shop = Shop(merchant, random.Random(1))

    def order(customer: str, when: str, total: str) -> BatchTransaction:
        shop.serial += 1
        cells: dict[str, str | None] = {
            "external_id": f"o-{shop.serial}",
            "customer_external_id": customer,
            "occurred_at": when,
            "total": total,
        }
        return BatchTransaction(cells=cells)

    shop.write([order("ann", "2026-03-10T12:00:00", "10.00")])
    shop.write(
        [order("bob", "2026-03-10T09:00:00", "5.00"), order("bob", "2026-03-10T18:00:00", "6")]
    )

    def firsts(customer: Any) -> tuple[int, Decimal, int | None]:
        row = CustomerMetrics.objects.get(pk=customer.pk)
        return row.purchase_days, row.first_day_total, row.first_gap_days

    assert firsts(ann) == (1, Decimal("10.00"), None)
    assert firsts(bob) == (1, Decimal("11.00"), 0)

    # when / then: a later day is Ann's second (gap 5), an earlier one her new first (gap 3)
    shop.write([order("ann", "2026-03-15T12:00:00", "1.00")])
    assert firsts(ann) == (2, Decimal("10.00"), 5)
    shop.write([order("ann", "2026-03-07T23:30:00", "2.00")])
    assert firsts(ann) == (3, Decimal("2.00"), 3)
    # a second order on her first day: gap 0, the day's total is both orders'
    shop.write([order("ann", "2026-03-07T08:00:00", "3.00")])
    assert firsts(ann) == (3, Decimal("5.00"), 0)
    # Bob: an order between is not a new first day; one before it is, with one order
    shop.write([order("bob", "2026-03-12T12:00:00", "1.00")])
    assert firsts(bob) == (2, Decimal("11.00"), 0)
    shop.write([order("bob", "2026-03-01T12:00:00", "4.00")])
    assert firsts(bob) == (3, Decimal("4.00"), 9)

    added = snapshot(merchant)
    refresh_merchant_metrics(merchant.pk)
    assert snapshot(merchant) == added


@postgres_only
def test_a_customer_without_a_metrics_row_is_recomputed(merchant):
    # given: a customer whose row is missing (written around the chain)
    shop = Shop(merchant, random.Random(2))
    ann = shop.customers[0]
    CustomerMetrics.objects.filter(pk=ann.pk).delete()

    # when
    shop.write([shop.row(customer=ann.external_id) for _ in range(3)])

    # then: the row exists and is what a recomputation gives
    assert CustomerMetrics.objects.filter(pk=ann.pk).exists()
    added = snapshot(merchant)
    refresh_merchant_metrics(merchant.pk)
    assert snapshot(merchant) == added


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite's fallback")
def test_sqlite_recomputes_instead(merchant):
    # given: a purchase stored
    shop = Shop(merchant, random.Random(3))
    shop.write([shop.row()])
    ids = list(Transaction.objects.filter(merchant=merchant).values_list("pk", flat=True))

    # when
    answer = transactions_add(merchant=merchant, transaction_ids=ids)

    # then: nothing was done, and the batch path recomputes, exactly
    assert answer is None
    shop.write([shop.row() for _ in range(10)])
    added = snapshot(merchant)
    refresh_merchant_metrics(merchant.pk)
    assert snapshot(merchant) == added
