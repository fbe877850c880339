"""The reports' summary (`CustomerSales`) is exactly the day, month and quarter sums of the
transactions.

Every expected row is recomputed here in Python from the transactions (the merchant-local
date through zoneinfo, cents as total * 100), never read back from the SQL under test, and
compared as a multiset, so a missing, extra or duplicated row fails. Times are Toronto
wall-clock times: 23:30 local is 03:30 (EDT) or 04:30 (EST) UTC on the next day, and
Toronto left daylight saving time on 2024-11-03 (01:00-02:00 happened twice).
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections import Counter, defaultdict
from decimal import Decimal
from io import StringIO
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.core.management import call_command

from analytics.selectors import Piece, pieces
from customers.imports import merge
from customers.metrics import refresh_merchant_metrics, refresh_merchant_sales, refresh_metrics
from customers.models import (
    Branch,
    Customer,
    CustomerSales,
    Merchant,
    SalesSpan,
    Transaction,
    TransactionKind,
)
from customers.services import merchant_update
from tests.factories import BranchFactory, CustomerFactory, TransactionFactory

pytestmark = pytest.mark.django_db

TORONTO = ZoneInfo("America/Toronto")
D, M, Q = SalesSpan.DAY, SalesSpan.MONTH, SalesSpan.QUARTER

#: (merchant, customer, branch, span, starts_on) -> (orders, refunds, gross_cents, refund_cents)
Key = tuple[int, int, int | None, str, dt.date]
Row = tuple[int, int, int | None, str, dt.date, int, int, int, int]
FIELDS = (
    "merchant_id",
    "customer_id",
    "branch_id",
    "span",
    "starts_on",
    "orders",
    "refunds",
    "gross_cents",
    "refund_cents",
)


def local(year: int, month: int, day: int, hour: int, minute: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TORONTO, fold=fold)


def expected_sales(merchant: Merchant) -> Counter[Row]:
    """The summary rows the merchant's transactions call for, computed in Python."""
    zone = ZoneInfo(merchant.time_zone)
    sums: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for t in Transaction.objects.filter(merchant=merchant):
        day = t.occurred_at.astimezone(zone).date()
        cents = int(t.total * 100)
        purchase = t.kind == TransactionKind.PURCHASE
        add = (1, 0, cents, 0) if purchase else (0, 1, 0, cents)
        quarter = day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
        for span, starts_on in ((D, day), (M, day.replace(day=1)), (Q, quarter)):
            row = sums[(t.merchant_id, t.customer_id, t.branch_id, str(span), starts_on)]
            for i, value in enumerate(add):
                row[i] += value
    return Counter((*key, *values) for key, values in sums.items())  # type: ignore[misc]


def stored_sales(merchant: Merchant) -> Counter[Row]:
    return Counter(CustomerSales.objects.filter(merchant=merchant).values_list(*FIELDS))


def stored_ids(merchant: Merchant) -> dict[Row, int]:
    """Each stored row's primary key: a row deleted and inserted again gets a new one."""
    return {
        tuple(row[:-1]): row[-1]
        for row in CustomerSales.objects.filter(merchant=merchant).values_list(*FIELDS, "pk")
    }


def assert_exact(merchant: Merchant) -> None:
    assert stored_sales(merchant) == expected_sales(merchant)


def assert_unchanged_rows_kept(before: dict[Row, int], after: dict[Row, int]) -> None:
    """Rows whose values a write did not change are not rewritten."""
    kept = before.keys() & after.keys()
    assert {row: after[row] for row in kept} == {row: before[row] for row in kept}


@pytest.fixture
def shop(merchant, other_merchant) -> dict[str, Any]:
    """Two Toronto customers with purchases and refunds at two branches and none, around
    the end of October 2024 (which is also the week the clocks went back) and the end of
    November, and a customer of another merchant (Paris) with rows of their own."""
    theirs = CustomerFactory(merchant=other_merchant)
    their_branch = BranchFactory(merchant=other_merchant)
    TransactionFactory(
        customer=theirs,
        branch=their_branch,
        occurred_at=dt.datetime(2024, 10, 31, 23, 30, tzinfo=ZoneInfo("Europe/Paris")),
        total=Decimal("9.99"),
    )
    return {
        "north": BranchFactory(merchant=merchant, code="N"),
        "south": BranchFactory(merchant=merchant, code="S"),
        "alice": CustomerFactory(merchant=merchant),
        "bob": CustomerFactory(merchant=merchant),
        "theirs": theirs,
    }


