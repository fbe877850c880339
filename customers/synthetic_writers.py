"""Writers for `customers.synthetic` datasets: into the database, or as contract CSV files.

Database: one transaction per dataset. The catalogue (branches, products, tags, tiers) goes
through the ORM; the millions of customer rows go
- on PostgreSQL, through `COPY ... FROM STDIN` in text format, one COPY per table and chunk,
  with primary keys of customers and transactions reserved from their sequences beforehand
  so that foreign keys are written without a round trip per row;
- elsewhere (SQLite), through `executemany` with explicit ids taken above the current
  maximum while the transaction holds SQLite's write lock.
Then `merchant_metrics_refresh()` fills `CustomerMetrics` in the same transaction (the
invariant of `customers.models`).

CSV: the six files of `shared/spec/import-format.md`, with exactly its column names.
"""

from __future__ import annotations

import csv
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Field, Model
from django.utils import timezone

from customers.imports import CONTRACT_COLUMNS
from customers.models import (
    Branch,
    Customer,
    CustomerMetrics,
    CustomerTag,
    LineItem,
    Merchant,
    Product,
    Redemption,
    Tag,
    Tier,
    Transaction,
)
from customers.services import merchant_metrics_refresh
from customers.synthetic import (
    DAY,
    Catalogue,
    Chunk,
    SyntheticDataset,
    customer_external_id,
    redemption_external_id,
    transaction_external_id,
)

ERROR_MERCHANT_HAS_CUSTOMERS = (
    'Merchant "{slug}" already has {count} customers; generate into a new merchant '
    "(the generator only writes complete datasets)."
)

# Column names of the import contract, per file, in the order the CSV files use: the
# import's own file specs, so the generator cannot drift from what the import accepts.
CSV_COLUMNS = CONTRACT_COLUMNS

Counts = dict[str, int]
Progress = Callable[[Counts], None]


