"""The per-customer rows the segment engine reads, recomputed exactly from their sources.

- `CustomerMetrics`: purchase aggregates (from transactions and redemptions) plus a copy of
  the profile attributes rules read (from the customer and its tags), one row per customer.
- `CustomerProductStats`: units bought and latest order per customer and product (from the
  line items of orders).
- `CustomerSales`: orders, refunds and their totals per customer, branch and merchant-local
  day, month and quarter (from the transactions): the reports' summary.

Two statements (`INSERT ... SELECT ... ON CONFLICT DO UPDATE`, which both PostgreSQL and
SQLite speak, and a `DELETE` of product rows that no longer have a line item) recompute a
batch of customers, or a whole merchant. They are a recomputation, not a delta, so they
are exact whatever wrote the rows and however often they run; rows whose values did not
change are not rewritten (no dead tuples to vacuum, no index churn).

Callers run them inside the transaction that wrote the source rows, so readers never see a
purchase without its metrics. They only recompute: every writer goes through the services
`customers.services.customer_metrics_refresh()` / `merchant_metrics_refresh()`, which call
these and announce the change (`customers_changed`) for the segments to follow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from django.db import connection
from django.utils import timezone

from customers.models import (
    Customer,
    CustomerMetrics,
    CustomerProductStats,
    CustomerSales,
    CustomerTag,
    LineItem,
    Merchant,
    Redemption,
    Transaction,
)
from customers.sql import cents, day_diff, distinct, local_date, month_start, quarter_start

BATCH_SIZE = 500

#: The computed purchase columns of CustomerMetrics, in the order the upsert writes them.
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
    "line_items",
    "units",
    "items_amount",
    "purchase_days",
    "first_day_total",
    "first_gap_days",
    "redeemed_orders",
)

#: Customer columns copied to CustomerMetrics as they are (same names on both tables).
PROFILE_COLUMNS = (
    "gender",
    "customer_type",
    "tier_id",
    "home_branch_id",
    "birth_date",
    "joined_at",
    "email_opt_in",
    "sms_opt_in",
    "push_opt_in",
    "points_balance",
    "lifetime_points",
    "last_contacted_at",
)

#: Every column the upsert recomputes (`tag_ids` last).
COPIED_COLUMNS = (*METRIC_COLUMNS, *PROFILE_COLUMNS, "tag_ids")


def _tag_ids_sql() -> str:
    """The customer `c`'s tag ids, sorted: a bigint[] on PostgreSQL, JSON text on SQLite."""
    table = CustomerTag._meta.db_table
    if connection.vendor == "postgresql":
        return (
            f"ARRAY(SELECT ct.tag_id FROM {table} ct WHERE ct.customer_id = c.id "
            "ORDER BY ct.tag_id)::bigint[]"
        )
    return (
        f"(SELECT json_group_array(tag_id) FROM (SELECT ct.tag_id FROM {table} ct "
        "WHERE ct.customer_id = c.id ORDER BY ct.tag_id))"
    )


@dataclass(frozen=True)
class _Scope:
    """The customers a statement recomputes: a batch of ids, or every customer of a merchant."""

    ids: tuple[int, ...] = ()
    merchant_id: int | None = None

    def where(self, customer_col: str, merchant_col: str | None = None) -> tuple[str, list[int]]:
        """A condition on the given columns, and its parameters. A table without a merchant
        column reaches its merchant through the customer."""
        if self.merchant_id is None:
            return f"{customer_col} IN ({', '.join(['%s'] * len(self.ids))})", list(self.ids)
        if merchant_col is not None:
            return f"{merchant_col} = %s", [self.merchant_id]
        customers = Customer._meta.db_table
        return (
            f"{customer_col} IN (SELECT id FROM {customers} WHERE merchant_id = %s)",
            [self.merchant_id],
        )