def write_history(shop: dict[str, Any], after_each=lambda: None) -> list[Transaction]:
    """The transactions of `shop`, written one by one through the write chain (save)."""
    north, south, alice, bob = shop["north"], shop["south"], shop["alice"], shop["bob"]
    specs = [
        # 23:30 EDT on the month's last day is 03:30 UTC on November 1st
        (alice, north, local(2024, 10, 31, 23, 30), False, "20.10"),
        (alice, north, local(2024, 10, 31, 12, 0), False, "5.05"),  # same day and branch
        (alice, south, local(2024, 10, 31, 23, 30), True, "3.33"),
        (alice, None, local(2024, 10, 31, 23, 59), False, "7.00"),
        (alice, None, local(2024, 11, 1, 0, 15), False, "0.00"),
        (alice, north, local(2024, 11, 2, 23, 30), False, "11.11"),
        # 01:30 happened twice on 2024-11-03: both are that day
        (alice, north, local(2024, 11, 3, 1, 30, fold=0), False, "1.00"),
        (alice, north, local(2024, 11, 3, 1, 30, fold=1), False, "2.00"),
        # 23:30 EST is 04:30 UTC on the 4th
        (alice, north, local(2024, 11, 3, 23, 30), True, "4.44"),
        (bob, south, local(2024, 9, 30, 23, 30), False, "12.34"),
        (bob, south, local(2024, 11, 30, 23, 30), False, "99.99"),
        (bob, None, local(2024, 12, 1, 0, 0), True, "0.01"),
        # the spring change (2024-03-10) and a leap day at a month end
        (bob, north, local(2024, 3, 10, 23, 30), False, "8.88"),
        (bob, north, local(2024, 2, 29, 23, 30), False, "123456.78"),
    ]
    written: list[Any] = []
    for customer, branch, at, refund, total in specs:
        written.append(
            TransactionFactory(
                customer=customer,
                branch=branch,
                occurred_at=at,
                refund=refund,
                total=Decimal(total),
            )
        )
        after_each()
    return written


def test_the_python_expectation_puts_23_30_on_the_local_day(shop, merchant):
    # given: the expectation's own premise, so the comparisons below mean something
    txn = TransactionFactory(
        customer=shop["alice"], occurred_at=local(2024, 10, 31, 23, 30), total=Decimal("1.50")
    )
    assert txn.occurred_at.astimezone(dt.UTC).date() == dt.date(2024, 11, 1)

    # then
    assert stored_sales(merchant) == Counter(
        {
            (merchant.pk, shop["alice"].pk, None, "d", dt.date(2024, 10, 31), 1, 0, 150, 0): 1,
            (merchant.pk, shop["alice"].pk, None, "m", dt.date(2024, 10, 1), 1, 0, 150, 0): 1,
            (merchant.pk, shop["alice"].pk, None, "q", dt.date(2024, 10, 1), 1, 0, 150, 0): 1,
        }
    )


def test_each_saved_transaction_keeps_the_summary_exact(shop, merchant, other_merchant):
    # given
    theirs = stored_ids(other_merchant)
    assert theirs

    # when / then: after every single write
    write_history(shop, after_each=lambda: assert_exact(merchant))

    assert stored_ids(other_merchant) == theirs
    rows = stored_sales(merchant)
    # alice: 6 (branch, day)s and 5 (branch, month)s; bob: 5 of each
    assert sum(n for row, n in rows.items() if row[3] == D) == 11
    assert sum(n for row, n in rows.items() if row[3] == M) == 10


def test_edits_moves_and_deletes_keep_the_summary_exact(shop, merchant, other_merchant):
    # given
    txns = write_history(shop)
    theirs = stored_ids(other_merchant)
    first, second, refund = txns[0], txns[1], txns[2]

    def change(txn: Transaction, **fields: Any) -> None:
        before = stored_ids(merchant)
        for name, value in fields.items():
            setattr(txn, name, value)
        txn.save()
        assert_exact(merchant)
        assert_unchanged_rows_kept(before, stored_ids(merchant))

    # when / then
    change(first, total=Decimal("21.21"))
    change(first, branch=shop["south"])
    change(second, branch=None)
    change(first, occurred_at=local(2024, 11, 15, 23, 30))  # another day and month
    change(first, occurred_at=local(2024, 11, 16, 9, 0))  # another day, same month
    change(refund, kind=TransactionKind.PURCHASE)
    change(second, customer=shop["bob"])  # both customers' rows follow

    before = stored_ids(merchant)
    txns[3].delete()
    assert_exact(merchant)
    assert_unchanged_rows_kept(before, stored_ids(merchant))

    for txn in Transaction.objects.filter(customer=shop["alice"]):
        txn.delete()
    assert_exact(merchant)
    assert not CustomerSales.objects.filter(customer=shop["alice"]).exists()
    assert stored_ids(other_merchant) == theirs