class _Timestamps:
    """Epoch seconds to text in one list lookup per half: the date part is cached per day
    and the time part per second of the day, since formatting ~12M datetimes one by one
    would cost more than generating them."""

    def __init__(self, first_day: int, last_day: int, *, sep: str, suffix: str) -> None:
        self.first_day = first_day
        self.days = [
            datetime.fromtimestamp(d * DAY, UTC).strftime("%Y-%m-%d")
            for d in range(first_day, last_day + 1)
        ]
        self.times = [
            f"{sep}{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{suffix}" for s in range(DAY)
        ]

    def __call__(self, ts: int) -> str:
        return self.days[ts // DAY - self.first_day] + self.times[ts % DAY]


class _Money(dict[int, str]):
    """Cents to a two-decimal string, cached: totals repeat a lot."""

    def __missing__(self, cents: int) -> str:
        text = f"{cents // 100}.{cents % 100:02d}"
        self[cents] = text
        return text


def _columns(model: type[Model], names: Sequence[str]) -> str:
    """The database columns of these fields, so SQL follows any `db_column` of the models."""
    columns = []
    for name in names:
        model_field = model._meta.get_field(name)
        assert isinstance(model_field, Field), name  # concrete fields only
        columns.append(model_field.column)
    return ", ".join(columns)


_CUSTOMER_COLUMNS = (
    "id",
    "merchant",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "gender",
    "birth_date",
    "customer_type",
    "tier",
    "joined_at",
    "home_branch",
    "email_opt_in",
    "sms_opt_in",
    "push_opt_in",
    "points_balance",
    "lifetime_points",
    "last_contacted_at",
    "created_at",
    "updated_at",
)
_TRANSACTION_COLUMNS = (
    "id",
    "merchant",
    "external_id",
    "customer",
    "occurred_at",
    "kind",
    "total",
    "branch",
    "points_earned",
    "points_redeemed",
)
_ITEM_COLUMNS = ("transaction", "product", "quantity", "amount")
_REDEMPTION_COLUMNS = ("merchant", "external_id", "customer", "reward", "points", "redeemed_at")
_TAG_COLUMNS = ("customer", "tag")


# --- database -----------------------------------------------------------------------------


def _catalogue_rows(merchant: Merchant, catalogue: Catalogue) -> dict[str, list[int]]:
    """Create the catalogue's rows (reusing any the merchant already has, by code, SKU or
    name) and return their ids in catalogue order."""
    branches = {b.code: b for b in Branch.objects.filter(merchant=merchant)}
    Branch.objects.bulk_create(
        [
            Branch(merchant=merchant, code=b.code, name=b.name)
            for b in catalogue.branches
            if b.code not in branches
        ]
    )
    branches = {b.code: b for b in Branch.objects.filter(merchant=merchant)}

    products = {p.sku: p for p in Product.objects.filter(merchant=merchant)}
    Product.objects.bulk_create(
        [
            Product(
                merchant=merchant,
                sku=p.sku,
                name=p.name,
                product_type=p.product_type,
                brand=p.brand,
                category=p.category,
                price=f"{p.price_cents // 100}.{p.price_cents % 100:02d}",
            )
            for p in catalogue.products
            if p.sku not in products
        ],
        batch_size=500,
    )
    products = {p.sku: p for p in Product.objects.filter(merchant=merchant)}

    tags = {t.name.lower(): t for t in Tag.objects.filter(merchant=merchant)}
    Tag.objects.bulk_create(
        [Tag(merchant=merchant, name=name) for name in catalogue.tags if name not in tags]
    )
    tags = {t.name.lower(): t for t in Tag.objects.filter(merchant=merchant)}

    tiers = {t.name.lower(): t for t in Tier.objects.filter(merchant=merchant)}
    Tier.objects.bulk_create(
        [
            Tier(merchant=merchant, name=t.name, rank=t.rank)
            for t in catalogue.tiers
            if t.name.lower() not in tiers
        ]
    )
    tiers = {t.name.lower(): t for t in Tier.objects.filter(merchant=merchant)}
    return {
        "branches": [branches[b.code].pk for b in catalogue.branches],
        "products": [products[p.sku].pk for p in catalogue.products],
        "tags": [tags[name.lower()].pk for name in catalogue.tags],
        "tiers": [tiers[t.name.lower()].pk for t in catalogue.tiers],
    }


class _ChunkWriter:
    """Writes chunks of a dataset for one merchant; subclasses do the vendor's bulk path."""

    def __init__(
        self, merchant: Merchant, dataset: SyntheticDataset, ids: dict[str, list[int]]
    ) -> None:
        self.merchant_id = merchant.pk
        self.dataset = dataset
        self.ids = ids
        self.rewards = [r.name for r in dataset.catalogue.rewards]
        self.counts: Counts = dict.fromkeys(
            ("customers", "customer_tags", "transactions", "line_items", "redemptions"), 0
        )

    def start(self) -> None:
        """Called once before the first chunk, inside the transaction."""

    def write(self, chunk: Chunk) -> None:
        raise NotImplementedError

    def _count(self, chunk: Chunk) -> None:
        self.counts["customers"] += len(chunk.customers)
        self.counts["customer_tags"] += len(chunk.customer_tags)
        self.counts["transactions"] += len(chunk.transactions)
        self.counts["line_items"] += len(chunk.items)
        self.counts["redemptions"] += len(chunk.redemptions)


class _PostgresCopyWriter(_ChunkWriter):
    """COPY in text format, pipelined: a producer thread generates and formats the next
    chunk while this thread streams the current one to the server, so Python and PostgreSQL
    each keep one core busy.

    Values come from the catalogue and the generator and none holds a tab, newline or
    backslash, so lines are joined without COPY escaping (checked in `start()`).
    """

    def __init__(
        self,
        merchant: Merchant,
        dataset: SyntheticDataset,
        ids: dict[str, list[int]],
        *,
        check_foreign_keys: bool = False,
    ) -> None:
        super().__init__(merchant, dataset, ids)
        self.check_foreign_keys = check_foreign_keys
        self.foreign_keys_checked = True

    def start(self) -> None:
        catalogue = self.dataset.catalogue
        texts = [*(p.name for p in catalogue.products), *(r.name for r in catalogue.rewards)]
        if any(ch in text for text in texts for ch in "\t\n\r\\"):
            raise ValueError("catalogue text needs COPY escaping")
        with connection.cursor() as cursor:
            # Check foreign keys at the end of each COPY (Django declares them DEFERRABLE
            # INITIALLY DEFERRED): otherwise PostgreSQL queues one trigger event per row until
            # COMMIT, tens of millions of them at a million customers.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            if not self.check_foreign_keys:
                self.foreign_keys_checked = not self._skip_foreign_key_triggers(cursor)
            self.customer_base = self._reserve(cursor, Customer, self.dataset.customers)
        self.stamp = _Timestamps(
            self.dataset.first_day, self.dataset.last_day, sep=" ", suffix="+00"
        )
        self.now_text = timezone.now().isoformat()
        # Catalogue index -> id as text; index -1 (none) reads the trailing NULL marker.
        self.branch_ids = [str(i) for i in self.ids["branches"]] + ["\\N"]
        self.product_ids = [str(i) for i in self.ids["products"]]
        self.tag_ids = [str(i) for i in self.ids["tags"]]
        self.tier_ids = [str(i) for i in self.ids["tiers"]] + ["\\N"]
        self.money = _Money()

    def _skip_foreign_key_triggers(self, cursor: Any) -> bool:
        """Replace the per-row foreign key checks by the locks they would take; True if done.

        The checks are PostgreSQL triggers costing ~10 us per row and reference: at a million
        customers (~36M rows, ~90M references) they alone would take longer than the whole
        load. Every id this writer references is one it reserved and wrote in this transaction
        (customers, transactions) or a row of this merchant it read in this transaction and
        now locks FOR KEY SHARE, exactly the lock the per-row check takes (the merchant row is
        already locked FOR UPDATE). So skipping the triggers cannot admit a dangling
        reference; unique and check constraints are still enforced. `session_replication_role`
        needs a superuser (or, on PostgreSQL 15+, a GRANT SET ON PARAMETER); without that
        right the rows are checked one by one as usual.
        """
        for model in (Branch, Product, Tag, Tier):
            cursor.execute(
                f"SELECT id FROM {model._meta.db_table} WHERE merchant_id = %s FOR KEY SHARE",
                [self.merchant_id],
            )
        try:
            with transaction.atomic():
                cursor.execute("SET LOCAL session_replication_role = replica")
        except DatabaseError:
            return False
        return True

    @staticmethod
    def _reserve(cursor: Any, model: type[Model], count: int) -> int:
        """Reserve `count` consecutive ids of the model's sequence; return the first.

        setval(nextval + count - 1) moves the sequence past the block in one statement, so
        concurrent inserts (which draw from the same sequence) cannot get these ids unless
        they call nextval in the microseconds between the two calls; if one ever did, our
        COPY would fail on the primary key and roll back, never write a wrong row. Sequences
        are not transactional: a rolled-back load leaves a gap, nothing else.
        """
        if count == 0:
            return 0
        table = model._meta.db_table
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'),"
            " nextval(pg_get_serial_sequence(%s, 'id')) + %s - 1)",
            [table, table, count],
        )
        last: int = cursor.fetchone()[0]
        return last - count + 1

    def format(self, chunk: Chunk) -> list[tuple[type[Model], Sequence[str], str]]:
        """COPY text per table for one chunk. Runs in the producer thread, whose own
        (autocommit) connection reserves the transaction ids."""
        stamp, money, mid = self.stamp, self.money, self.merchant_id
        cbase = self.customer_base
        branch_ids, product_ids, tier_ids = self.branch_ids, self.product_ids, self.tier_ids
        now_text = self.now_text
        t, f, null = "t", "f", "\\N"  # no backslash inside f-string braces before 3.12
        customers = "".join(
            f"{cbase + c[0]}\t{mid}\t{customer_external_id(c[0])}\t{c[1]}\t{c[2]}\t{c[3]}\t"
            f"{c[4]}\t{c[5]}\t{c[6] or null}\t{c[7]}\t{tier_ids[c[8]]}\t{stamp(c[9])}\t"
            f"{branch_ids[c[10]]}\t{t if c[11] else f}\t{t if c[12] else f}\t"
            f"{t if c[13] else f}\t{c[14]}\t{c[15]}\t"
            f"{stamp(c[16]) if c[16] >= 0 else null}\t{now_text}\t{now_text}\n"
            for c in chunk.customers
        )
        tag_ids = self.tag_ids
        tags = "".join(f"{cbase + c}\t{tag_ids[g]}\n" for c, g in chunk.customer_tags)
        with connection.cursor() as cursor:
            tbase = self._reserve(cursor, Transaction, len(chunk.transactions))
        first_txn = chunk.transactions[0][0] if chunk.transactions else 0
        toff = tbase - first_txn  # id = toff + index
        transactions = "".join(
            f"{toff + x[0]}\t{mid}\tT{x[0] + 1:09d}\t{cbase + x[1]}\t{stamp(x[2])}\t"
            f"{'refund' if x[3] else 'purchase'}\t{money[x[4]]}\t{branch_ids[x[5]]}\t"
            f"{x[6]}\t{x[7]}\n"
            for x in chunk.transactions
        )
        items = "".join(
            f"{toff + x[0]}\t{product_ids[x[1]]}\t{x[2]}\t{money[x[3]]}\n" for x in chunk.items
        )
        rewards = self.rewards
        redemptions = "".join(
            f"{mid}\tR{r[0] + 1:08d}\t{cbase + r[1]}\t{rewards[r[2]]}\t{r[3]}\t{stamp(r[4])}\n"
            for r in chunk.redemptions
        )
        self._count(chunk)
        return [
            (Customer, _CUSTOMER_COLUMNS, customers),
            (CustomerTag, _TAG_COLUMNS, tags),
            (Transaction, _TRANSACTION_COLUMNS, transactions),
            (LineItem, _ITEM_COLUMNS, items),
            (Redemption, _REDEMPTION_COLUMNS, redemptions),
        ]

    def load(self, parts: list[tuple[type[Model], Sequence[str], str]]) -> None:
        """Stream one chunk's text to the server, one COPY per table, parents first."""
        with connection.cursor() as cursor:
            for model, columns, text in parts:
                if text:
                    sql = f"COPY {model._meta.db_table} ({_columns(model, columns)}) FROM STDIN"
                    with cursor.cursor.copy(sql) as copy:
                        copy.write(text)

    def write(self, chunk: Chunk) -> None:
        self.load(self.format(chunk))

    def write_all(self, chunks: Iterator[Chunk], progress: Progress | None) -> None:
        """Format in a producer thread, COPY here; a failure on either side stops both."""
        parts: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        done = object()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    parts.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for chunk in chunks:
                    if not put((self.format(chunk), dict(self.counts))):
                        return
                put(done)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(exc)
            finally:
                connection.close()  # this thread's own connection

        producer = threading.Thread(target=produce, name="synthetic-producer", daemon=True)
        producer.start()
        try:
            while True:
                item = parts.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                formatted, counts = item
                self.load(formatted)
                if progress:
                    progress(counts)
        finally:
            stop.set()
            producer.join()


