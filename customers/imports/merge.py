"""Merging the staged rows into the merchant's tables, set-based: updates only where a value
changed, inserts for new keys, line items replaced as sets, then the metrics of the customers
touched (or of the whole merchant, when many)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from customers.imports.reading import Context, phase
from customers.imports.report import FileCounts
from customers.imports.specs import FILE_ORDER, SPECS, TAGS_TABLE
from customers.models import (
    Branch,
    Customer,
    CustomerTag,
    LineItem,
    Product,
    Redemption,
    Transaction,
)
from customers.services import (
    customer_metrics_add,
    customer_metrics_refresh,
    merchant_metrics_refresh,
)

#: Above this many staged customers + transactions + redemptions, the metrics of the whole
#: merchant are recomputed in one statement rather than customer by customer.
MERCHANT_REFRESH_THRESHOLD = 20_000
#: PostgreSQL: a merge of at least this many rows refreshes the planner statistics of the
#: tables it reads and writes first (see `_analyze`).
ANALYZE_THRESHOLD = 5_000


@dataclass(frozen=True)
class _Merge:
    """How staged rows of one file become rows of one table.

    `columns` are (target column, value for an existing row, value for a new row); the
    expressions may use `t` (the stored row), `s` (the staged row) and the `joins`' aliases.
    Optional columns use `COALESCE(s.col, t.col)`: not given keeps the stored value.
    """

    spec: str
    model: type[Any]
    key: str
    columns: tuple[tuple[str, str, str], ...]
    joins: str = ""


def _keep(column: str, default: str, staged: str | None = None) -> tuple[str, str, str]:
    """An optional column: not given keeps the stored value, or takes `default` when new."""
    source = f"s.{staged or column}"
    return (column, f"COALESCE({source}, t.{column})", f"COALESCE({source}, {default})")


def _merges(mid: int) -> dict[str, _Merge]:
    branch_join = "LEFT JOIN {table} b ON b.merchant_id = {mid} AND b.code = s.{column}"
    customer_join = (
        f"JOIN {Customer._meta.db_table} c "
        f"ON c.merchant_id = {mid} AND c.external_id = s.customer_external_id"
    )
    branches = Branch._meta.db_table
    return {
        "branches": _Merge("branches", Branch, "code", (("name", "s.name", "s.name"),)),
        "products": _Merge(
            "products",
            Product,
            "sku",
            (
                ("name", "s.name", "s.name"),
                _keep("product_type", "''"),
                _keep("brand", "''"),
                _keep("category", "''"),
                _keep("price", "NULL"),
            ),
        ),
        "customers": _Merge(
            "customers",
            Customer,
            "external_id",
            (
                _keep("first_name", "''"),
                _keep("last_name", "''"),
                _keep("email", "''"),
                _keep("phone", "''"),
                _keep("gender", "'unspecified'"),
                _keep("birth_date", "NULL"),
                _keep("customer_type", "''"),
                _keep("tier_id", "NULL", staged="tier"),
                ("joined_at", "s.joined_at", "s.joined_at"),
                ("home_branch_id", "COALESCE(b.id, t.home_branch_id)", "b.id"),
                _keep("email_opt_in", "false"),
                _keep("sms_opt_in", "false"),
                _keep("push_opt_in", "false"),
                _keep("points_balance", "0"),
                _keep("lifetime_points", "0"),
                _keep("last_contacted_at", "NULL"),
            ),
            joins=branch_join.format(table=branches, mid=mid, column="home_branch"),
        ),
        "transactions": _Merge(
            "transactions",
            Transaction,
            "external_id",
            (
                ("customer_id", "c.id", "c.id"),
                ("occurred_at", "s.occurred_at", "s.occurred_at"),
                _keep("kind", "'purchase'"),
                ("total", "s.total", "s.total"),
                ("branch_id", "COALESCE(b.id, t.branch_id)", "b.id"),
                _keep("points_earned", "0"),
                _keep("points_redeemed", "0"),
            ),
            joins=customer_join
            + " "
            + branch_join.format(table=branches, mid=mid, column="branch"),
        ),
        "redemptions": _Merge(
            "redemptions",
            Redemption,
            "external_id",
            (
                ("customer_id", "c.id", "c.id"),
                ("reward", "s.reward", "s.reward"),
                _keep("points", "0"),
                ("redeemed_at", "s.redeemed_at", "s.redeemed_at"),
            ),
            joins=customer_join,
        ),
    }


def _changed_condition(ctx: Context, merge: _Merge) -> str:
    current = ", ".join(f"t.{col}" for col, _, _ in merge.columns)
    incoming = ", ".join(update for _, update, _ in merge.columns)
    return f"({current}) {ctx.staging.distinct} ({incoming})"


def _merge_rows(ctx: Context, merge: _Merge, counts: FileCounts, now: datetime) -> None:
    """Update the changed existing rows, then insert the new ones; fills the counts."""
    table = merge.model._meta.db_table
    stg = SPECS[merge.spec].table
    has_updated_at = any(f.name == "updated_at" for f in merge.model._meta.concrete_fields)
    sets = ", ".join(f"{col} = {update}" for col, update, _ in merge.columns)
    params: list[Any] = []
    if has_updated_at:
        sets += ", updated_at = %s"
        params.append(now)
    updated = ctx.staging.execute(
        f"""
        UPDATE {table} AS t SET {sets}
        FROM {stg} s {merge.joins}
        WHERE t.merchant_id = {ctx.mid} AND t.{merge.key} = s.{merge.key}
          AND {_changed_condition(ctx, merge)}
        """,
        params,
    )
    names = ["merchant_id", merge.key] + [col for col, _, _ in merge.columns]
    values = [str(ctx.mid), f"s.{merge.key}"] + [insert for _, _, insert in merge.columns]
    params = []
    for stamp in ("created_at", "updated_at"):
        if any(f.name == stamp for f in merge.model._meta.concrete_fields):
            names.append(stamp)
            values.append("%s")
            params.append(now)
    # ON CONFLICT DO NOTHING rather than NOT EXISTS: the unique index answers per row,
    # where an anti-join planned on stale statistics rescans the table being filled.
    # TRICKY: "WHERE true" lets SQLite tell the upsert's ON from a join's ON.
    created = ctx.staging.execute(
        f"""
        INSERT INTO {table} ({", ".join(names)})
        SELECT {", ".join(values)} FROM {stg} s {merge.joins}
        WHERE true ORDER BY s.line
        ON CONFLICT (merchant_id, {merge.key}) DO NOTHING
        """,
        params,
    )
    counts.created = created
    counts.updated = updated
    counts.unchanged = counts.rows - created - updated


def _merge_customers(ctx: Context, merge: _Merge, counts: FileCounts, now: datetime) -> None:
    """Customers: rows as any file, plus the tag sets (which count as an update too)."""
    stg = SPECS["customers"].table
    customer_tags = CustomerTag._meta.db_table
    # A non-empty tags cell whose set differs from the stored one (either direction).
    tags_differ = f"""
        s.tags IS NOT NULL AND (
          EXISTS (SELECT 1 FROM {TAGS_TABLE} st
                  WHERE st.external_id = s.external_id AND NOT EXISTS (
                      SELECT 1 FROM {customer_tags} ct
                      WHERE ct.customer_id = t.id AND ct.tag_id = st.tag_id))
          OR EXISTS (SELECT 1 FROM {customer_tags} ct
                     WHERE ct.customer_id = t.id AND NOT EXISTS (
                         SELECT 1 FROM {TAGS_TABLE} st
                         WHERE st.external_id = s.external_id AND st.tag_id = ct.tag_id)))
    """
    # Counted before writing: a customer whose only change is its tags is "updated" too.
    existing, changed = ctx.staging.fetchall(
        f"""
        SELECT COUNT(t.id),
               SUM(CASE WHEN t.id IS NOT NULL
                         AND ({_changed_condition(ctx, merge)} OR {tags_differ})
                        THEN 1 ELSE 0 END)
        FROM {stg} s
        LEFT JOIN {Customer._meta.db_table} t
          ON t.merchant_id = {ctx.mid} AND t.external_id = s.external_id
        {merge.joins}
        """
    )[0]
    _merge_rows(ctx, merge, counts, now)
    if ctx.staging.postgres and counts.created >= ANALYZE_THRESHOLD:
        ctx.staging.analyze(Customer._meta.db_table)  # the tag statements join the new rows
    counts.created = counts.rows - (existing or 0)
    counts.updated = changed or 0
    counts.unchanged = counts.rows - counts.created - counts.updated

    given = f"""
        SELECT c.id FROM {stg} s JOIN {Customer._meta.db_table} c
          ON c.merchant_id = {ctx.mid} AND c.external_id = s.external_id
        WHERE s.tags IS NOT NULL
    """
    ctx.staging.execute(
        f"""
        DELETE FROM {customer_tags}
        WHERE customer_id IN ({given})
          AND NOT EXISTS (
            SELECT 1 FROM {TAGS_TABLE} st JOIN {Customer._meta.db_table} c
              ON c.merchant_id = {ctx.mid} AND c.external_id = st.external_id
            WHERE c.id = {customer_tags}.customer_id AND st.tag_id = {customer_tags}.tag_id)
        """
    )
    ctx.staging.execute(
        f"""
        INSERT INTO {customer_tags} (customer_id, tag_id)
        SELECT c.id, st.tag_id FROM {TAGS_TABLE} st JOIN {Customer._meta.db_table} c
          ON c.merchant_id = {ctx.mid} AND c.external_id = st.external_id
        WHERE true ON CONFLICT (customer_id, tag_id) DO NOTHING
        """
    )


def _merge_items(ctx: Context, counts: FileCounts) -> None:
    """Replace the line items of each transaction named in the items file, when they differ.

    The comparison is of multisets of (product, quantity, amount), so the same lines in
    another order leave the transaction alone.
    """
    staging = ctx.staging
    line_items = LineItem._meta.db_table
    items = SPECS["items"].table
    resolved, txns, changed = "sp_imp_items_resolved", "sp_imp_item_txns", "sp_imp_item_changed"
    resolve = f"""
        FROM {items} s
        JOIN {Transaction._meta.db_table} t
          ON t.merchant_id = {ctx.mid} AND t.external_id = s.transaction_external_id
        JOIN {Product._meta.db_table} p ON p.merchant_id = {ctx.mid} AND p.sku = s.sku
    """
    columns = "transaction_id, product_id, quantity, amount"
    stored = staging.scalar(
        f"""
        SELECT 1 FROM {line_items} l JOIN {Transaction._meta.db_table} t ON t.id = l.transaction_id
        WHERE t.merchant_id = {ctx.mid}
          AND t.external_id IN (SELECT transaction_external_id FROM {items})
        LIMIT 1
        """
    )
    if not stored:
        # The common first import: no stored lines to compare with, so every transaction
        # gets its lines, straight from staging (no intermediate table of millions of rows).
        total = staging.scalar(f"SELECT COUNT(DISTINCT transaction_external_id) FROM {items}")
        written = staging.execute(
            f"INSERT INTO {line_items} ({columns}) "
            f"SELECT t.id, p.id, s.quantity, s.amount {resolve}"
        )
        counts.updated = total or 0
        counts.unchanged = 0
        counts.lines_written = written
        return

    staging.create(
        resolved,
        [
            ("line", "int"),
            ("txn_id", "int"),
            ("product_id", "int"),
            ("quantity", "int"),
            ("amount", "money"),
        ],
    )
    staging.execute(
        f"INSERT INTO {resolved} (line, txn_id, product_id, quantity, amount) "
        f"SELECT s.line, t.id, p.id, s.quantity, s.amount {resolve}"
    )
    staging.create(txns, [("txn_id", "int")])
    total = staging.execute(f"INSERT INTO {txns} (txn_id) SELECT DISTINCT txn_id FROM {resolved}")
    staging.index(txns, "txn_id")
    if staging.postgres:
        staging.analyze(resolved)
        staging.analyze(txns)
    incoming = (
        f"SELECT txn_id, product_id, quantity, amount, COUNT(*) AS n FROM {resolved} "
        "GROUP BY txn_id, product_id, quantity, amount"
    )
    current = (
        f"SELECT transaction_id, product_id, quantity, amount, COUNT(*) AS n "
        f"FROM {line_items} WHERE transaction_id IN (SELECT txn_id FROM {txns}) "
        "GROUP BY transaction_id, product_id, quantity, amount"
    )
    staging.create(changed, [("txn_id", "int")])
    # TRICKY: SQLite has no parenthesised compound SELECTs, hence the derived tables.
    replaced = staging.execute(
        f"""
        INSERT INTO {changed} (txn_id)
        SELECT DISTINCT txn_id FROM (
            SELECT txn_id FROM (
                SELECT * FROM ({incoming}) a EXCEPT SELECT * FROM ({current}) b) d1
            UNION ALL
            SELECT transaction_id FROM (
                SELECT * FROM ({current}) c EXCEPT SELECT * FROM ({incoming}) e) d2
        ) d
        """
    )
    staging.index(changed, "txn_id")
    staging.execute(
        f"DELETE FROM {line_items} WHERE transaction_id IN (SELECT txn_id FROM {changed})"
    )
    written = staging.execute(
        f"INSERT INTO {line_items} ({columns}) "
        f"SELECT txn_id, product_id, quantity, amount FROM {resolved} "
        f"WHERE txn_id IN (SELECT txn_id FROM {changed}) ORDER BY line"
    )
    counts.updated = replaced
    counts.unchanged = total - replaced
    counts.lines_written = written


def _touched_customers(ctx: Context, before: bool) -> None:
    """Collect the customers whose metrics may change into a temporary table.

    Before the merge: the stored owners of the transactions and redemptions being imported
    (a transaction may move to another customer). After: their new owners, the owners of
    the transactions whose line items are imported, and every imported customer (new ones
    need a row; the others' profile is copied to it).
    """
    staging = ctx.staging
    touched = "sp_imp_touched"
    if before:
        staging.create(touched, [("customer_id", "int")])
    for file, model in (("transactions", Transaction), ("redemptions", Redemption)):
        if file not in ctx.staged:
            continue
        stg = SPECS[file].table
        if before:
            staging.execute(
                f"INSERT INTO {touched} SELECT t.customer_id FROM {model._meta.db_table} t "
                f"JOIN {stg} s ON t.merchant_id = {ctx.mid} AND t.external_id = s.external_id"
            )
        else:
            staging.execute(
                f"INSERT INTO {touched} SELECT c.id FROM {stg} s "
                f"JOIN {Customer._meta.db_table} c "
                f"ON c.merchant_id = {ctx.mid} AND c.external_id = s.customer_external_id"
            )
    if not before and "items" in ctx.staged:
        # Line items change their customer's product stats.
        staging.execute(
            f"INSERT INTO {touched} SELECT t.customer_id FROM {SPECS['items'].table} s "
            f"JOIN {Transaction._meta.db_table} t "
            f"ON t.merchant_id = {ctx.mid} AND t.external_id = s.transaction_external_id"
        )
    if not before and "customers" in ctx.staged:
        staging.execute(
            f"INSERT INTO {touched} SELECT c.id FROM {SPECS['customers'].table} s "
            f"JOIN {Customer._meta.db_table} c "
            f"ON c.merchant_id = {ctx.mid} AND c.external_id = s.external_id"
        )


#: The stored tables each merge reads (joins, anti-joins) besides its own.
_MERGE_READS: dict[str, tuple[type[Any], ...]] = {
    "branches": (Branch,),
    "products": (Product,),
    "customers": (Customer, CustomerTag),
    "transactions": (Transaction, Customer),
    "items": (LineItem, Transaction),
    "redemptions": (Redemption, Customer),
}


def _analyze(ctx: Context, file: str) -> None:
    """Refresh the statistics of the tables a big merge reads.

    TRICKY: a table just filled (by this import, or by one a minute ago that autovacuum has
    not analyzed yet) still looks empty to the planner, which then picks nested loops over
    sequential scans: a re-import of 100,000 transactions took minutes instead of seconds.
    ANALYZE counts the rows this transaction inserted, and samples only 30,000 rows.
    """
    if not ctx.staging.postgres or ctx.report.counts[file].rows < ANALYZE_THRESHOLD:
        return
    for model in _MERGE_READS[file]:
        ctx.staging.analyze(model._meta.db_table)


def _new_transaction_ids(ctx: Context) -> list[int]:
    return [
        row[0]
        for row in ctx.staging.fetchall(
            f"SELECT t.id FROM {SPECS['transactions'].table} s "
            f"JOIN {Transaction._meta.db_table} t "
            f"ON t.merchant_id = {ctx.mid} AND t.external_id = s.external_id"
        )
    ]


def merge_all(ctx: Context, dry_run: bool, only_new_transactions: bool = False) -> None:
    """Merge every staged file, then bring the touched customers' rows up to date.

    `only_new_transactions`: the caller checked that every staged transaction is new (no
    stored one has its external id) and that only transactions and their items are staged,
    so the customers' rows may follow by delta (`customer_metrics_add`) instead of being
    recomputed."""
    now = timezone.now()
    merges = _merges(ctx.mid)
    counts = ctx.report.counts
    many = sum(
        counts[f].rows for f in ("customers", "transactions", "items", "redemptions") if f in counts
    )
    per_customer = not dry_run and many <= MERCHANT_REFRESH_THRESHOLD
    if per_customer:
        _touched_customers(ctx, before=True)
    for file in FILE_ORDER:
        if file not in ctx.staged:
            continue
        with phase(f"merge {file}"):
            _analyze(ctx, file)
            if file == "items":
                _merge_items(ctx, counts[file])
            elif file == "customers":
                _merge_customers(ctx, merges[file], counts[file], now)
            else:
                _merge_rows(ctx, merges[file], counts[file], now)
    if dry_run:
        return  # rolled back: the metrics would be thrown away
    with phase("metrics"):
        if (
            per_customer
            and only_new_transactions
            and ctx.staged <= {"transactions", "items"}
            and customer_metrics_add(
                merchant=ctx.merchant, transaction_ids=_new_transaction_ids(ctx)
            )
        ):
            return
        if per_customer:
            _touched_customers(ctx, before=False)
            ids = [
                row[0]
                for row in ctx.staging.fetchall("SELECT DISTINCT customer_id FROM sp_imp_touched")
            ]
            customer_metrics_refresh(customer_ids=ids)
        else:
            merchant_metrics_refresh(merchant_id=ctx.mid)