def _purchase_days_sql(line_where: str) -> str:
    """Per customer of the scope, from their orders' merchant-local dates: the purchase
    days (distinct dates), the first day's order totals, and the days from the first order
    to the second (0 when the first day had two orders; NULL with one order). The
    predictions' inputs (`customers.scores`), kept here so a computation need not group
    every order by day."""
    day = local_date("t.occurred_at", "mm.time_zone")
    # TRICKY: on SQLite the (Python) date function would run twice per order, for the
    # select list and for the grouping, if the innermost query were flattened into its
    # parent; a LIMIT keeps it apart (-1: no limit).
    keep_apart = " LIMIT -1" if connection.vendor == "sqlite" else ""
    gap = day_diff("MIN(CASE WHEN day > first THEN day END)", "MIN(first)")
    return f"""
        SELECT customer_id, COUNT(*) AS purchase_days,
               SUM(CASE WHEN day = first THEN total ELSE 0 END) AS first_day_total,
               CASE WHEN MAX(CASE WHEN day = first THEN orders ELSE 0 END) >= 2 THEN 0
                    ELSE {gap} END AS first_gap_days
        FROM (
            SELECT customer_id, day, total, orders,
                   MIN(day) OVER (PARTITION BY customer_id) AS first
            FROM (
                SELECT customer_id, day, SUM(total) AS total, COUNT(*) AS orders
                FROM (
                    SELECT t.customer_id, {day} AS day, t.total
                    FROM {Transaction._meta.db_table} t
                    JOIN {Merchant._meta.db_table} mm ON mm.id = t.merchant_id
                    WHERE {line_where} AND t.kind = 'purchase'{keep_apart}
                ) orders
                GROUP BY customer_id, day
            ) days
        ) ranked
        GROUP BY customer_id
    """


def _metrics_statement(scope: _Scope, now: datetime) -> tuple[str, list[Any]]:
    """The upsert of the CustomerMetrics rows of `scope`."""
    metrics = CustomerMetrics._meta.db_table
    current = ", ".join(f"{metrics}.{c}" for c in COPIED_COLUMNS)
    incoming = ", ".join(f"excluded.{c}" for c in COPIED_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*COPIED_COLUMNS, "updated_at"))
    profile = ", ".join(f"c.{c}" for c in PROFILE_COLUMNS)
    txn_where, txn_params = scope.where("customer_id", "merchant_id")
    line_where, line_params = scope.where("t.customer_id", "t.merchant_id")
    customer_where, customer_params = scope.where("c.id", "c.merchant_id")
    # TRICKY: avg_order_value multiplies by 1.0 so SQLite does not divide integers; the
    # WHERE on the SELECT is also what lets SQLite parse INSERT ... SELECT ... ON CONFLICT.
    sql = f"""
        INSERT INTO {metrics} (customer_id, merchant_id, {", ".join(COPIED_COLUMNS)}, updated_at)
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
               COALESCE(li.line_items, 0),
               COALESCE(li.units, 0),
               COALESCE(li.items_amount, 0),
               COALESCE(pd.purchase_days, 0),
               COALESCE(pd.first_day_total, 0),
               pd.first_gap_days,
               COALESCE(t.redeemed_orders, 0),
               {profile},
               {_tag_ids_sql()},
               %s
        FROM {Customer._meta.db_table} c
        LEFT JOIN (
            SELECT customer_id,
                   SUM(CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END) AS orders_count,
                   SUM(CASE WHEN kind = 'purchase' THEN total ELSE 0 END) AS gross_spend,
                   SUM(CASE WHEN kind = 'refund' THEN 1 ELSE 0 END) AS refunds_count,
                   SUM(CASE WHEN kind = 'refund' THEN total ELSE 0 END) AS refunds_total,
                   MIN(CASE WHEN kind = 'purchase' THEN occurred_at END) AS first_purchase_at,
                   MAX(CASE WHEN kind = 'purchase' THEN occurred_at END) AS last_purchase_at,
                   SUM(CASE WHEN kind = 'purchase' AND points_redeemed > 0 THEN 1 ELSE 0 END)
                     AS redeemed_orders
            FROM {Transaction._meta.db_table}
            WHERE {txn_where}
            GROUP BY customer_id
        ) t ON t.customer_id = c.id
        LEFT JOIN (
            SELECT customer_id, COUNT(*) AS redemptions_count
            FROM {Redemption._meta.db_table}
            WHERE {txn_where}
            GROUP BY customer_id
        ) r ON r.customer_id = c.id
        LEFT JOIN (
            SELECT t.customer_id, COUNT(*) AS line_items, SUM(i.quantity) AS units,
                   SUM(i.amount) AS items_amount
            FROM {LineItem._meta.db_table} i
            JOIN {Transaction._meta.db_table} t ON t.id = i.transaction_id
            WHERE {line_where} AND t.kind = 'purchase'
            GROUP BY t.customer_id
        ) li ON li.customer_id = c.id
        LEFT JOIN ({_purchase_days_sql(line_where)}) pd ON pd.customer_id = c.id
        WHERE {customer_where}
        ON CONFLICT (customer_id) DO UPDATE SET {updates}
        WHERE ({current}) {distinct()} ({incoming})
    """
    return sql, [now, *txn_params, *txn_params, *line_params, *line_params, *customer_params]