def test_the_merchant_refresh_gives_the_same_rows_and_a_rerun_rewrites_none(
    shop, merchant, other_merchant
):
    # given: the rows the per-customer path (the write chain) made
    write_history(shop)
    chain = stored_ids(merchant)
    theirs = stored_ids(other_merchant)

    # when
    refresh_merchant_metrics(merchant.pk)

    # then: the same rows, not even rewritten
    assert stored_ids(merchant) == chain
    assert_exact(merchant)

    # and so does every rerun, of either path
    refresh_merchant_metrics(merchant.pk)
    refresh_metrics([shop["alice"].pk, shop["bob"].pk])
    refresh_merchant_metrics(merchant.pk)
    assert stored_ids(merchant) == chain
    assert stored_ids(other_merchant) == theirs


def test_the_merchant_refresh_builds_the_rows_of_writes_that_bypassed_the_chain(
    shop, merchant, other_merchant
):
    # given: the per-customer path's rows, then queryset writes the refresh has to catch up
    write_history(shop)
    chain = stored_sales(merchant)
    theirs = stored_ids(other_merchant)
    CustomerSales.objects.filter(merchant=merchant).delete()
    Transaction.objects.bulk_create(
        Transaction(
            merchant=merchant,
            customer=shop["bob"],
            branch=shop["north"],
            external_id=f"bulk-{i}",
            occurred_at=local(2024, 12, 31, 23, 30) - dt.timedelta(days=i),
            total=Decimal("1.10") * (i + 1),
        )
        for i in range(3)
    )

    # when
    refresh_merchant_metrics(merchant.pk)

    # then: the chain's rows again, except bob's at the north branch in December (days and
    # month) and in the last quarter, which the new sales change
    assert_exact(merchant)
    rows = stored_sales(merchant)
    assert not {r for r in chain - rows if r[3] != Q}
    assert {(r[1], r[2], r[3], r[4].replace(day=1)) for r in rows - chain} == {
        (shop["bob"].pk, shop["north"].pk, D, dt.date(2024, 12, 1)),
        (shop["bob"].pk, shop["north"].pk, M, dt.date(2024, 12, 1)),
        (shop["bob"].pk, shop["north"].pk, Q, dt.date(2024, 10, 1)),
    }
    assert stored_ids(other_merchant) == theirs


def test_a_removed_branch_leaves_the_sums_right_and_a_refresh_merges_its_rows(shop, merchant):
    # given: alice bought on 2024-10-31 at the north branch and without a branch
    write_history(shop)

    # when: the branch goes (its transactions' and its rows' branch become NULL)
    shop["north"].delete()

    # then: the sums per customer and day or month are right already ...
    def by_day(rows: Counter[Row]) -> dict[Key, tuple[int, ...]]:
        sums: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for row, n in rows.items():
            for i, value in enumerate(row[5:]):
                sums[row[:5]][i] += value * n
        return {key: tuple(values) for key, values in sums.items()}

    assert by_day(stored_sales(merchant)) == by_day(expected_sales(merchant))

    # ... and the next refresh of the customers makes the rows exact
    refresh_metrics([shop["alice"].pk, shop["bob"].pk])
    assert_exact(merchant)


def test_the_migration_fill_recreates_the_rows_of_the_write_chain(shop, merchant, other_merchant):
    # given
    write_history(shop)
    chain = stored_sales(merchant)
    theirs = stored_ids(other_merchant)
    CustomerSales.objects.filter(merchant=merchant).delete()

    # when
    refresh_merchant_sales(merchant.pk)

    # then
    assert stored_sales(merchant) == chain
    assert stored_ids(other_merchant) == theirs

    # the migration's own function, over every merchant: nothing to redo
    filled = stored_ids(merchant)
    migration = importlib.import_module("customers.migrations.0014_customer_sales")
    migration.fill_sales(apps, None)
    assert stored_ids(merchant) == filled
    assert stored_ids(other_merchant) == theirs