class _BulkInsertWriter(_ChunkWriter):
    """`executemany` with explicit ids, for SQLite (and any database without COPY)."""

    def start(self) -> None:
        with connection.cursor() as cursor:
            # The catalogue rows written before this took SQLite's write lock, so no other
            # connection can insert between reading the maxima and our inserts.
            self.customer_base = self._next_id(cursor, Customer)
            self.transaction_base = self._next_id(cursor, Transaction)
        self.stamp = _Timestamps(self.dataset.first_day, self.dataset.last_day, sep=" ", suffix="")
        # Django's SQLite format for aware datetimes: UTC, no offset.
        self.now_text = timezone.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        self.branch_ids: list[int | None] = [*self.ids["branches"], None]
        self.tier_ids: list[int | None] = [*self.ids["tiers"], None]
        self.money = _Money()

    @staticmethod
    def _next_id(cursor: Any, model: type[Model]) -> int:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {model._meta.db_table}")
        first: int = cursor.fetchone()[0]
        return first

    @staticmethod
    def _insert(cursor: Any, model: type[Model], columns: Sequence[str], rows: list[Any]) -> None:
        if rows:
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {model._meta.db_table} ({_columns(model, columns)})"
                f" VALUES ({placeholders})",
                rows,
            )

    def write(self, chunk: Chunk) -> None:
        stamp, money, mid = self.stamp, self.money, self.merchant_id
        cbase, tbase = self.customer_base, self.transaction_base
        branch_ids, tier_ids = self.branch_ids, self.tier_ids
        product_ids, tag_ids = self.ids["products"], self.ids["tags"]
        now_text = self.now_text
        rewards = self.rewards
        customers = [
            (
                cbase + c[0],
                mid,
                customer_external_id(c[0]),
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                c[6],
                c[7],
                tier_ids[c[8]],
                stamp(c[9]),
                branch_ids[c[10]],
                c[11],
                c[12],
                c[13],
                c[14],
                c[15],
                stamp(c[16]) if c[16] >= 0 else None,
                now_text,
                now_text,
            )
            for c in chunk.customers
        ]
        transactions = [
            (
                tbase + x[0],
                mid,
                transaction_external_id(x[0]),
                cbase + x[1],
                stamp(x[2]),
                "refund" if x[3] else "purchase",
                money[x[4]],
                branch_ids[x[5]],
                x[6],
                x[7],
            )
            for x in chunk.transactions
        ]
        items = [(tbase + x[0], product_ids[x[1]], x[2], money[x[3]]) for x in chunk.items]
        redemptions = [
            (mid, redemption_external_id(r[0]), cbase + r[1], rewards[r[2]], r[3], stamp(r[4]))
            for r in chunk.redemptions
        ]
        tags = [(cbase + c, tag_ids[g]) for c, g in chunk.customer_tags]
        with connection.cursor() as cursor:
            self._insert(cursor, Customer, _CUSTOMER_COLUMNS, customers)
            self._insert(cursor, CustomerTag, _TAG_COLUMNS, tags)
            self._insert(cursor, Transaction, _TRANSACTION_COLUMNS, transactions)
            self._insert(cursor, LineItem, _ITEM_COLUMNS, items)
            self._insert(cursor, Redemption, _REDEMPTION_COLUMNS, redemptions)
        self._count(chunk)