def _product_stats_statements(scope: _Scope) -> list[tuple[str, list[Any]]]:
    """The upsert of the CustomerProductStats rows of `scope` from the line items of orders,
    then the delete of rows whose product the customer has no line item of any more."""
    stats = CustomerProductStats._meta.db_table
    txns, items = Transaction._meta.db_table, LineItem._meta.db_table
    txn_where, txn_params = scope.where("t.customer_id", "t.merchant_id")
    stats_where, stats_params = scope.where(f"{stats}.customer_id")
    columns = "customer_id, product_id, merchant_id, units, last_purchased_at"
    aggregate = f"""
        SELECT t.customer_id, li.product_id, MIN(t.merchant_id), SUM(li.quantity),
               MAX(t.occurred_at)
        FROM {items} li JOIN {txns} t ON t.id = li.transaction_id
        WHERE t.kind = 'purchase' AND {txn_where}
        GROUP BY t.customer_id, li.product_id
    """
    on_conflict = f"""
        ON CONFLICT (customer_id, product_id) DO UPDATE
        SET merchant_id = excluded.merchant_id, units = excluded.units,
            last_purchased_at = excluded.last_purchased_at
        WHERE ({stats}.merchant_id, {stats}.units, {stats}.last_purchased_at)
              {distinct()} (excluded.merchant_id, excluded.units, excluded.last_purchased_at)
    """
    if connection.vendor == "postgresql" and scope.merchant_id is None:
        # A few customers (a purchase): one statement. The aggregate is computed once, the
        # upsert runs as a CTE and the delete removes what the aggregate no longer has;
        # both see the same snapshot and never touch the same row.
        combined = f"""
            WITH fresh ({columns}) AS ({aggregate}),
            upserted AS (INSERT INTO {stats} ({columns}) SELECT * FROM fresh {on_conflict})
            DELETE FROM {stats}
            WHERE {stats_where} AND NOT EXISTS (
                SELECT 1 FROM fresh f
                WHERE f.customer_id = {stats}.customer_id AND f.product_id = {stats}.product_id)
        """
        return [(combined, [*txn_params, *stats_params])]
    # TRICKY: the WHERE of the aggregate is also what lets SQLite parse the upsert.
    upsert = f"INSERT INTO {stats} ({columns}) {aggregate} {on_conflict}"
    delete = f"""
        DELETE FROM {stats}
        WHERE {stats_where} AND NOT EXISTS (
            SELECT 1 FROM {items} li JOIN {txns} t ON t.id = li.transaction_id
            WHERE t.customer_id = {stats}.customer_id AND li.product_id = {stats}.product_id
              AND t.kind = 'purchase')
    """
    return [(upsert, txn_params), (delete, stats_params)]


def sale_parts(zone: str) -> str:
    """The select list of a transaction `t`'s part in its customer's sales rows (`zone`: the
    SQL of the merchant's time zone): merchant, customer, branch, local `day`, and `o`, `r`
    (an order, a refund) with `oc`, `rc` (their cents). The recomputation and the delta
    (`customers.metrics_delta`) both count a transaction this way."""
    return f"""t.merchant_id, t.customer_id, t.branch_id,
               {local_date("t.occurred_at", zone)} AS day,
               CASE WHEN t.kind = 'purchase' THEN 1 ELSE 0 END AS o,
               CASE WHEN t.kind = 'refund' THEN 1 ELSE 0 END AS r,
               CASE WHEN t.kind = 'purchase' THEN {cents("t.total")} ELSE 0 END AS oc,
               CASE WHEN t.kind = 'refund' THEN {cents("t.total")} ELSE 0 END AS rc"""


