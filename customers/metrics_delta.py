"""New transactions added to the per-customer rows by delta (PostgreSQL), instead of
recomputing each buyer's whole history.

`customers.metrics` recomputes a customer's rows from every transaction and line item they
have: exact whatever changed, but at a million customers a batch of 500 purchases reads
tens of thousands of scattered pages for it. When a write only *adds* transactions (the
API's `POST /transactions` of new external ids, the common case), the rows can follow from
the new transactions alone, exactly:

- sums and counts add; first and last purchase are a minimum and a maximum;
- the purchase days, the first day's total and the days to the second purchase day (the
  predictions' inputs) follow from the stored metrics row (its first purchase's local day,
  its count of orders and its first gap, which together say how many orders the first day
  had and which day was the second) plus one lookup of the daily sales rows, which say
  whether a new purchase's day already had an order;
- product stats add units and keep the latest order;
- the daily, monthly and quarterly sales rows add to the row of their key or start one.

PostgreSQL only: on SQLite money is floating point, so sums kept by adding would drift
from the recomputed ones; the embedded database recomputes (`transactions_add` answers
False and the caller falls back). `tests/customers/test_metrics_delta.py` applies random
batches both ways and compares every row.

Preconditions, which the caller guarantees: the transactions were inserted in the current
transaction together with their line items, and the customers' rows were exact before
(the write chain's invariant).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Field
from django.utils import timezone

from customers.metrics import METRIC_COLUMNS, refresh_metrics, sale_parts
from customers.models import (
    CustomerMetrics,
    CustomerProductStats,
    CustomerSales,
    LineItem,
    Merchant,
    Transaction,
    TransactionKind,
)
from customers.sql import local_date, month_start, quarter_start

PURCHASE, REFUND = TransactionKind.PURCHASE.value, TransactionKind.REFUND.value

#: The CustomerMetrics columns a delta rewrites: the recomputed ones but the two that follow
#: in SQL from these (with the recomputation's own expressions) and the redemptions, which
#: transactions do not change.
_WRITTEN = tuple(
    c for c in METRIC_COLUMNS if c not in ("net_spend", "avg_order_value", "redemptions_count")
)


@dataclass
class _Row:
    """A customer's metrics, as stored and then as the delta leaves them."""

    orders_count: int
    gross_spend: Decimal
    refunds_count: int
    refunds_total: Decimal
    first_purchase_at: dt.datetime | None
    last_purchase_at: dt.datetime | None
    line_items: int
    units: int
    items_amount: Decimal
    purchase_days: int
    first_day_total: Decimal
    first_gap_days: int | None
    redeemed_orders: int
    first_day: dt.date | None  # the merchant-local day of first_purchase_at