TXN_HEADER = "external_id,customer_external_id,occurred_at,kind,total,branch"


def test_the_import_keeps_the_summary_exact(write_csv, run_import, merchant, monkeypatch):
    # given: naive times are Toronto's; T4 is the same instant as T1, written in UTC
    files = {
        "branches": write_csv("branches", "code,name", "B1,Main", "B2,East"),
        "customers": write_csv(
            "customers", "external_id,joined_at", "C1,2024-01-01", "C2,2024-01-01"
        ),
        "transactions": write_csv(
            "transactions",
            TXN_HEADER,
            "T1,C1,2024-10-31T23:30:00,purchase,20.10,B1",
            "T2,C1,2024-10-31T12:00:00,purchase,5.05,B1",
            "T3,C1,2024-10-31T23:30:00,refund,3.33,B2",
            "T4,C1,2024-11-01T03:30:00Z,purchase,7.00,",
            "T5,C2,2024-11-03T23:30:00,purchase,11.11,B2",
            "T6,C2,2024-11-30T23:30:00-05:00,refund,0.01,",
            "T7,C2,2024-03-10T23:30:00,purchase,8.88,B1",
        ),
    }

    # when
    report = run_import(**files)

    # then
    assert report.ok, report.errors
    c1 = Customer.objects.get(merchant=merchant, external_id="C1")
    assert CustomerSales.objects.filter(
        customer=c1, span=D, starts_on=dt.date(2024, 10, 31), branch=None, gross_cents=700
    ).exists()
    assert_exact(merchant)

    # when: a re-import changes a total, a branch, a day and a month, and an owner
    changed = write_csv(
        "transactions",
        TXN_HEADER,
        "T1,C1,2024-10-31T23:30:00,purchase,21.00,B2",
        "T5,C1,2024-12-01T00:30:00,purchase,11.11,B2",
        "T6,C2,2024-12-30T23:30:00,refund,0.01,B1",
    )
    report = run_import(transactions=changed)

    # then
    assert report.ok, report.errors
    assert report.counts["transactions"].updated == 3
    assert_exact(merchant)

    # when: a big import refreshes the whole merchant instead
    monkeypatch.setattr(merge, "MERCHANT_REFRESH_THRESHOLD", 0)
    report = run_import(
        transactions=write_csv(
            "transactions",
            TXN_HEADER,
            "T2,C2,2024-11-01T00:00:00,purchase,5.05,B1",
            "T8,C2,2025-01-01T00:00:00Z,refund,1.00,B2",
        )
    )

    # then
    assert report.ok, report.errors
    assert_exact(merchant)


@pytest.mark.slow
def test_the_generator_fills_an_exact_summary():
    # when
    call_command(
        "generate_dataset",
        "--merchant",
        "synth",
        "--customers",
        "40",
        "--seed",
        "3",
        "--now",
        "2026-06-15T18:30:00+00:00",
        stdout=StringIO(),
    )

    # then: every span sums to the transactions' totals ...
    merchant = Merchant.objects.get(slug="synth")
    txns = list(Transaction.objects.filter(merchant=merchant).values_list("kind", "total"))
    assert any(kind == TransactionKind.REFUND for kind, _ in txns)
    purchases = [int(total * 100) for kind, total in txns if kind == TransactionKind.PURCHASE]
    refunds = [int(total * 100) for kind, total in txns if kind == TransactionKind.REFUND]
    rows = stored_sales(merchant)
    for span in (D, M, Q):
        in_span = [(row, n) for row, n in rows.items() if row[3] == span]
        assert sum(row[5] * n for row, n in in_span) == len(purchases)
        assert sum(row[6] * n for row, n in in_span) == len(refunds)
        assert sum(row[7] * n for row, n in in_span) == sum(purchases)
        assert sum(row[8] * n for row, n in in_span) == sum(refunds)

    # ... each month row is the sum of its day rows ...
    months: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row, n in rows.items():
        if row[3] == D:
            key = (*row[:3], str(M), row[4].replace(day=1))
            for i, value in enumerate(row[5:]):
                months[key][i] += value * n
    assert Counter((*key, *values) for key, values in months.items()) == Counter(
        {row: n for row, n in rows.items() if row[3] == M}
    )

    # ... and the rows are exactly the Python computation's
    assert Branch.objects.filter(merchant=merchant).count() > 1
    assert_exact(merchant)