class MerchantHasCustomers(Exception):
    """The generator writes complete datasets only, never into a merchant with customers."""


def write_to_database(
    dataset: SyntheticDataset,
    merchant: Merchant,
    *,
    chunk_size: int = 5000,
    progress: Progress | None = None,
    check_foreign_keys: bool = False,
) -> Counts:
    """Write the dataset for `merchant` in one database transaction; return rows per table.

    Raises `MerchantHasCustomers` if the merchant already has customers. Metrics are
    refreshed before the transaction commits, so nobody sees customers without them.
    On PostgreSQL, `check_foreign_keys=True` keeps the per-row foreign key triggers even
    when the connection may skip them (see `_PostgresCopyWriter._skip_foreign_key_triggers`).
    """
    with transaction.atomic():
        # Lock the merchant row so two generators cannot fill the same merchant at once.
        Merchant.objects.select_for_update().filter(pk=merchant.pk).first()
        existing = Customer.objects.filter(merchant=merchant).count()
        if existing:
            raise MerchantHasCustomers(
                ERROR_MERCHANT_HAS_CUSTOMERS.format(slug=merchant.slug, count=existing)
            )
        ids = _catalogue_rows(merchant, dataset.catalogue)
        writer: _ChunkWriter
        if connection.vendor == "postgresql":
            pg_writer = _PostgresCopyWriter(
                merchant, dataset, ids, check_foreign_keys=check_foreign_keys
            )
            pg_writer.start()
            pg_writer.write_all(dataset.iter_chunks(chunk_size), progress)
            writer = pg_writer
            with connection.cursor() as cursor:
                # Back to the defaults for whatever the caller's transaction does next.
                if not pg_writer.foreign_keys_checked:
                    cursor.execute("SET LOCAL session_replication_role = DEFAULT")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            writer = _BulkInsertWriter(merchant, dataset, ids)
            writer.start()
            for chunk in dataset.iter_chunks(chunk_size):
                writer.write(chunk)
                if progress:
                    progress(writer.counts)
        if connection.vendor == "postgresql":
            # Fresh statistics, so the metrics refresh below (and the first segment queries)
            # plan for millions of rows rather than for an empty table. ANALYZE sees this
            # transaction's own uncommitted rows.
            with connection.cursor() as cursor:
                for model in (Customer, CustomerTag, Transaction, LineItem, Redemption):
                    cursor.execute(f"ANALYZE {model._meta.db_table}")
        merchant_metrics_refresh(merchant_id=merchant.pk)
        counts: Counts = {
            "branches": len(ids["branches"]),
            "products": len(ids["products"]),
            "tags": len(ids["tags"]),
            "tiers": len(ids["tiers"]),
            **writer.counts,
            "customer_metrics": CustomerMetrics.objects.filter(merchant=merchant).count(),
        }
    return counts


