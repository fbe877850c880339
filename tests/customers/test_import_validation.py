"""Every kind of bad input is reported with file, line, column and reason; nothing is written."""

from __future__ import annotations

import pytest

from customers.imports import MAX_ERRORS
from customers.models import Customer
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

CUSTOMER_HEADER = "external_id,joined_at"
TXN_HEADER = "external_id,customer_external_id,occurred_at,total"


def _customers_with(write_csv, column: str, value: str):
    return write_csv(
        "customers",
        f"external_id,joined_at,{column}",
        "C1,2024-01-01T10:00:00,",
        f'C2,2024-01-01T10:00:00,"{value}"',
    )


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("email", "bob@", '"bob@" is not a valid email address'),
        # valid by Django's validator (up to 320), longer than the column (254)
        ("email", "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com", "longer than 254"),
        ("phone", "12ab", '"12ab" is not a valid phone number (7 to 15 digits)'),
        ("phone", "+1 23", '"+1 23" is not a valid phone number (7 to 15 digits)'),
        ("gender", "f", '"f" is not a gender (female, male, other, or empty)'),
        ("birth_date", "31/12/1990", '"31/12/1990" is not an ISO date (e.g. 1990-05-31)'),
        ("email_opt_in", "maybe", '"maybe" is not a boolean (true/false, 1/0, yes/no)'),
        ("points_balance", "-5", '"-5" is not a whole number of 0 or more'),
        ("lifetime_points", "1.5", '"1.5" is not a whole number of 0 or more'),
        ("points_balance", "99999999999", '"99999999999" is too large'),
        (
            "last_contacted_at",
            "yesterday",
            '"yesterday" is not an ISO 8601 timestamp (e.g. 2024-05-31T14:30:00)',
        ),
        ("first_name", "x" * 101, "is longer than 100 characters"),
        ("home_branch", "B9", 'branch "B9" does not exist (neither in this import nor stored)'),
        ("tags", "ok;" + "x" * 101, "is longer than 100 characters"),
        ("tier", "x" * 101, "is longer than 100 characters"),
    ],
)
def test_bad_customer_cell_is_reported_with_line_and_column(
    write_csv, run_import, column, value, message
):
    # given
    path = _customers_with(write_csv, column, value)

    # when
    report = run_import(customers=path)

    # then
    assert not report.ok
    assert len(report.errors) == 1
    error = report.errors[0]
    assert (error.file, error.line, error.column) == ("customers.csv", 3, column)
    assert message in error.message
    assert str(error).startswith(f"customers.csv line 3, column {column}: ")
    assert Customer.objects.count() == 0


def test_the_contract_example_message(write_csv, run_import):
    lines = ["external_id,email,joined_at"] + [
        f"C{i},c{i}@example.com,2024-01-01" for i in range(2, 14)
    ]
    lines.append("C14,bob@,2024-01-01")
    path = write_csv("customers", *lines)

    report = run_import(customers=path)

    assert [str(e) for e in report.errors] == [
        'customers.csv line 14, column email: "bob@" is not a valid email address'
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", '"abc" is not an amount (e.g. 12.50)'),
        ("-1.00", '"-1.00" is negative'),
        ("1.999", '"1.999" has more than two decimals'),
        ("1e3", '"1e3" is not an amount (e.g. 12.50)'),
        ("1234567890123", '"1234567890123" is too large'),
    ],
)
def test_bad_money_is_reported(write_csv, run_import, value, message):
    path = write_csv("products", "sku,name,price", f"S1,Thing,{value}")

    report = run_import(products=path)

    assert [str(e) for e in report.errors] == [f"products.csv line 2, column price: {message}"]


def test_money_accepts_trailing_zeros_and_whole_numbers(write_csv, run_import):
    path = write_csv("products", "sku,name,price", "S1,A,1.500", "S2,B,7", "S3,C,0.5")

    report = run_import(products=path)

    assert report.ok, report.errors