# --- analytics.selectors.pieces: which summary rows a period reads -------------------------


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.mark.django_db(False)
@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-10-05", "2024-10-20", [(D, "2024-10-05", "2024-10-20")]),
        ("2024-10-05", "2024-10-05", [(D, "2024-10-05", "2024-10-05")]),
        # the 1st to a month end: one month row
        ("2024-10-01", "2024-10-31", [(M, "2024-10-01", "2024-10-31")]),
        # partial edges around whole months
        (
            "2024-09-17",
            "2024-12-09",
            [
                (D, "2024-09-17", "2024-09-30"),
                (M, "2024-10-01", "2024-11-30"),
                (D, "2024-12-01", "2024-12-09"),
            ],
        ),
        # no whole month between the edges: days throughout
        ("2024-09-17", "2024-10-30", [(D, "2024-09-17", "2024-10-30")]),
        # from the 1st to mid-month
        ("2024-10-01", "2024-10-20", [(D, "2024-10-01", "2024-10-20")]),
        (
            "2024-10-01",
            "2024-11-20",
            [(M, "2024-10-01", "2024-10-31"), (D, "2024-11-01", "2024-11-20")],
        ),
        # ending on a month's last day
        (
            "2024-09-17",
            "2024-11-30",
            [(D, "2024-09-17", "2024-09-30"), (M, "2024-10-01", "2024-11-30")],
        ),
        # across a year end
        (
            "2024-12-15",
            "2025-02-10",
            [
                (D, "2024-12-15", "2024-12-31"),
                (M, "2025-01-01", "2025-01-31"),
                (D, "2025-02-01", "2025-02-10"),
            ],
        ),
        ("2024-12-01", "2025-01-31", [(M, "2024-12-01", "2025-01-31")]),
        ("2024-12-30", "2025-01-02", [(D, "2024-12-30", "2025-01-02")]),
        # a leap February, whole and up to its last day
        ("2024-02-01", "2024-02-29", [(M, "2024-02-01", "2024-02-29")]),
        (
            "2024-01-20",
            "2024-02-29",
            [(D, "2024-01-20", "2024-01-31"), (M, "2024-02-01", "2024-02-29")],
        ),
        ("2024-02-28", "2024-03-01", [(D, "2024-02-28", "2024-03-01")]),
        ("2023-02-01", "2023-02-28", [(M, "2023-02-01", "2023-02-28")]),
    ],
)
def test_pieces_reads_whole_months_from_month_rows_and_the_edges_from_day_rows(
    start, end, expected
):
    assert pieces(day(start), day(end)) == [Piece(s, day(a), day(b)) for s, a, b in expected]


def _is_month_end(date: dt.date) -> bool:
    return (date + dt.timedelta(days=1)).day == 1