@dataclass
class _New:
    """A customer's new transactions, summed, and their purchases by local day."""

    orders: int = 0
    gross: Decimal = Decimal(0)
    refunds: int = 0
    refunds_total: Decimal = Decimal(0)
    first_at: dt.datetime | None = None
    last_at: dt.datetime | None = None
    line_items: int = 0
    units: int = 0
    items_amount: Decimal = Decimal(0)
    redeemed_orders: int = 0
    day_orders: dict[dt.date, int] = field(default_factory=lambda: defaultdict(int))
    day_totals: dict[dt.date, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def _first_days(row: _Row, new: _New, had_orders: set[dt.date]) -> None:
    """Move the purchase days, first day's total and first gap of `row` over the new
    purchases. `had_orders`: the new purchases' days that already had an order.

    The stored row says enough about the first two purchase days: with no order there are
    none; with one order the first day had one; a first gap of 0 means the first day had
    two or more; a gap g > 0 means it had one and the second day is g days later."""
    days = new.day_orders
    if not days:
        return
    old_first, gap = row.first_day, row.first_gap_days
    old_first_orders = 0 if row.orders_count == 0 else 2 if gap == 0 else 1
    old_second = old_first + dt.timedelta(days=gap) if old_first and gap else None
    row.purchase_days += sum(1 for day in days if day not in had_orders)
    first = min(days) if old_first is None else min(old_first, min(days))
    same = first == old_first
    first_orders = (old_first_orders if same else 0) + days.get(first, 0)
    row.first_day_total = (row.first_day_total if same else Decimal(0)) + new.day_totals.get(
        first, Decimal(0)
    )
    row.first_day = first
    if first_orders >= 2:
        row.first_gap_days = 0
        return
    later = [day for day in days if day > first]
    if old_first is not None and old_first > first:
        later.append(old_first)
    if same and old_second is not None:
        later.append(old_second)
    row.first_gap_days = (min(later) - first).days if later else None


def _add(row: _Row, new: _New) -> None:
    row.orders_count += new.orders
    row.gross_spend += new.gross
    row.refunds_count += new.refunds
    row.refunds_total += new.refunds_total
    if new.first_at is not None:
        if row.first_purchase_at is None or new.first_at < row.first_purchase_at:
            row.first_purchase_at = new.first_at
        assert new.last_at is not None  # set with first_at
        if row.last_purchase_at is None or new.last_at > row.last_purchase_at:
            row.last_purchase_at = new.last_at
    row.line_items += new.line_items
    row.units += new.units
    row.items_amount += new.items_amount
    row.redeemed_orders += new.redeemed_orders


def _read_new(cursor: CursorWrapper, zone: str, ids: list[int]) -> dict[int, _New]:
    sql = f"""
        SELECT t.customer_id, t.kind, t.total, t.occurred_at,
               {local_date("t.occurred_at", "%s")}, t.points_redeemed,
               COALESCE(li.n, 0), COALESCE(li.units, 0), COALESCE(li.amount, 0)
        FROM {Transaction._meta.db_table} t
        LEFT JOIN LATERAL (
            SELECT COUNT(*) AS n, SUM(quantity) AS units, SUM(amount) AS amount
            FROM {LineItem._meta.db_table} WHERE transaction_id = t.id
        ) li ON t.kind = %s
        WHERE t.id = ANY(%s)
    """
    news: dict[int, _New] = defaultdict(_New)
    cursor.execute(sql, [zone, PURCHASE, ids])
    for customer_id, kind, total, at, day, redeemed, n, units, amount in cursor.fetchall():
        new = news[customer_id]
        if kind == REFUND:
            new.refunds += 1
            new.refunds_total += total
        if kind != PURCHASE:
            continue
        new.orders += 1
        new.gross += total
        new.first_at = at if new.first_at is None else min(new.first_at, at)
        new.last_at = at if new.last_at is None else max(new.last_at, at)
        new.line_items += n
        new.units += units
        new.items_amount += amount
        new.redeemed_orders += 1 if redeemed > 0 else 0
        new.day_orders[day] += 1
        new.day_totals[day] += total
    return news


def transactions_add(*, merchant: Merchant, transaction_ids: Sequence[int]) -> set[int] | None:
    """Add these new transactions (the merchant's, just inserted with their line items) to
    their customers' metrics rows, product stats and sales rows by delta, in the caller's
    transaction. Returns the customers whose rows changed, or None on SQLite (the caller
    recomputes). A customer without a metrics row yet is recomputed instead."""
    if connection.vendor != "postgresql":
        return None
    ids = sorted(set(transaction_ids))
    if not ids:
        return set()
    metrics, sales = CustomerMetrics._meta.db_table, CustomerSales._meta.db_table
    zone = merchant.time_zone
    with connection.cursor() as cursor:
        news = _read_new(cursor, zone, ids)
        customers = sorted(news)
        # Locked: a concurrent writer of the same customer (an edit in the admin) waits.
        cursor.execute(
            f"""
            SELECT customer_id, {", ".join(_WRITTEN)}, {local_date("first_purchase_at", "%s")}
            FROM {metrics} WHERE customer_id = ANY(%s) ORDER BY customer_id FOR UPDATE
            """,
            [zone, customers],
        )
        rows = {r[0]: _Row(*r[1:]) for r in cursor.fetchall()}
        # The new purchases' days that already had an order (before the sales rows move).
        cursor.execute(
            f"""
            SELECT DISTINCT s.customer_id, s.starts_on
            FROM {sales} s JOIN {Transaction._meta.db_table} t
              ON s.customer_id = t.customer_id
             AND s.starts_on = {local_date("t.occurred_at", "%s")}
            WHERE t.id = ANY(%s) AND t.kind = %s AND s.span = 'd' AND s.orders > 0
            """,
            [zone, ids, PURCHASE],
        )
        had_orders: dict[int, set[dt.date]] = defaultdict(set)
        for customer_id, day in cursor.fetchall():
            had_orders[customer_id].add(day)
        for customer_id, row in rows.items():
            new = news[customer_id]
            _first_days(row, new, had_orders[customer_id])
            _add(row, new)
        if rows:
            _write_metrics(cursor, rows)
        _add_product_stats(cursor, ids)
        _add_sales(cursor, zone, ids)
    missing = set(customers) - set(rows)
    if missing:
        refresh_metrics(missing)
    return set(customers)


def _write_metrics(cursor: CursorWrapper, rows: dict[int, _Row]) -> None:
    """One UPDATE from parallel arrays (one statement, whatever the number of rows)."""
    metrics = CustomerMetrics._meta.db_table
    columns = ("customer_id", *_WRITTEN)
    types = ["bigint"] + [
        cast(Field, CustomerMetrics._meta.get_field(c)).db_type(connection) for c in _WRITTEN
    ]
    arrays = ", ".join(f"%s::{db_type}[]" for db_type in types)
    sets = ", ".join(f"{c} = v.{c}" for c in _WRITTEN)
    sql = f"""
        UPDATE {metrics} m SET {sets},
            net_spend = v.gross_spend - v.refunds_total,
            avg_order_value = CASE WHEN v.orders_count > 0
                                   THEN ROUND(v.gross_spend * 1.0 / v.orders_count, 2) END,
            updated_at = %s
        FROM unnest({arrays}) AS v({", ".join(columns)})
        WHERE m.customer_id = v.customer_id
    """
    ordered = sorted(rows.items())
    params: list[Any] = [timezone.now(), [pk for pk, _ in ordered]]
    params += [[getattr(row, c) for _, row in ordered] for c in _WRITTEN]
    cursor.execute(sql, params)


def _add_product_stats(cursor: CursorWrapper, ids: list[int]) -> None:
    stats = CustomerProductStats._meta.db_table
    sql = f"""
        INSERT INTO {stats} AS s (customer_id, product_id, merchant_id, units, last_purchased_at)
        SELECT t.customer_id, li.product_id, MIN(t.merchant_id), SUM(li.quantity),
               MAX(t.occurred_at)
        FROM {LineItem._meta.db_table} li JOIN {Transaction._meta.db_table} t
          ON t.id = li.transaction_id
        WHERE t.id = ANY(%s) AND t.kind = %s
        GROUP BY t.customer_id, li.product_id
        ON CONFLICT (customer_id, product_id) DO UPDATE
        SET units = s.units + excluded.units,
            last_purchased_at = GREATEST(s.last_purchased_at, excluded.last_purchased_at)
    """
    cursor.execute(sql, [ids, PURCHASE])


def _add_sales(cursor: CursorWrapper, zone: str, ids: list[int]) -> None:
    """The new transactions' day, month and quarter sums added to the rows of their keys
    (customer, branch, span, start), or inserted as new rows: one statement, whose update
    and insert see the same snapshot and never the same key."""
    sales = CustomerSales._meta.db_table
    columns = (
        "merchant_id, customer_id, branch_id, span, starts_on, orders, refunds, gross_cents, "
        "refund_cents"
    )
    month, quarter = month_start("day"), quarter_start("day")
    sums = "SUM(o), SUM(r), SUM(oc), SUM(rc)"
    keys = ("customer_id", "span", "starts_on")
    same = " AND ".join(f"s.{k} = d.{k}" for k in keys)
    sql = f"""
        WITH x AS (
            SELECT {sale_parts("%s")}
            FROM {Transaction._meta.db_table} t WHERE t.id = ANY(%s)
        ), d ({columns}) AS (
            SELECT merchant_id, customer_id, branch_id, 'd', day, {sums}
            FROM x GROUP BY merchant_id, customer_id, branch_id, day
            UNION ALL
            SELECT merchant_id, customer_id, branch_id, 'm', {month}, {sums}
            FROM x GROUP BY merchant_id, customer_id, branch_id, {month}
            UNION ALL
            SELECT merchant_id, customer_id, branch_id, 'q', {quarter}, {sums}
            FROM x GROUP BY merchant_id, customer_id, branch_id, {quarter}
        ), updated AS (
            UPDATE {sales} s
            SET orders = s.orders + d.orders, refunds = s.refunds + d.refunds,
                gross_cents = s.gross_cents + d.gross_cents,
                refund_cents = s.refund_cents + d.refund_cents
            FROM d WHERE {same} AND s.branch_id IS NOT DISTINCT FROM d.branch_id
            RETURNING s.customer_id, s.branch_id, s.span, s.starts_on
        )
        INSERT INTO {sales} ({columns})
        SELECT {columns} FROM d
        WHERE NOT EXISTS (
            SELECT 1 FROM updated s
            WHERE {same} AND s.branch_id IS NOT DISTINCT FROM d.branch_id)
    """
    cursor.execute(sql, [zone, ids])
