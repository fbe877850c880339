"""Per-customer metrics stay exact on every single-object and bulk write."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.metrics import refresh_merchant_metrics, refresh_metrics
from customers.models import CustomerMetrics, Transaction
from tests.factories import (
    CustomerFactory,
    LineItemFactory,
    RedemptionFactory,
    TransactionFactory,
)

pytestmark = pytest.mark.django_db


def test_new_customer_has_zero_metrics(merchant):
    customer = CustomerFactory(merchant=merchant)

    metrics = CustomerMetrics.objects.get(customer=customer)

    assert metrics.orders_count == 0
    assert metrics.net_spend == Decimal("0")
    assert metrics.avg_order_value is None
    assert metrics.last_purchase_at is None


def test_purchases_refunds_and_redemptions_update_metrics_on_save(merchant):
    # given
    customer = CustomerFactory(merchant=merchant)
    first = timezone.now() - dt.timedelta(days=30)
    last = timezone.now() - dt.timedelta(days=2)

    # when
    TransactionFactory(customer=customer, occurred_at=first, total=Decimal("10.10"))
    TransactionFactory(customer=customer, occurred_at=last, total=Decimal("20.25"))
    TransactionFactory(customer=customer, refund=True, occurred_at=last, total=Decimal("5.05"))
    RedemptionFactory(customer=customer)

    # then
    m = CustomerMetrics.objects.get(customer=customer)
    assert m.orders_count == 2
    assert m.gross_spend == Decimal("30.35")
    assert m.refunds_count == 1
    assert m.refunds_total == Decimal("5.05")
    assert m.net_spend == Decimal("25.30")
    assert m.avg_order_value == Decimal("15.18")  # 30.35 / 2 = 15.175, rounded half away
    assert m.first_purchase_at == first
    assert m.last_purchase_at == last
    assert m.redemptions_count == 1


def test_deleting_and_moving_a_transaction_updates_both_customers(merchant):
    alice = CustomerFactory(merchant=merchant)
    bob = CustomerFactory(merchant=merchant)
    txn = TransactionFactory(customer=alice, total=Decimal("40.00"))

    txn.customer = bob
    txn.save()

    assert CustomerMetrics.objects.get(customer=alice).orders_count == 0
    assert CustomerMetrics.objects.get(customer=bob).net_spend == Decimal("40.00")

    txn.delete()
    assert CustomerMetrics.objects.get(customer=bob).orders_count == 0
    assert CustomerMetrics.objects.get(customer=bob).avg_order_value is None


def test_bulk_writes_are_exact_after_refresh(merchant):
    customers = CustomerFactory.create_batch(3, merchant=merchant)
    now = timezone.now()
    Transaction.objects.bulk_create(
        Transaction(
            merchant=merchant,
            customer=c,
            external_id=f"bulk-{c.pk}-{i}",
            occurred_at=now - dt.timedelta(days=i),
            total=Decimal("1.10") * (i + 1),
        )
        for c in customers
        for i in range(3)
    )
    assert CustomerMetrics.objects.filter(orders_count=3).count() == 0

    refresh_metrics([customers[0].pk])
    assert CustomerMetrics.objects.get(customer=customers[0]).gross_spend == Decimal("6.60")
    assert CustomerMetrics.objects.get(customer=customers[1]).orders_count == 0

    refresh_merchant_metrics(merchant.pk)
    assert CustomerMetrics.objects.filter(orders_count=3, gross_spend=Decimal("6.60")).count() == 3


def test_metrics_rows_are_recreated_when_missing(merchant):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("3.00"))
    CustomerMetrics.objects.filter(customer=customer).delete()

    refresh_metrics([customer.pk])

    assert CustomerMetrics.objects.get(customer=customer).net_spend == Decimal("3.00")


def test_the_write_chain_announces_each_change_once_per_merchant(
    merchant, other_merchant, monkeypatch
):
    from customers import services
    from customers.signals import customers_changed

    heard = []

    def receiver(sender, customer_ids, merchant_id, **kwargs):
        heard.append((customer_ids, merchant_id))

    customer = CustomerFactory(merchant=merchant)
    theirs = CustomerFactory(merchant=other_merchant)
    customers_changed.connect(receiver)
    try:
        # a single write (save) of a purchase: its customer
        TransactionFactory(customer=customer)
        # a bulk recompute: one merchant-level change
        services.merchant_metrics_refresh(merchant_id=merchant.pk)
        # ids of two merchants: one announcement each
        services.customer_metrics_refresh(customer_ids=[customer.pk, theirs.pk])
        # more than the threshold: merchant-level
        monkeypatch.setattr(services, "CHANGE_BATCH_MAX", 0)
        services.customer_metrics_refresh(customer_ids=[customer.pk])
        # nothing changed: nothing said
        services.customer_metrics_refresh(customer_ids=[])
        # the recomputation alone says nothing
        refresh_metrics([customer.pk])
        refresh_merchant_metrics(merchant.pk)
    finally:
        customers_changed.disconnect(receiver)

    assert heard == [
        (frozenset({customer.pk}), merchant.pk),
        (None, merchant.pk),
        (frozenset({customer.pk}), merchant.pk),
        (frozenset({theirs.pk}), other_merchant.pk),
        (None, merchant.pk),
    ]


def test_a_bulk_update_of_many_customers_is_one_merchant_level_change(merchant, monkeypatch):
    # e.g. a campaign recording when it reached 100,000 customers
    from customers import services
    from customers.signals import customers_changed

    heard = []

    def receiver(sender, customer_ids, merchant_id, **kwargs):
        heard.append((customer_ids, merchant_id))

    customers = [CustomerFactory(merchant=merchant) for _ in range(3)]
    other = CustomerFactory()
    reached = timezone.now()
    monkeypatch.setattr(services, "CHANGE_BATCH_MAX", 2)
    customers_changed.connect(receiver)
    try:
        count = services.customers_update(
            merchant=merchant,
            customer_ids=[c.pk for c in customers] + [other.pk],
            last_contacted_at=reached,
        )
    finally:
        customers_changed.disconnect(receiver)

    assert count == 3  # the other merchant's customer is left alone
    assert heard == [(None, merchant.pk)]
    assert set(
        CustomerMetrics.objects.filter(customer__in=customers).values_list(
            "last_contacted_at", flat=True
        )
    ) == {reached}
    assert other.__class__.objects.get(pk=other.pk).last_contacted_at is None


def test_line_items_of_orders_are_counted_on_the_metrics_row(merchant):
    # given two orders with line items and a refund with one
    customer = CustomerFactory(merchant=merchant)
    order = TransactionFactory(customer=customer)
    LineItemFactory(transaction=order, quantity=3, amount=Decimal("30.00"))
    LineItemFactory(transaction=order, quantity=1, amount=Decimal("5.50"))
    second = TransactionFactory(customer=customer)
    LineItemFactory(transaction=second, quantity=2, amount=Decimal("8.00"))
    refund = TransactionFactory(customer=customer, kind="refund")
    LineItemFactory(transaction=refund, quantity=9, amount=Decimal("99.00"))

    # then the orders' line items, units and amounts, the refund's left out
    row = CustomerMetrics.objects.get(pk=customer.pk)
    assert (row.line_items, row.units, row.items_amount) == (3, 6, Decimal("43.50"))

    # when a line item goes, the row follows
    second.items.get().delete()
    row.refresh_from_db()
    assert (row.line_items, row.units, row.items_amount) == (2, 4, Decimal("35.50"))