# --- CSV ----------------------------------------------------------------------------------


def write_csv(
    dataset: SyntheticDataset,
    directory: Path,
    *,
    chunk_size: int = 5000,
    progress: Progress | None = None,
) -> Counts:
    """Write the dataset as the contract's six CSV files in `directory`; return row counts.

    Timestamps are ISO 8601 in UTC with an explicit offset; tags are `;`-separated names;
    an unspecified gender is an empty cell, as the contract says.
    """
    directory.mkdir(parents=True, exist_ok=True)
    catalogue = dataset.catalogue
    stamp = _Timestamps(dataset.first_day, dataset.last_day, sep="T", suffix="+00:00")
    money = _Money()
    branch_codes = [b.code for b in catalogue.branches] + [""]
    skus = [p.sku for p in catalogue.products]
    tier_names = [t.name for t in catalogue.tiers] + [""]
    tag_names = list(catalogue.tags)
    rewards = [r.name for r in catalogue.rewards]
    boolean = ("false", "true")
    counts: Counts = dict.fromkeys(CSV_COLUMNS, 0)

    handles = {
        name: (directory / f"{name}.csv").open("w", newline="", encoding="utf-8")
        for name in CSV_COLUMNS
    }
    try:
        out = {name: csv.writer(handle) for name, handle in handles.items()}
        for name, columns in CSV_COLUMNS.items():
            out[name].writerow(columns)
        out["branches"].writerows((b.code, b.name) for b in catalogue.branches)
        out["products"].writerows(
            (p.sku, p.name, p.product_type, p.brand, p.category, money[p.price_cents])
            for p in catalogue.products
        )
        counts["branches"] = len(catalogue.branches)
        counts["products"] = len(catalogue.products)
        for chunk in dataset.iter_chunks(chunk_size):
            tags: dict[int, list[str]] = {}
            for customer, tag in chunk.customer_tags:
                tags.setdefault(customer, []).append(tag_names[tag])
            out["customers"].writerows(
                (
                    customer_external_id(c[0]),
                    c[1],
                    c[2],
                    c[3],
                    c[4],
                    "" if c[5] == "unspecified" else c[5],
                    c[6] or "",
                    c[7],
                    ";".join(tags.get(c[0], ())),
                    tier_names[c[8]],
                    stamp(c[9]),
                    branch_codes[c[10]],
                    boolean[c[11]],
                    boolean[c[12]],
                    boolean[c[13]],
                    c[14],
                    c[15],
                    stamp(c[16]) if c[16] >= 0 else "",
                )
                for c in chunk.customers
            )
            out["transactions"].writerows(
                (
                    transaction_external_id(x[0]),
                    customer_external_id(x[1]),
                    stamp(x[2]),
                    "refund" if x[3] else "purchase",
                    money[x[4]],
                    branch_codes[x[5]],
                    x[6],
                    x[7],
                )
                for x in chunk.transactions
            )
            out["items"].writerows(
                (transaction_external_id(x[0]), skus[x[1]], x[2], money[x[3]]) for x in chunk.items
            )
            out["redemptions"].writerows(
                (
                    redemption_external_id(r[0]),
                    customer_external_id(r[1]),
                    rewards[r[2]],
                    r[3],
                    stamp(r[4]),
                )
                for r in chunk.redemptions
            )
            counts["customers"] += len(chunk.customers)
            counts["transactions"] += len(chunk.transactions)
            counts["items"] += len(chunk.items)
            counts["redemptions"] += len(chunk.redemptions)
            if progress:
                progress(counts)
    finally:
        for handle in handles.values():
            handle.close()
    return counts