def _sales_statements(scope: _Scope) -> list[tuple[str, list[Any]]]:
    """Bring the CustomerSales rows of `scope` to the day, month and quarter sums of its
    transactions:
    delete the rows that are not exactly a fresh one, insert the fresh rows that are not
    there yet (a purchase adds or replaces its day's and month's rows, nothing else)."""
    sales, txns = CustomerSales._meta.db_table, Transaction._meta.db_table
    txn_where, txn_params = scope.where("t.customer_id", "t.merchant_id")
    sales_where, sales_params = scope.where(f"{sales}.customer_id", f"{sales}.merchant_id")
    keep_apart = " LIMIT -1" if connection.vendor == "sqlite" else ""  # see _purchase_days_sql
    month, quarter = month_start("day"), quarter_start("day")
    columns = (
        "merchant_id, customer_id, branch_id, span, starts_on, orders, refunds, gross_cents, "
        "refund_cents"
    )
    fresh = f"""
        WITH days AS (
            SELECT merchant_id, customer_id, branch_id, day, SUM(o) AS orders,
                   SUM(r) AS refunds, SUM(oc) AS gross_cents, SUM(rc) AS refund_cents
            FROM (
                SELECT {sale_parts("mm.time_zone")}
                FROM {txns} t JOIN {Merchant._meta.db_table} mm ON mm.id = t.merchant_id
                WHERE {txn_where}{keep_apart}
            ) x
            GROUP BY merchant_id, customer_id, branch_id, day
        ), fresh ({columns}) AS (
            SELECT merchant_id, customer_id, branch_id, 'd', day, orders, refunds, gross_cents,
                   refund_cents
            FROM days
            UNION ALL
            SELECT merchant_id, customer_id, branch_id, 'm', {month}, SUM(orders),
                   SUM(refunds), SUM(gross_cents), SUM(refund_cents)
            FROM days
            GROUP BY merchant_id, customer_id, branch_id, {month}
            UNION ALL
            SELECT merchant_id, customer_id, branch_id, 'q', {quarter}, SUM(orders),
                   SUM(refunds), SUM(gross_cents), SUM(refund_cents)
            FROM days
            GROUP BY merchant_id, customer_id, branch_id, {quarter}
        )
    """

    def same(a: str, b: str) -> str:
        exact = " AND ".join(
            f"{a}.{c} = {b}.{c}"
            for c in ("customer_id", "span", "starts_on", "orders", "refunds", "gross_cents")
        )
        return (
            f"{exact} AND {a}.refund_cents = {b}.refund_cents "
            f"AND NOT ({a}.branch_id {distinct()} {b}.branch_id)"
        )

    insert = f"""
        INSERT INTO {sales} ({columns})
        SELECT {columns} FROM fresh f
        WHERE NOT EXISTS (SELECT 1 FROM {sales} s WHERE {same("s", "f")})
    """
    delete = f"""
        DELETE FROM {sales}
        WHERE {sales_where} AND NOT EXISTS (SELECT 1 FROM fresh f WHERE {same("f", sales)})
    """
    if connection.vendor == "postgresql":
        # One statement: the aggregate once; the delete and the insert see the same snapshot,
        # so a changed row is deleted (old values) and inserted (new values).
        combined = f"{fresh}, gone AS ({delete}) {insert}"
        return [(combined, [*txn_params, *sales_params])]
    return [(f"{fresh} {delete}", [*txn_params, *sales_params]), (f"{fresh} {insert}", txn_params)]


def _refresh(scope: _Scope) -> None:
    with connection.cursor() as cursor:
        for sql, params in [
            _metrics_statement(scope, timezone.now()),
            *_product_stats_statements(scope),
            *_sales_statements(scope),
        ]:
            cursor.execute(sql, params)


def _batches(ids: Iterable[int], size: int) -> Iterable[tuple[int, ...]]:
    iterator = iter(ids)
    while batch := tuple(islice(iterator, size)):
        yield batch


def refresh_metrics(customer_ids: Iterable[int]) -> None:
    """Recompute the metrics rows (creating missing ones) and product stats of these
    customers. Recomputing only: writers go through `customers.services`
    (`customer_metrics_refresh`), which also announces the change."""
    ids = frozenset(customer_ids)
    for batch in _batches(sorted(ids), BATCH_SIZE):
        _refresh(_Scope(ids=batch))


def refresh_merchant_metrics(merchant_id: int) -> None:
    """Recompute the metrics rows and product stats of every customer of a merchant (three
    set-based statements). Recomputing only: writers go through `customers.services`
    (`merchant_metrics_refresh`), which also announces the change."""
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            # Stream the (customer_id, occurred_at) index instead of hashing every
            # customer's group in memory and spilling to disk at millions of customers.
            cursor.execute("SET LOCAL enable_hashagg = off")
    _refresh(_Scope(merchant_id=merchant_id))


def vacuum_segment_tables() -> None:
    """VACUUM (ANALYZE) the per-customer tables on PostgreSQL, after a bulk load.

    Counts read these tables' indexes alone only where the visibility map says a page is all
    visible, which only VACUUM records: straight after loading a million customers, a count
    visits the heap for every row (35 ms becomes 120 ms) until autovacuum passes. Runs
    outside any transaction (VACUUM cannot run inside one); a no-op on SQLite.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        for model in (CustomerMetrics, CustomerProductStats):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


def refresh_merchant_sales(merchant_id: int) -> None:
    """Recompute the CustomerSales rows of every customer of a merchant alone (the migration
    that added the table fills it with this; writers go through `refresh_merchant_metrics`,
    which recomputes them with the rest)."""
    with connection.cursor() as cursor:
        for sql, params in _sales_statements(_Scope(merchant_id=merchant_id)):
            cursor.execute(sql, params)
