"""`generate_dataset`: synthetic merchants into the database, or as contract CSV files."""

import csv
import importlib.util
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, F, Max, Min, Q, Sum

from customers.models import (
    Customer,
    CustomerMetrics,
    LineItem,
    Merchant,
    Redemption,
    Transaction,
    TransactionKind,
)
from customers.synthetic import SyntheticDataset
from customers.synthetic_writers import MerchantHasCustomers, write_to_database
from tests.factories import CustomerFactory, MerchantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

NOW = "2026-06-15T18:30:00+00:00"

# The column names of shared/spec/import-format.md, file by file, written out here on
# purpose: the test checks the generator against the contract, not against itself.
CONTRACT_COLUMNS = {
    "branches.csv": {"code", "name"},
    "products.csv": {"sku", "name", "product_type", "brand", "category", "price"},
    "customers.csv": {
        "external_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "gender",
        "birth_date",
        "customer_type",
        "tags",
        "tier",
        "joined_at",
        "home_branch",
        "email_opt_in",
        "sms_opt_in",
        "push_opt_in",
        "points_balance",
        "lifetime_points",
        "last_contacted_at",
    },
    "transactions.csv": {
        "external_id",
        "customer_external_id",
        "occurred_at",
        "kind",
        "total",
        "branch",
        "points_earned",
        "points_redeemed",
    },
    "items.csv": {"transaction_external_id", "sku", "quantity", "amount"},
    "redemptions.csv": {"external_id", "customer_external_id", "reward", "points", "redeemed_at"},
}


def generate(*args: str) -> str:
    out = StringIO()
    call_command("generate_dataset", *args, "--now", NOW, stdout=out)
    return out.getvalue()


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_generates_a_new_merchant_with_its_customers_and_exact_metrics():
    # when
    output = generate("--merchant", "synth", "--customers", "120", "--seed", "3")

    # then
    merchant = Merchant.objects.get(slug="synth")
    assert merchant.time_zone == "America/Toronto"
    assert merchant.branches.count() == 3
    assert merchant.products.count() >= 200
    assert Customer.objects.filter(merchant=merchant).count() == 120
    assert CustomerMetrics.objects.filter(merchant=merchant).count() == 120
    txns = Transaction.objects.filter(merchant=merchant)
    assert txns.filter(kind=TransactionKind.REFUND).exists()
    assert "customers: 120" in output
    assert f"transactions: {txns.count()}" in output

    expected = {
        row["customer"]: row
        for row in txns.values("customer").annotate(
            orders=Count("id", filter=Q(kind=TransactionKind.PURCHASE)),
            gross=Sum("total", filter=Q(kind=TransactionKind.PURCHASE)),
            refunds=Count("id", filter=Q(kind=TransactionKind.REFUND)),
            refunded=Sum("total", filter=Q(kind=TransactionKind.REFUND)),
            first=Min("occurred_at", filter=Q(kind=TransactionKind.PURCHASE)),
            last=Max("occurred_at", filter=Q(kind=TransactionKind.PURCHASE)),
        )
    }
    redemptions = dict(
        Redemption.objects.filter(merchant=merchant)
        .values("customer")
        .annotate(n=Count("id"))
        .values_list("customer", "n")
    )
    for m in CustomerMetrics.objects.filter(merchant=merchant):
        row = expected.get(m.customer_id)
        if row is None:  # never ordered
            assert (m.orders_count, m.net_spend, m.last_purchase_at) == (0, 0, None)
            continue
        gross = row["gross"] or Decimal("0")
        assert m.orders_count == row["orders"]
        assert m.gross_spend == gross
        assert m.refunds_count == row["refunds"]
        assert m.net_spend == gross - (row["refunded"] or Decimal("0"))
        assert m.first_purchase_at == row["first"]
        assert m.last_purchase_at == row["last"]
        assert m.redemptions_count == redemptions.get(m.customer_id, 0)


def test_every_transaction_total_is_the_sum_of_its_lines_and_lies_after_joining():
    generate("--merchant", "synth", "--customers", "80")
    merchant = Merchant.objects.get(slug="synth")

    # Summed in Python: SQLite stores decimals as floats, so SUM() may be off by 1e-13.
    lines: dict[int, Decimal] = {}
    for txn_id, amount in LineItem.objects.filter(transaction__merchant=merchant).values_list(
        "transaction_id", "amount"
    ):
        lines[txn_id] = lines.get(txn_id, Decimal("0")) + amount
    totals = dict(Transaction.objects.filter(merchant=merchant).values_list("id", "total"))
    early = Transaction.objects.filter(merchant=merchant, occurred_at__lt=F("customer__joined_at"))

    assert totals
    assert lines == totals
    assert not early.exists()


def test_the_database_rows_follow_the_seed():
    generate("--merchant", "one", "--customers", "40", "--seed", "5")
    generate("--merchant", "two", "--customers", "40", "--seed", "5")

    def fingerprint(slug):
        return list(
            Transaction.objects.filter(merchant__slug=slug)
            .order_by("external_id")
            .values_list("external_id", "customer__external_id", "occurred_at", "total", "kind")
        )

    assert fingerprint("one") == fingerprint("two")


