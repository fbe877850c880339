"""Per-customer metrics, recomputed exactly from transactions and redemptions.

One SQL statement (`INSERT ... SELECT ... ON CONFLICT DO UPDATE`, which both PostgreSQL and
SQLite speak) recomputes the metrics of a batch of customers, or of a whole merchant. It is
a recomputation, not a delta, so it is exact whatever wrote the rows and however often it
runs; rows whose values did not change are not rewritten (no dead tuples to vacuum).

Callers run it inside the transaction that wrote the transactions, so readers never see
transactions without their metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from django.db import connection
from django.utils import timezone

from customers.models import Customer, CustomerMetrics, Redemption, Transaction
from customers.signals import customers_changed

BATCH_SIZE = 500

#: The computed columns of CustomerMetrics, in the order the upsert writes them.
METRIC_COLUMNS = (
    "orders_count",
    "gross_spend",
    "refunds_count",
    "refunds_total",
    "net_spend",
    "avg_order_value",
    "first_purchase_at",
    "last_purchase_at",
    "redemptions_count",
)


def _statement(scope_sql: str) -> str:
    """The upsert; `scope_sql` is a WHERE condition on a `customer_id`/`merchant_id` column."""
    metrics = CustomerMetrics._meta.db_table
    distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    current = ", ".join(f"{metrics}.{c}" for c in METRIC_COLUMNS)
    incoming = ", ".join(f"excluded.{c}" for c in METRIC_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*METRIC_COLUMNS, "updated_at"))
    # TRICKY: avg_order_value multiplies by 1.0 so SQLite does not divide integers; the
    # WHERE on the SELECT is also what lets SQLite parse INSERT ... SELECT ... ON CONFLICT.
    return f"""
        INSERT INTO {metrics} (customer_id, merchant_id, {", ".join(METRIC_COLUMNS)}, updated_at)
        SELECT c.id, c.merchant_id,
               COALESCE(t.orders_count, 0),
               COALESCE(t.gross_spend, 0),
               COALESCE(t.refunds_count, 0),
               COALESCE(t.refunds_total, 0),
               COALESCE(t.gross_spend, 0) - COALESCE(t.refunds_total, 0),
               CASE WHEN t.orders_count > 0
                    THEN ROUND(t.gross_spend * 1.0 / t.orders_count, 2) END,
               t.first_purchase_at,
               t.last_purchase_at,
               COALESCE(r.redemptions_count, 0),
               %s
        FROM {Customer._meta.db_table} c
        LEFT JOIN (
            SELECT customer_id,
                   SUM(CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END) AS orders_count,
                   SUM(CASE WHEN kind = 'purchase' THEN total ELSE 0 END) AS gross_spend,
                   SUM(CASE WHEN kind = 'refund' THEN 1 ELSE 0 END) AS refunds_count,
                   SUM(CASE WHEN kind = 'refund' THEN total ELSE 0 END) AS refunds_total,
                   MIN(CASE WHEN kind = 'purchase' THEN occurred_at END) AS first_purchase_at,
                   MAX(CASE WHEN kind = 'purchase' THEN occurred_at END) AS last_purchase_at
            FROM {Transaction._meta.db_table}
            WHERE {scope_sql}
            GROUP BY customer_id
        ) t ON t.customer_id = c.id
        LEFT JOIN (
            SELECT customer_id, COUNT(*) AS redemptions_count
            FROM {Redemption._meta.db_table}
            WHERE {scope_sql}
            GROUP BY customer_id
        ) r ON r.customer_id = c.id
        WHERE {scope_sql.replace("customer_id", "c.id").replace("merchant_id", "c.merchant_id")}
        ON CONFLICT (customer_id) DO UPDATE SET {updates}
        WHERE ({current}) {distinct} ({incoming})
    """


def _batches(ids: Iterable[int], size: int) -> Iterable[list[int]]:
    iterator = iter(ids)
    while batch := list(islice(iterator, size)):
        yield batch


def refresh_metrics(customer_ids: Iterable[int]) -> None:
    """Recompute the metrics of these customers (creating missing rows), then send
    `customers_changed` with their ids."""
    now = timezone.now()
    ids = frozenset(customer_ids)
    with connection.cursor() as cursor:
        for batch in _batches(sorted(ids), BATCH_SIZE):
            placeholders = ", ".join(["%s"] * len(batch))
            sql = _statement(f"customer_id IN ({placeholders})")
            cursor.execute(sql, [now, *batch, *batch, *batch])
    if ids:
        customers_changed.send(sender=CustomerMetrics, customer_ids=ids, merchant_id=None)


def refresh_merchant_metrics(merchant_id: int) -> None:
    """Recompute the metrics of every customer of a merchant in one statement, then send
    `customers_changed` with `customer_ids=None` and the merchant's id."""
    now = timezone.now()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and connection.in_atomic_block:
            # Stream the (customer_id, occurred_at) index instead of hashing every
            # customer's group in memory and spilling to disk at millions of customers.
            cursor.execute("SET LOCAL enable_hashagg = off")
        cursor.execute(_statement("merchant_id = %s"), [now, merchant_id, merchant_id, merchant_id])
    customers_changed.send(sender=CustomerMetrics, customer_ids=None, merchant_id=merchant_id)