@pytest.mark.parametrize(
    ("header", "row", "column", "message"),
    [
        ("external_id,customer_external_id,occurred_at,total", "T1,C1,2024-01-01,", "total",
         "is required"),
        ("external_id,customer_external_id,occurred_at,total,kind", "T1,C1,2024-01-01,5,sale",
         "kind", '"sale" is not a transaction kind (purchase or refund)'),
        ("external_id,customer_external_id,occurred_at,total", "T1,C1,2024-13-01,5",
         "occurred_at", '"2024-13-01" is not an ISO 8601 timestamp'),
        ("external_id,customer_external_id,occurred_at,total", "T1,C404,2024-01-01,5",
         "customer_external_id",
         'customer "C404" does not exist (neither in this import nor stored)'),
        ("external_id,customer_external_id,occurred_at,total,branch", "T1,C1,2024-01-01,5,B9",
         "branch", 'branch "B9" does not exist'),
        ("external_id,customer_external_id,occurred_at,total,points_earned",
         "T1,C1,2024-01-01,5,-1", "points_earned", '"-1" is not a whole number of 0 or more'),
    ],
)  # fmt: skip
def test_bad_transaction_is_reported(write_csv, run_import, merchant, header, row, column, message):
    CustomerFactory(merchant=merchant, external_id="C1")
    path = write_csv("transactions", header, row)

    report = run_import(transactions=path)

    assert len(report.errors) == 1
    assert (report.errors[0].line, report.errors[0].column) == (2, column)
    assert message in report.errors[0].message


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("T404,S1,1,5.00", "transaction_external_id", 'transaction "T404" does not exist'),
        ("T1,S404,1,5.00", "sku", 'product "S404" does not exist'),
        ("T1,S1,0,5.00", "quantity", '"0" is not a whole number of 1 or more'),
        ("T1,S1,1,", "amount", "is required"),
    ],
)
def test_bad_item_is_reported(write_csv, run_import, row, column, message):
    files = {
        "products": write_csv("products", "sku,name", "S1,Thing"),
        "customers": write_csv("customers", CUSTOMER_HEADER, "C1,2024-01-01"),
        "transactions": write_csv(
            "transactions",
            "external_id,customer_external_id,occurred_at,total",
            "T1,C1,2024-01-02,5",
        ),
        "items": write_csv("items", "transaction_external_id,sku,quantity,amount", row),
    }

    report = run_import(**files)

    assert len(report.errors) == 1
    assert (report.errors[0].file, report.errors[0].line) == ("items.csv", 2)
    assert report.errors[0].column == column
    assert message in report.errors[0].message


def test_redemption_needs_an_existing_customer(write_csv, run_import):
    path = write_csv(
        "redemptions",
        "external_id,customer_external_id,reward,redeemed_at",
        "R1,C404,Coffee,2024-01-01",
    )

    report = run_import(redemptions=path)

    assert [str(e) for e in report.errors] == [
        'redemptions.csv line 2, column customer_external_id: customer "C404" does not exist '
        "(neither in this import nor stored)"
    ]


def test_duplicate_key_names_both_lines(write_csv, run_import):
    path = write_csv("branches", "code,name", "B1,Main", "B2,East", "B1,Again")

    report = run_import(branches=path)

    assert [str(e) for e in report.errors] == [
        'branches.csv line 4, column code: "B1" appears more than once (first on line 2)'
    ]


@pytest.mark.parametrize(
    ("header", "column", "message"),
    [
        ("external_id,joined_at,shoe_size", "shoe_size", "unknown column (the customers file"),
        ("external_id", "joined_at", "required column is missing"),
        ("external_id,joined_at,email,email", "email", "column appears more than once"),
    ],
)
def test_header_errors(write_csv, run_import, header, column, message):
    path = write_csv("customers", header, "C1,2024-01-01")

    report = run_import(customers=path)

    assert [(e.line, e.column) for e in report.errors] == [(1, column)]
    assert message in report.errors[0].message


def test_empty_file_is_an_error(write_csv, run_import):
    path = write_csv("branches")  # just a newline

    report = run_import(branches=path)

    assert [str(e) for e in report.errors] == [
        "branches.csv line 1: the file is empty (a header row is required)"
    ]


def test_row_with_wrong_number_of_fields(write_csv, run_import):
    path = write_csv("branches", "code,name", "B1,Main,extra")

    report = run_import(branches=path)

    assert [str(e) for e in report.errors] == [
        "branches.csv line 2: the row has 3 fields, the header has 2"
    ]


def test_file_that_is_not_utf8(write_csv, run_import):
    path = write_csv("branches", "code,name", "B1,Montréal", encoding="latin-1")

    report = run_import(branches=path)

    assert len(report.errors) == 1
    assert report.errors[0].line == 2
    assert "not UTF-8" in report.errors[0].message


def test_line_numbers_are_physical_lines(write_csv, run_import):
    # given: a quoted cell spanning two lines, and a blank line
    path = write_csv("branches", "code,name", 'B1,"Main', 'Street"', "", "B2,East", ",Nameless")

    # when
    report = run_import(branches=path)

    # then: the bad row starts on physical line 6
    assert [str(e) for e in report.errors] == ["branches.csv line 6, column code: is required"]
    assert report.counts["branches"].rows == 3


def test_a_bom_is_accepted(write_csv, run_import):
    path = write_csv("branches", "code,name", "B1,Main", bom=True)

    report = run_import(branches=path)

    assert report.ok, report.errors
    assert report.counts["branches"].created == 1


def test_at_most_50_errors_are_reported(write_csv, run_import):
    path = write_csv("branches", "code,name", *[f"B{i}," for i in range(80)])

    report = run_import(branches=path)

    assert len(report.errors) == MAX_ERRORS
    assert report.truncated
    assert report.errors[0].line == 2
    assert report.errors[-1].line == MAX_ERRORS + 1