def test_refuses_a_merchant_that_already_has_customers():
    merchant = MerchantFactory(slug="busy")
    CustomerFactory(merchant=merchant)

    with pytest.raises(CommandError, match='"busy" already has 1 customers'):
        generate("--merchant", "busy", "--customers", "10")

    assert Customer.objects.filter(merchant=merchant).count() == 1


def test_fills_an_existing_empty_merchant_in_its_time_zone():
    MerchantFactory(slug="empty", time_zone="Europe/London", currency="GBP")

    generate("--merchant", "empty", "--customers", "15", "--profile", "cafe")

    merchant = Merchant.objects.get(slug="empty")
    assert merchant.time_zone == "Europe/London"
    assert merchant.customers.count() == 15
    assert set(merchant.products.values_list("product_type", flat=True)) >= {"coffee", "pastry"}


def test_csv_files_have_exactly_the_contract_columns_and_touch_no_rows(tmp_path):
    merchants = Merchant.objects.count()

    generate("--merchant", "files", "--customers", "60", "--csv", str(tmp_path))

    assert Merchant.objects.count() == merchants
    assert not Customer.objects.exists()
    assert {p.name for p in tmp_path.iterdir()} == set(CONTRACT_COLUMNS)
    for name, columns in CONTRACT_COLUMNS.items():
        header, rows = read_csv(tmp_path / name)
        assert set(header) == columns
        assert len(header) == len(columns)
        assert rows, name
    _, customers = read_csv(tmp_path / "customers.csv")
    _, transactions = read_csv(tmp_path / "transactions.csv")
    assert len(customers) == 60
    assert customers[0]["joined_at"].endswith("+00:00")
    assert any(";" in c["tags"] for c in customers)
    assert {c["gender"] for c in customers} <= {"female", "male", "other", ""}
    assert {t["kind"] for t in transactions} == {"purchase", "refund"}


def test_csv_and_database_hold_the_same_dataset(tmp_path):
    generate("--merchant", "files", "--customers", "50", "--seed", "9", "--csv", str(tmp_path))
    generate("--merchant", "rows", "--customers", "50", "--seed", "9")

    _, transactions = read_csv(tmp_path / "transactions.csv")
    _, items = read_csv(tmp_path / "items.csv")
    in_db = Transaction.objects.filter(merchant__slug="rows")
    assert len(transactions) == in_db.count()
    assert len(items) == LineItem.objects.filter(transaction__merchant__slug="rows").count()
    assert sum(Decimal(t["total"]) for t in transactions) == in_db.aggregate(s=Sum("total"))["s"]


@pytest.mark.skipif(
    importlib.util.find_spec("customers.management.commands.import_data") is None,
    reason="import_data is not written yet",
)
def test_csv_round_trips_through_import_data(tmp_path):
    generate("--merchant", "files", "--customers", "40", "--seed", "4", "--csv", str(tmp_path))
    MerchantFactory(slug="imported")

    call_command(
        "import_data",
        "--merchant",
        "imported",
        *("--branches", str(tmp_path / "branches.csv")),
        *("--products", str(tmp_path / "products.csv")),
        *("--customers", str(tmp_path / "customers.csv")),
        *("--transactions", str(tmp_path / "transactions.csv")),
        *("--items", str(tmp_path / "items.csv")),
        *("--redemptions", str(tmp_path / "redemptions.csv")),
        stdout=StringIO(),
    )

    merchant = Merchant.objects.get(slug="imported")
    for name, count in (
        ("customers.csv", merchant.customers.count()),
        ("transactions.csv", merchant.transactions.count()),
        ("items.csv", LineItem.objects.filter(transaction__merchant=merchant).count()),
        ("redemptions.csv", merchant.redemptions.count()),
    ):
        assert len(read_csv(tmp_path / name)[1]) == count, name


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL COPY path")
def test_postgres_load_with_per_row_foreign_key_checks_gives_the_same_rows():
    fast, checked = MerchantFactory(slug="fast"), MerchantFactory(slug="checked")

    write_to_database(SyntheticDataset(customers=30, seed=2, time_zone="UTC"), fast)
    write_to_database(
        SyntheticDataset(customers=30, seed=2, time_zone="UTC"), checked, check_foreign_keys=True
    )

    def totals(merchant):
        return list(
            merchant.transactions.order_by("external_id").values_list("external_id", "total")
        )

    assert totals(fast) == totals(checked)
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"  # restored for the rest of the transaction


def test_write_to_database_refuses_twice():
    merchant = MerchantFactory(slug="twice")
    write_to_database(SyntheticDataset(customers=5, time_zone="UTC"), merchant)

    with pytest.raises(MerchantHasCustomers):
        write_to_database(SyntheticDataset(customers=5, time_zone="UTC"), merchant)