def _next_1st(date: dt.date) -> dt.date:
    return (date.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _has_whole_month(first: dt.date, last: dt.date) -> bool:
    month = first if first.day == 1 else _next_1st(first)
    return _next_1st(month) <= last + dt.timedelta(days=1)


@pytest.mark.django_db(False)
def test_pieces_cover_every_period_exactly_once_with_the_fewest_rows():
    # every (start, end) in ~400 days around two year ends and a leap February
    days = [dt.date(2023, 12, 1) + dt.timedelta(days=i) for i in range(411)]
    for i, start in enumerate(days):
        for end in days[i:]:
            runs = pieces(start, end)
            spans = "".join(str(p.span) for p in runs)
            # no gap and no overlap: the runs follow each other from start to end
            assert runs[0].first == start and runs[-1].last == end, (start, end)
            assert all(a.last + dt.timedelta(days=1) == b.first for a, b in pairwise(runs))
            assert all(p.first <= p.last for p in runs), (start, end, runs)
            # month rows (starts_on the 1st) stand for whole months only
            assert all(p.first.day == 1 and _is_month_end(p.last) for p in runs if p.span == M), (
                start,
                end,
            )
            # the fewest rows: days only at the edges, never a whole month of them
            assert spans in ("d", "m", "dm", "md", "dmd"), (start, end, spans)
            assert not any(_has_whole_month(p.first, p.last) for p in runs if p.span == D), (
                start,
                end,
            )


def test_the_pieces_of_any_period_sum_to_its_transactions(shop, merchant):
    # given
    write_history(shop)
    rows = stored_sales(merchant)
    txns = [
        (t.occurred_at.astimezone(TORONTO).date(), t.kind, int(t.total * 100))
        for t in Transaction.objects.filter(merchant=merchant)
    ]
    days = [dt.date(2024, 9, 25) + dt.timedelta(days=i) for i in range(75)]

    for i, start in enumerate(days):
        for end in days[i:]:
            # when: the rows of each piece, as the reports select them
            read = [
                (row, n)
                for piece in pieces(start, end)
                for row, n in rows.items()
                if row[3] == piece.span and piece.first <= row[4] <= piece.last
            ]

            # then
            inside = [(kind, cents) for on, kind, cents in txns if start <= on <= end]
            assert sum(row[7] * n for row, n in read) == sum(
                c for k, c in inside if k == TransactionKind.PURCHASE
            ), (start, end)
            assert sum(row[8] * n for row, n in read) == sum(
                c for k, c in inside if k == TransactionKind.REFUND
            ), (start, end)
            assert sum(row[5] * n for row, n in read) == sum(
                1 for k, _ in inside if k == TransactionKind.PURCHASE
            ), (start, end)


def test_deleting_a_customer_deletes_its_rows(shop, merchant, other_merchant):
    # given
    write_history(shop)
    theirs = stored_ids(other_merchant)

    # when
    shop["alice"].delete()

    # then
    assert not CustomerSales.objects.filter(customer_id=shop["alice"].pk).exists()
    assert_exact(merchant)
    assert stored_ids(other_merchant) == theirs


def test_a_new_time_zone_moves_the_rows_to_the_new_local_days(shop, merchant):
    # given: alice's 23:30 (Toronto) purchases are on the next day in UTC
    write_history(shop)

    # when
    merchant_update(merchant=merchant, time_zone="UTC")

    # then
    assert_exact(merchant)


@pytest.mark.django_db(False)
@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # a quarter exactly: one quarter row
        ("2024-10-01", "2024-12-31", [(Q, "2024-10-01", "2024-12-31")]),
        # a year to a day in December: edge days, months, three quarters, months, days
        (
            "2024-12-06",
            "2025-12-05",
            [
                (D, "2024-12-06", "2024-12-31"),
                (Q, "2025-01-01", "2025-09-30"),
                (M, "2025-10-01", "2025-11-30"),
                (D, "2025-12-01", "2025-12-05"),
            ],
        ),
        (
            "2024-08-15",
            "2025-01-31",
            [
                (D, "2024-08-15", "2024-08-31"),
                (M, "2024-09-01", "2024-09-30"),
                (Q, "2024-10-01", "2024-12-31"),
                (M, "2025-01-01", "2025-01-31"),
            ],
        ),
        # no whole quarter: as without quarters
        (
            "2024-09-17",
            "2024-12-09",
            [
                (D, "2024-09-17", "2024-09-30"),
                (M, "2024-10-01", "2024-11-30"),
                (D, "2024-12-01", "2024-12-09"),
            ],
        ),
    ],
)
def test_pieces_with_quarters_read_whole_quarters_from_quarter_rows(start, end, expected):
    assert pieces(day(start), day(end), quarters=True) == [
        Piece(s, day(a), day(b)) for s, a, b in expected
    ]


def _is_quarter_end(date: dt.date) -> bool:
    return _is_month_end(date) and date.month % 3 == 0


@pytest.mark.django_db(False)
def test_pieces_with_quarters_cover_every_period_exactly_once():
    days = [dt.date(2023, 11, 1) + dt.timedelta(days=i) for i in range(430)]
    for i, start in enumerate(days):
        for end in days[i:]:
            runs = pieces(start, end, quarters=True)
            assert runs[0].first == start and runs[-1].last == end, (start, end)
            assert all(a.last + dt.timedelta(days=1) == b.first for a, b in pairwise(runs))
            for p in runs:
                if p.span == Q:
                    assert p.first.day == 1 and p.first.month % 3 == 1, (start, end, p)
                    assert _is_quarter_end(p.last), (start, end, p)
                if p.span == M:
                    assert p.first.day == 1 and _is_month_end(p.last), (start, end, p)
            spans = "".join(str(p.span) for p in runs)
            # at most one run of quarters, with days and months only at its sides
            if "q" in spans:
                before, after = spans.split("q")
                assert before in ("", "d", "m", "dm") and after in ("", "d", "m", "md"), spans
            else:
                assert spans in ("d", "m", "dm", "md", "dmd"), (start, end, spans)
