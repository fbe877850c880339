"""The import writes what the contract says: created, updated, unchanged, all or nothing."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from customers.imports import import_files
from customers.models import (
    Branch,
    Customer,
    CustomerMetrics,
    Gender,
    LineItem,
    Product,
    Redemption,
    Tag,
    Tier,
    Transaction,
)
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    LineItemFactory,
    ProductFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
)

pytestmark = pytest.mark.django_db

TORONTO = ZoneInfo("America/Toronto")
TXN_HEADER = "external_id,customer_external_id,occurred_at,kind,total,branch"
ITEM_HEADER = "transaction_external_id,sku,quantity,amount"


@pytest.fixture
def full_files(write_csv):
    """One small file of each kind, referring to each other."""
    return {
        "branches": write_csv("branches", "code,name", "B1,Main", "B2,East"),
        "products": write_csv(
            "products", "name,sku,brand,price", "Pre-roll,S1,Phat Panda,12.50", "Gummies,S2,,"
        ),
        "customers": write_csv(
            "customers",
            "external_id,first_name,last_name,email,phone,gender,birth_date,customer_type,"
            "tags,tier,joined_at,home_branch,email_opt_in,sms_opt_in,push_opt_in,"
            "points_balance,lifetime_points,last_contacted_at",
            "C1,Ann,Lee,ann@example.com,+1 (416) 555-0101,female,1990-05-31,regular,"
            "VIP;Local,Gold,2024-01-15T09:30:00,B1,yes,TRUE,0,120,900,2024-06-01T12:00:00Z",
            "C2,Bob,,,,,,,,,2024-02-01T10:00:00-05:00,,,,,,,",
        ),
        "transactions": write_csv(
            "transactions",
            TXN_HEADER,
            "T1,C1,2024-03-01T12:00:00,purchase,20.00,B1",
            "T2,C1,2024-03-05T12:00:00,,30.50,",
            "T3,C1,2024-03-06T12:00:00,refund,5.25,B2",
            "T4,C2,2024-04-01T12:00:00,PURCHASE,7,",
        ),
        "items": write_csv(
            "items", ITEM_HEADER, "T1,S1,1,12.50", "T1,S2,2,7.50", "T2,S1,2,25.00", "T4,S2,1,7"
        ),
        "redemptions": write_csv(
            "redemptions",
            "external_id,customer_external_id,reward,points,redeemed_at",
            "R1,C1,Free coffee,100,2024-03-10T08:00:00",
            "R2,C2,Tote bag,,2024-04-02",
        ),
    }


def test_full_import_creates_every_row(run_import, full_files, merchant):
    # when
    report = run_import(**full_files)

    # then
    assert report.ok, report.errors
    assert {k: (c.rows, c.created, c.updated, c.unchanged) for k, c in report.counts.items()} == {
        "branches": (2, 2, 0, 0),
        "products": (2, 2, 0, 0),
        "customers": (2, 2, 0, 0),
        "transactions": (4, 4, 0, 0),
        "items": (4, 0, 3, 0),
        "redemptions": (2, 2, 0, 0),
    }
    assert report.counts["items"].lines_written == 4
    assert (report.tags_created, report.tiers_created) == (2, 1)

    ann = Customer.objects.get(merchant=merchant, external_id="C1")
    assert (ann.first_name, ann.last_name, ann.email) == ("Ann", "Lee", "ann@example.com")
    assert ann.phone == "+1 (416) 555-0101"
    assert ann.gender == Gender.FEMALE
    assert ann.birth_date == dt.date(1990, 5, 31)
    assert ann.customer_type == "regular"
    assert sorted(ann.tags.values_list("name", flat=True)) == ["Local", "VIP"]
    assert ann.tier is not None and ann.tier.name == "Gold"
    assert ann.home_branch == Branch.objects.get(merchant=merchant, code="B1")
    assert (ann.email_opt_in, ann.sms_opt_in, ann.push_opt_in) == (True, True, False)
    assert (ann.points_balance, ann.lifetime_points) == (120, 900)
    assert ann.last_contacted_at == dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)

    bob = Customer.objects.get(merchant=merchant, external_id="C2")
    assert bob.gender == Gender.UNSPECIFIED
    assert (bob.email, bob.tier, bob.home_branch, bob.email_opt_in) == ("", None, None, False)
    assert bob.joined_at == dt.datetime(2024, 2, 1, 15, tzinfo=dt.UTC)

    t2 = Transaction.objects.get(merchant=merchant, external_id="T2")
    assert (t2.kind, t2.total, t2.branch, t2.customer) == ("purchase", Decimal("30.50"), None, ann)
    assert Transaction.objects.get(external_id="T4").kind == "purchase"
    gummies = Product.objects.get(merchant=merchant, sku="S2")
    assert (gummies.brand, gummies.price) == ("", None)
    assert Redemption.objects.get(external_id="R2").points == 0


def test_naive_timestamps_are_read_in_the_merchant_time_zone(write_csv, run_import, merchant):
    # given: Toronto is UTC-5 in January, UTC-4 in July
    path = write_csv(
        "customers",
        "external_id,joined_at,last_contacted_at",
        "C1,2024-01-15T09:30:00,2024-07-01 09:30",
        "C2,2024-01-15T09:30:00+01:00,2024-07-01T09:30:00Z",
        "C3,2024-01-15,",
    )

    # when
    assert run_import(customers=path).ok

    # then
    c1, c2, c3 = Customer.objects.filter(merchant=merchant).order_by("external_id")
    assert c1.joined_at == dt.datetime(2024, 1, 15, 9, 30, tzinfo=TORONTO)
    assert c1.joined_at == dt.datetime(2024, 1, 15, 14, 30, tzinfo=dt.UTC)
    assert c1.last_contacted_at == dt.datetime(2024, 7, 1, 13, 30, tzinfo=dt.UTC)
    assert c2.joined_at == dt.datetime(2024, 1, 15, 8, 30, tzinfo=dt.UTC)
    assert c2.last_contacted_at == dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
    assert c3.joined_at == dt.datetime(2024, 1, 15, 5, 0, tzinfo=dt.UTC)


def test_importing_the_same_files_twice_changes_nothing(run_import, full_files, merchant):
    # given
    assert run_import(**full_files).ok
    stamps = dict(Customer.objects.values_list("external_id", "updated_at"))
    line_ids = sorted(LineItem.objects.values_list("id", flat=True))

    # when
    report = run_import(**full_files)

    # then
    assert report.ok, report.errors
    for counts in report.counts.values():
        assert (counts.created, counts.updated, counts.lines_written) == (0, 0, 0), counts
        assert counts.unchanged == (3 if counts.is_items else counts.rows)
    assert dict(Customer.objects.values_list("external_id", "updated_at")) == stamps
    assert sorted(LineItem.objects.values_list("id", flat=True)) == line_ids
    assert (Tag.objects.count(), Tier.objects.count()) == (2, 1)


def test_a_changed_row_updates_the_record(write_csv, run_import, merchant):
    # given
    header = "external_id,first_name,email,joined_at"
    run_import(
        customers=write_csv("customers", header, "C1,Ann,a@x.com,2024-01-01", "C2,Bob,,2024-01-01")
    )
    before = Customer.objects.get(external_id="C2").updated_at

    # when
    report = run_import(
        customers=write_csv("customers", header, "C1,Anna,a@x.com,2024-01-01", "C2,Bob,,2024-01-01")
    )

    # then
    counts = report.counts["customers"]
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 1)
    assert Customer.objects.get(external_id="C1").first_name == "Anna"
    assert Customer.objects.get(external_id="C2").updated_at == before


def test_an_empty_optional_cell_keeps_the_stored_value(write_csv, run_import, merchant):
    # given: a customer with every optional value stored
    tier = TierFactory(merchant=merchant, name="Gold")
    branch = BranchFactory(merchant=merchant, code="B1")
    customer = CustomerFactory(
        merchant=merchant, external_id="C1", email="a@x.com", gender=Gender.MALE, tier=tier,
        home_branch=branch, email_opt_in=True, points_balance=50, birth_date=dt.date(1990, 1, 1),
    )  # fmt: skip
    header = (
        "external_id,first_name,email,gender,tier,home_branch,email_opt_in,points_balance,"
        "birth_date,joined_at"
    )

    # when: only joined_at (required) changes, every optional cell is empty
    report = run_import(customers=write_csv("customers", header, "C1,,,,,,,,,2020-01-01T00:00:00Z"))

    # then
    assert report.counts["customers"].updated == 1
    customer.refresh_from_db()
    assert customer.joined_at == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert (customer.email, customer.gender, customer.tier, customer.home_branch) == (
        "a@x.com", Gender.MALE, tier, branch,
    )  # fmt: skip
    assert (customer.email_opt_in, customer.points_balance) == (True, 50)
    assert customer.birth_date == dt.date(1990, 1, 1)
    assert customer.first_name != ""


def test_tags_match_case_insensitively_and_replace_the_set(write_csv, run_import, merchant):
    # given: a stored tag "VIP" and a customer tagged "Old"
    vip = TagFactory(merchant=merchant, name="VIP")
    old = TagFactory(merchant=merchant, name="Old")
    CustomerFactory(merchant=merchant, external_id="C1", tags=[old])
    CustomerFactory(merchant=merchant, external_id="C2", tags=[old])
    header = "external_id,joined_at,tags"

    # when
    report = run_import(
        customers=write_csv(
            "customers", header,
            "C1,2024-01-01,vip; new Tag ;NEW TAG",
            "C2,2024-01-01,",
            "C3,2024-01-01,New tag;Vip",
        )
    )  # fmt: skip

    # then: "vip" is the stored VIP; "new Tag" is created once, spelled as first seen
    assert report.ok, report.errors
    assert report.tags_created == 1
    assert sorted(Tag.objects.filter(merchant=merchant).values_list("name", flat=True)) == [
        "Old", "VIP", "new Tag",
    ]  # fmt: skip
    c1 = Customer.objects.get(external_id="C1")
    assert sorted(c1.tags.values_list("name", flat=True)) == ["VIP", "new Tag"]
    # an empty tags cell leaves the tags alone
    assert list(Customer.objects.get(external_id="C2").tags.all()) == [old]
    assert set(Customer.objects.get(external_id="C3").tags.all()) == {
        vip,
        c1.tags.get(name="new Tag"),
    }
    assert report.counts["customers"].updated == 2  # both joined_at changed; C2 kept its tags


def test_tags_only_change_counts_as_an_update_and_semicolon_clears(write_csv, run_import, merchant):
    header = "external_id,joined_at,tags"
    run_import(customers=write_csv("customers", header, "C1,2024-01-01T00:00:00Z,a;b"))

    report = run_import(customers=write_csv("customers", header, "C1,2024-01-01T00:00:00Z,;"))

    assert report.counts["customers"].updated == 1
    assert Customer.objects.get(external_id="C1").tags.count() == 0


def test_tier_matches_by_name_case_insensitively(write_csv, run_import, merchant):
    gold = TierFactory(merchant=merchant, name="Gold", rank=3)
    path = write_csv(
        "customers", "external_id,joined_at,tier", "C1,2024-01-01,GOLD", "C2,2024-01-01,Silver"
    )

    report = run_import(customers=path)

    assert report.tiers_created == 1
    assert Customer.objects.get(external_id="C1").tier == gold
    silver = Customer.objects.get(external_id="C2").tier
    assert silver is not None and (silver.name, silver.rank) == ("Silver", 0)


def test_items_replace_the_stored_lines_of_their_transactions(write_csv, run_import, merchant):
    # given: T1 and T2 with stored lines
    s1 = ProductFactory(merchant=merchant, sku="S1")
    s2 = ProductFactory(merchant=merchant, sku="S2")
    t1 = TransactionFactory(customer=CustomerFactory(merchant=merchant), external_id="T1")
    t2 = TransactionFactory(customer=t1.customer, external_id="T2")
    t3 = TransactionFactory(customer=t1.customer, external_id="T3")
    LineItemFactory(transaction=t1, product=s1, quantity=1, amount=Decimal("5.00"))
    LineItemFactory(transaction=t1, product=s1, quantity=1, amount=Decimal("5.00"))
    LineItemFactory(transaction=t2, product=s1, quantity=1, amount=Decimal("5.00"))
    kept = LineItemFactory(transaction=t3, product=s2, quantity=4, amount=Decimal("1.00"))

    # when: T1 gets the same lines in another form, T2 gets new lines, T3 is not in the file
    report = run_import(
        items=write_csv(
            "items", ITEM_HEADER, "T2,S2,3,9.00", "T1,S1,1,5", "T2,S1,1,5.00", "T1,S1,1,5.00"
        )
    )

    # then
    counts = report.counts["items"]
    assert (counts.rows, counts.updated, counts.unchanged, counts.lines_written) == (4, 1, 1, 2)
    assert sorted(t2.items.values_list("product__sku", "quantity", "amount")) == [
        ("S1", 1, Decimal("5.00")), ("S2", 3, Decimal("9.00")),
    ]  # fmt: skip
    assert t1.items.count() == 2
    assert list(t3.items.all()) == [kept]

    # and importing it again changes nothing
    again = run_import(
        items=write_csv(
            "items", ITEM_HEADER, "T2,S2,3,9.00", "T1,S1,1,5", "T2,S1,1,5.00", "T1,S1,1,5.00"
        )
    )
    assert (again.counts["items"].updated, again.counts["items"].unchanged) == (0, 2)


def test_references_to_rows_already_stored(write_csv, run_import, merchant):
    # given: the branch, customer, product and transaction exist already
    BranchFactory(merchant=merchant, code="B7")
    customer = CustomerFactory(merchant=merchant, external_id="C7")
    ProductFactory(merchant=merchant, sku="S7")
    TransactionFactory(customer=customer, external_id="T7")

    # when
    report = run_import(
        transactions=write_csv("transactions", TXN_HEADER, "T8,C7,2024-01-01,purchase,3,B7"),
        items=write_csv("items", ITEM_HEADER, "T7,S7,1,3", "T8,S7,1,3"),
        redemptions=write_csv(
            "redemptions",
            "external_id,customer_external_id,reward,redeemed_at",
            "R7,C7,Mug,2024-01-02",
        ),
    )

    # then
    assert report.ok, report.errors
    assert customer.transactions.count() == 2
    assert LineItem.objects.filter(transaction__customer=customer).count() == 2


def test_another_merchants_rows_are_not_references(write_csv, run_import, other_merchant):
    CustomerFactory(merchant=other_merchant, external_id="C1")

    report = run_import(
        transactions=write_csv("transactions", TXN_HEADER, "T1,C1,2024-01-01,purchase,3,")
    )

    assert [e.column for e in report.errors] == ["customer_external_id"]


def test_same_keys_in_two_merchants_are_separate(write_csv, merchant, other_merchant):
    path = write_csv("branches", "code,name", "B1,Main")

    import_files(merchant=merchant, files={"branches": path})
    report = import_files(merchant=other_merchant, files={"branches": path})

    assert report.counts["branches"].created == 1
    assert Branch.objects.filter(code="B1").count() == 2


def test_metrics_are_exact_after_the_import(run_import, full_files, merchant):
    run_import(**full_files)

    ann = CustomerMetrics.objects.get(customer__external_id="C1")
    assert (ann.orders_count, ann.gross_spend) == (2, Decimal("50.50"))
    assert (ann.refunds_count, ann.refunds_total, ann.net_spend) == (
        1,
        Decimal("5.25"),
        Decimal("45.25"),
    )
    assert ann.avg_order_value == Decimal("25.25")
    assert ann.first_purchase_at == dt.datetime(2024, 3, 1, 12, tzinfo=TORONTO)
    assert ann.last_purchase_at == dt.datetime(2024, 3, 5, 12, tzinfo=TORONTO)
    assert ann.redemptions_count == 1
    assert CustomerMetrics.objects.filter(merchant=merchant).count() == 2


def test_moving_a_transaction_refreshes_both_customers(write_csv, run_import, merchant):
    # given
    ann = CustomerFactory(merchant=merchant, external_id="A")
    bob = CustomerFactory(merchant=merchant, external_id="B")
    TransactionFactory(customer=ann, external_id="T1", total=Decimal("10.00"))

    # when
    run_import(
        transactions=write_csv("transactions", TXN_HEADER, "T1,B,2024-01-01,purchase,10.00,")
    )

    # then
    assert CustomerMetrics.objects.get(customer=ann).orders_count == 0
    assert CustomerMetrics.objects.get(customer=bob).orders_count == 1


def test_merchant_wide_metrics_refresh_for_big_imports(write_csv, run_import, monkeypatch):
    monkeypatch.setattr("customers.imports.merge.MERCHANT_REFRESH_THRESHOLD", 1)
    files = {
        "customers": write_csv(
            "customers", "external_id,joined_at", "C1,2024-01-01", "C2,2024-01-01"
        ),
        "transactions": write_csv("transactions", TXN_HEADER, "T1,C1,2024-02-01,,4.00,"),
    }

    run_import(**files)

    assert CustomerMetrics.objects.get(customer__external_id="C1").orders_count == 1
    assert CustomerMetrics.objects.get(customer__external_id="C2").orders_count == 0


def test_dry_run_counts_but_writes_nothing(run_import, full_files, table_counts):
    before = table_counts()

    report = run_import(dry_run=True, **full_files)

    assert report.ok and report.dry_run and not report.written
    assert report.counts["customers"].created == 2
    assert report.counts["items"].lines_written == 4
    assert table_counts() == before


def test_binary_file_objects_are_accepted(merchant):
    upload = io.BytesIO("code,name\nB1,Montréal\n".encode())

    report = import_files(merchant=merchant, files={"branches": upload})

    assert report.ok, report.errors
    assert Branch.objects.get(merchant=merchant).name == "Montréal"
    assert not upload.closed