def test_errors_are_ordered_by_file_then_line(write_csv, run_import):
    files = {
        "customers": write_csv("customers", CUSTOMER_HEADER, "C1,nope", "C2,2024-01-01"),
        "branches": write_csv("branches", "code,name", "B1,", "B2,ok"),
    }

    report = run_import(**files)

    assert [(e.file, e.line) for e in report.errors] == [
        ("branches.csv", 2),
        ("customers.csv", 2),
    ]


def test_a_bad_row_does_not_cascade_into_reference_errors(write_csv, run_import):
    # given: customer C1 has a bad email, and a transaction refers to C1
    files = {
        "customers": write_csv("customers", "external_id,email,joined_at", "C1,bad,2024-01-01"),
        "transactions": write_csv(
            "transactions",
            "external_id,customer_external_id,occurred_at,total",
            "T1,C1,2024-01-02,5",
        ),
    }

    report = run_import(**files)

    # then: only the email is reported, not "customer C1 does not exist"
    assert [e.column for e in report.errors] == ["email"]


def test_nothing_is_written_when_any_row_is_bad(write_csv, run_import, table_counts, merchant):
    # given: stored data, and a full import whose very last row is bad
    CustomerFactory(merchant=merchant, external_id="C9")
    before = table_counts()
    files = {
        "branches": write_csv("branches", "code,name", "B1,Main"),
        "products": write_csv("products", "sku,name", "S1,Thing"),
        "customers": write_csv(
            "customers", "external_id,joined_at,tags,tier", "C1,2024-01-01,New tag,New tier"
        ),
        "transactions": write_csv("transactions", TXN_HEADER, "T1,C1,2024-01-02,5"),
        "items": write_csv("items", "transaction_external_id,sku,quantity,amount", "T1,S1,1,5"),
        "redemptions": write_csv(
            "redemptions", "external_id,customer_external_id,reward,redeemed_at",
            "R1,C1,Coffee,2024-01-03", "R2,C1,Coffee,not a date",
        ),
    }  # fmt: skip

    # when
    report = run_import(**files)

    # then: not even the tag and tier met while reading were kept
    assert [(e.file, e.line, e.column) for e in report.errors] == [
        ("redemptions.csv", 3, "redeemed_at")
    ]
    assert table_counts() == before


def test_unknown_file_name_is_a_programming_error(merchant, write_csv):
    from customers.imports import import_files

    with pytest.raises(ValueError, match="unknown import file 'orders'"):
        import_files(merchant=merchant, files={"orders": write_csv("orders", "a")})


# -- values no database can hold (the Hardening issue, point 7) --------------------------------


@pytest.mark.parametrize(
    ("joined_at", "time_zone"),
    [
        ("0001-01-01T00:00:00", "Asia/Tokyo"),  # local midnight is the year 0 in UTC
        ("9999-12-31T22:00:00-05:00", "UTC"),  # its UTC instant is in the year 10000
        ("0001-01-01T10:00:00+00:00", "UTC"),  # no day to spare for a page's time zone
        ("9999-12-31T12:00:00", "America/Toronto"),
    ],
)
def test_timestamps_off_the_calendar_are_line_and_column_errors(
    write_csv, run_import, merchant, joined_at, time_zone, table_counts
):
    # given a merchant whose time zone decides what a timestamp without offset means
    merchant.time_zone = time_zone
    merchant.save()
    before = table_counts()
    path = write_csv("customers", CUSTOMER_HEADER, "C1,2024-01-01T10:00:00", f"C2,{joined_at}")

    # when
    report = run_import(customers=path)

    # then the cell is named, and nothing was written
    assert [(e.line, e.column) for e in report.errors] == [(3, "joined_at")]
    assert "is out of range (timestamps lie between 0001-01-02 and 9999-12-30 UTC)" in (
        report.errors[0].message
    )
    assert table_counts() == before


def test_the_edges_of_the_calendar_are_accepted(write_csv, run_import, merchant):
    path = write_csv(
        "customers",
        CUSTOMER_HEADER,
        "C1,0001-01-02T12:00:00+00:00",
        "C2,9999-12-30T12:00:00+00:00",
    )
    report = run_import(customers=path)
    assert report.ok, report.errors
    assert Customer.objects.filter(merchant=merchant).count() == 2


@pytest.mark.parametrize("column", ["first_name", "external_id", "tags", "customer_type"])
def test_a_nul_byte_is_a_line_and_column_error(write_csv, run_import, column, table_counts):
    before = table_counts()
    path = write_csv(
        "customers",
        f"external_id,joined_at,{column}" if column != "external_id" else CUSTOMER_HEADER,
        "C1,2024-01-01T10:00:00" + (",ok" if column != "external_id" else ""),
        (
            "C\x002,2024-01-01T10:00:00"
            if column == "external_id"
            else "C2,2024-01-01T10:00:00,a\x00b"
        ),
    )

    report = run_import(customers=path)

    assert [(e.line, e.column) for e in report.errors] == [(3, column)]
    assert "contains a NUL character (\\u0000), which cannot be stored" in report.errors[0].message
    assert table_counts() == before
