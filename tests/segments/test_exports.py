"""Member downloads: rows, columns, scoping, formula neutralisation, time zones, XLSX.

The same tests run on SQLite (the Python writer) and on PostgreSQL (COPY); the expected cells
are the same strings on both, so the two paths cannot drift apart.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import openpyxl
import pytest
from django.db import connection
from django.urls import reverse

from customers.models import Customer
from segments import exports
from segments.models import Segment, SegmentKind, SegmentMembership
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    MerchantFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
)

pytestmark = pytest.mark.django_db

UTC = dt.UTC
ON_POSTGRESQL = connection.vendor == "postgresql"
DEFAULT_HEADER = [
    "External id",
    "First name",
    "Last name",
    "Email",
    "Phone",
    "Tier",
    "Joined at",
    "Member since",
    "Net spend (CAD)",
    "Orders",
    "Last purchase at",
]


def make_segment(merchant, slug, *customers, since=None):
    segment = Segment.objects.create(
        merchant=merchant, name=slug.title(), slug=slug, kind=SegmentKind.MANUAL
    )
    for customer in customers:
        SegmentMembership.objects.create(
            segment=segment, customer=customer, since=since or dt.datetime(2026, 3, 1, tzinfo=UTC)
        )
    return segment


def csv_rows(segment, columns=None, **kwargs) -> list[list[str]]:
    content = b"".join(exports.stream_members_csv(segment=segment, columns=columns, **kwargs))
    return list(csv.reader(io.StringIO(content.decode(), newline="")))


def xlsx_rows(segment, columns=None) -> list[tuple]:
    content = b"".join(exports.stream_members_xlsx(segment=segment, columns=columns))
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    return list(workbook["Members"].iter_rows(values_only=True))


@pytest.fixture
def ann(merchant):
    """A member with every column filled in, some of them formula-like."""
    gold = TierFactory(merchant=merchant, name="Gold")
    customer = CustomerFactory(
        merchant=merchant,
        external_id="C001",
        first_name="=SUM(1)",
        last_name="+A1",
        email="@x.example",
        phone="-2",
        gender="female",
        birth_date=dt.date(1990, 5, 17),
        customer_type="vendor",
        tier=gold,
        home_branch=BranchFactory(merchant=merchant, code="TOR1"),
        # 17:30:45.5 UTC in January is 12:30:45 in Toronto (EST, UTC-5).
        joined_at=dt.datetime(2026, 1, 15, 17, 30, 45, 500000, tzinfo=UTC),
        email_opt_in=True,
        points_balance=120,
        lifetime_points=900,
        last_contacted_at=dt.datetime(2026, 7, 1, 16, 0, tzinfo=UTC),
        tags=[
            TagFactory(merchant=merchant, name="vip"),
            TagFactory(merchant=merchant, name="=cmd"),
        ],
    )
    TransactionFactory(
        customer=customer, total=Decimal("30.00"), occurred_at=dt.datetime(2026, 2, 1, tzinfo=UTC)
    )
    TransactionFactory(
        customer=customer,
        total=Decimal("15.50"),
        occurred_at=dt.datetime(2026, 6, 10, 22, 15, tzinfo=UTC),
    )
    return customer


def test_rows_are_the_members_in_external_id_order_with_the_default_columns(merchant):
    # given
    customers = [CustomerFactory(merchant=merchant, external_id=f"C{n:03d}") for n in (5, 2, 9)]
    CustomerFactory(merchant=merchant, external_id="C004")  # not a member
    segment = make_segment(merchant, "vips", *customers)

    # when
    rows = csv_rows(segment)

    # then
    assert rows[0] == DEFAULT_HEADER
    assert [row[0] for row in rows[1:]] == ["C002", "C005", "C009"]
    assert all(len(row) == len(DEFAULT_HEADER) for row in rows)


def test_every_column_is_written_the_same_way_by_both_databases(merchant, ann):
    # given
    segment = make_segment(merchant, "vips", ann, since=dt.datetime(2026, 3, 1, 5, 0, tzinfo=UTC))

    # when
    header, row = csv_rows(segment, columns=list(exports.MEMBER_COLUMNS))

    # then
    assert dict(zip(header, row, strict=True)) == {
        "External id": "C001",
        "First name": "'=SUM(1)",
        "Last name": "'+A1",
        "Email": "'@x.example",
        "Phone": "'-2",
        "Gender": "female",
        "Birth date": "1990-05-17",
        "Customer type": "vendor",
        "Tier": "Gold",
        "Home branch": "TOR1",
        "Tags": "'=cmd;vip",
        "Joined at": "2026-01-15 12:30:45-05",
        "Member since": "2026-03-01 00:00:00-05",
        "Email opt-in": "true",
        "SMS opt-in": "false",
        "Push opt-in": "false",
        "Points balance": "120",
        "Lifetime points": "900",
        "Last contacted at": "2026-07-01 12:00:00-04",
        "Orders": "2",
        "Net spend (CAD)": "45.50",
        "Average order (CAD)": "22.75",
        "First purchase at": "2026-01-31 19:00:00-05",
        "Last purchase at": "2026-06-10 18:15:00-04",
    }


def test_chosen_columns_come_in_the_chosen_order_and_empty_values_are_empty(merchant):
    # given: no tier, no purchase, no tags
    bob = CustomerFactory(merchant=merchant, external_id="C002", email="bob@example.com")
    segment = make_segment(merchant, "vips", bob)

    # when
    rows = csv_rows(segment, columns=["email", "external_id", "tier", "last_purchase_at", "tags"])

    # then
    assert rows == [
        ["Email", "External id", "Tier", "Last purchase at", "Tags"],
        ["bob@example.com", "C002", "", "", ""],
    ]


def test_duplicate_keys_give_one_column_and_no_keys_the_defaults():
    assert [c.key for c in exports.resolve_columns(["email", "email", "tier"])] == [
        "email",
        "tier",
    ]
    assert [c.key for c in exports.resolve_columns([])] == list(exports.DEFAULT_COLUMNS)


def test_an_unknown_column_is_refused_before_anything_is_read(merchant):
    segment = make_segment(merchant, "vips")

    with pytest.raises(ValueError, match='Unknown column "password"'):
        exports.stream_members_csv(segment=segment, columns=["email", "password"])
    with pytest.raises(ValueError, match='Unknown column "password"'):
        exports.stream_members_xlsx(segment=segment, columns=["password"])
    with pytest.raises(ValueError, match='Unknown download format "pdf"'):
        exports.members_download_response(segment=segment, fmt="pdf")


def test_only_this_segments_members_of_its_own_merchant_are_written(merchant, other_merchant):
    # given
    ann, bob = (CustomerFactory(merchant=merchant, external_id=x) for x in ("C001", "C002"))
    rival = CustomerFactory(merchant=other_merchant, external_id="C003")
    segment = make_segment(merchant, "vips", ann)
    make_segment(merchant, "others", bob)
    make_segment(other_merchant, "vips", rival)
    # A membership pointing at another merchant's customer, which the services never write:
    # the download's own merchant filter still keeps it out.
    SegmentMembership.objects.create(segment=segment, customer=rival)

    # when
    csv_ids = [row[0] for row in csv_rows(segment, columns=["external_id"])[1:]]
    xlsx_ids = [row[0] for row in xlsx_rows(segment, columns=["external_id"])[1:]]

    # then
    assert csv_ids == xlsx_ids == ["C001"]


def test_timestamps_are_in_the_merchants_time_zone(merchant, other_merchant):
    # given: the same instant for a Toronto and a Paris merchant, in winter and in summer
    winter, summer = (
        dt.datetime(2026, 1, 15, 17, 30, tzinfo=UTC),
        dt.datetime(2026, 7, 1, 16, 0, tzinfo=UTC),
    )
    segments = []
    for owner in (merchant, other_merchant):
        customer = CustomerFactory(merchant=owner, joined_at=winter)
        segments.append(make_segment(owner, "vips", customer, since=summer))

    # when
    toronto, paris = (csv_rows(s, columns=["joined_at", "since"])[1] for s in segments)

    # then
    assert toronto == ["2026-01-15 12:30:00-05", "2026-07-01 12:00:00-04"]
    assert paris == ["2026-01-15 18:30:00+01", "2026-07-01 18:00:00+02"]


def test_an_offset_with_minutes_is_written_with_them():
    # given: a merchant in Kolkata (UTC+05:30) and a member who joined at 07:00:59.9 UTC
    kolkata = MerchantFactory(time_zone="Asia/Kolkata")
    joined = dt.datetime(2026, 1, 15, 7, 0, 59, 900000, tzinfo=UTC)
    segment = make_segment(kolkata, "vips", CustomerFactory(merchant=kolkata, joined_at=joined))

    # when
    rows = csv_rows(segment, columns=["joined_at"])

    # then: truncated to the second, the offset's minutes kept; Python reads it back
    assert rows[1] == ["2026-01-15 12:30:59+05:30"]
    assert dt.datetime.fromisoformat(rows[1][0]) == joined.replace(microsecond=0)


def test_a_download_leaves_the_connection_reading_timestamps_right(merchant):
    # given
    joined = dt.datetime(2026, 1, 15, 17, 30, tzinfo=UTC)
    customer = CustomerFactory(merchant=merchant, joined_at=joined)
    segment = make_segment(merchant, "vips", customer)

    # when: a download, then a read on the same connection and in the same transaction
    csv_rows(segment)

    # then
    assert Customer.objects.get(pk=customer.pk).joined_at == joined


def test_an_abandoned_download_leaves_the_connection_usable(merchant, monkeypatch):
    # given: a download of several chunks
    joined = dt.datetime(2026, 1, 15, 17, 30, tzinfo=UTC)
    customers = [CustomerFactory(merchant=merchant, joined_at=joined) for _ in range(30)]
    segment = make_segment(merchant, "vips", *customers)
    monkeypatch.setattr(exports, "CHUNK_BYTES", 200)

    # when: the client goes away after the first chunk
    stream = exports.stream_members_csv(segment=segment)
    next(stream)
    stream.close()

    # then
    assert Customer.objects.get(pk=customers[0].pk).joined_at == joined
    assert len(csv_rows(segment)) == 31


def test_the_currency_in_a_header_is_written_as_it_is(merchant):
    # given: a currency the form would refuse, saved some other way
    merchant.currency = 'X"%'
    merchant.save()
    segment = make_segment(merchant, "vips", CustomerFactory(merchant=merchant))

    # when
    header = csv_rows(segment, columns=["net_spend"])[0]

    # then
    assert header == ['Net spend (X"%)']


def test_numbers_are_never_neutralised(merchant):
    # given: a refund without any order, so a negative net spend
    customer = CustomerFactory(merchant=merchant, external_id="C001")
    TransactionFactory(customer=customer, refund=True, total=Decimal("50.00"))
    segment = make_segment(merchant, "vips", customer)

    # when
    rows = csv_rows(segment, columns=["net_spend", "orders_count"])

    # then
    assert rows[1] == ["-50.00", "0"]


@pytest.mark.parametrize("value", ["=SUM(1)", "+A1", "-2", "@x", "\tcmd", "\rcmd"])
def test_formula_like_text_is_neutralised_in_csv_and_xlsx(merchant, value):
    # given
    customer = CustomerFactory(merchant=merchant, first_name=value, last_name="Smith-" + value)
    segment = make_segment(merchant, "vips", customer)

    # when
    csv_row = csv_rows(segment, columns=["first_name", "last_name"])[1]
    xlsx_row = xlsx_rows(segment, columns=["first_name", "last_name"])[1]

    # then: only a leading formula character is neutralised
    assert csv_row == ["'" + value, "Smith-" + value]
    # (XML reads a carriage return back as a line feed)
    expected = ["'" + value, "Smith-" + value]
    assert list(xlsx_row) == [cell.replace("\r", "\n") for cell in expected]


def test_small_chunks_give_the_same_download(merchant, monkeypatch):
    # given: several chunks of output
    customers = [CustomerFactory(merchant=merchant) for _ in range(30)]
    segment = make_segment(merchant, "vips", *customers)
    whole = b"".join(exports.stream_members_csv(segment=segment))

    # when
    monkeypatch.setattr(exports, "CHUNK_BYTES", 200)
    chunks = list(exports.stream_members_csv(segment=segment))

    # then
    assert len(chunks) > 5
    assert b"".join(chunks) == whole
    assert len(csv_rows(segment)) == 31


def test_an_empty_segment_downloads_its_header_only(merchant):
    segment = make_segment(merchant, "empty")

    assert csv_rows(segment, columns=["external_id", "email"]) == [["External id", "Email"]]
    assert xlsx_rows(segment, columns=["external_id", "email"]) == [("External id", "Email")]


def test_xlsx_has_the_same_rows_with_typed_cells(merchant, ann):
    # given
    bob = CustomerFactory(merchant=merchant, external_id="C002")
    segment = make_segment(merchant, "vips", bob, ann, since=dt.datetime(2026, 3, 1, tzinfo=UTC))

    # when
    rows = xlsx_rows(segment)

    # then
    assert list(rows[0]) == DEFAULT_HEADER
    first = dict(zip(DEFAULT_HEADER, rows[1], strict=True))
    assert [row[0] for row in rows[1:]] == ["C001", "C002"]
    assert first["First name"] == "'=SUM(1)"
    assert first["Tier"] == "Gold"
    # Spreadsheets have no time zones: merchant-local wall time.
    assert first["Joined at"] == dt.datetime(2026, 1, 15, 12, 30, 45, 500000)
    assert first["Net spend (CAD)"] == pytest.approx(45.5)
    assert first["Orders"] == 2
    assert rows[2][5] is None  # no tier
    # (openpyxl's reader drops trailing empty cells: no last purchase)
    assert rows[2][7:10] == (dt.datetime(2026, 2, 28, 19, 0), 0, 0)


def test_xlsx_refuses_more_members_than_a_sheet_has_rows(merchant, monkeypatch):
    segment = make_segment(
        merchant, "vips", *(CustomerFactory(merchant=merchant) for _ in range(3))
    )
    monkeypatch.setattr(exports, "XLSX_MAX_MEMBERS", 2)

    with pytest.raises(ValueError, match="Download CSV instead"):
        exports.stream_members_xlsx(segment=segment)


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("csv", "text/csv; charset=utf-8"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ],
)
def test_the_response_is_a_streamed_attachment(merchant, fmt, content_type):
    # given
    segment = make_segment(merchant, "vip-club", CustomerFactory(merchant=merchant))

    # when
    response = exports.members_download_response(segment=segment, fmt=fmt, columns=["email"])

    # then
    filename = f"acme-vip-club-members-{merchant.today().isoformat()}.{fmt}"
    assert response.streaming
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert response["Cache-Control"] == "no-store"
    assert len(b"".join(response.streaming_content)) > 0


@pytest.mark.skipif(not ON_POSTGRESQL, reason="COPY is PostgreSQL's")
def test_on_postgresql_the_csv_is_one_copy_and_agrees_with_the_python_writer(
    merchant, ann, monkeypatch
):
    # given
    others = [CustomerFactory(merchant=merchant) for _ in range(5)]
    segment = make_segment(merchant, "vips", ann, *others)
    python_rows = csv_rows(segment, columns=list(exports.MEMBER_COLUMNS), use_copy=False)

    # when: the Python reader is unavailable, so only COPY can produce the rows
    def no_python(*args, **kwargs):
        raise AssertionError("the Python path ran")

    monkeypatch.setattr(exports, "_member_rows", no_python)
    copy_rows = csv_rows(segment, columns=list(exports.MEMBER_COLUMNS))

    # then
    assert copy_rows == python_rows
    assert len(copy_rows) == 7


@pytest.mark.parametrize(
    ("phone", "cell"),
    [
        ("+16472000037", "+16472000037"),  # E.164: data, kept for SMS tools
        ("+1 647 200 0037", "'+1 647 200 0037"),  # not digits only: guarded
        ("+1+1", "'+1+1"),
        ("+1\n", "'+1\n"),
    ],
)
def test_phone_numbers_in_e164_form_are_not_neutralised(merchant, phone, cell):
    # given
    customer = CustomerFactory(merchant=merchant, phone=phone)
    segment = make_segment(merchant, "sms", customer)

    # when
    csv_row = csv_rows(segment, columns=["phone"])[1]
    xlsx_row = xlsx_rows(segment, columns=["phone"])[1]

    # then
    assert csv_row == [cell]
    assert list(xlsx_row) == [cell]


@pytest.fixture
def audience(merchant):
    """Members with and without each channel: opted in with and without a contact."""
    people = {
        "mail": CustomerFactory(merchant=merchant, email="m@example.com", email_opt_in=True),
        "mail-no-address": CustomerFactory(merchant=merchant, email="", email_opt_in=True),
        "mail-not-opted": CustomerFactory(merchant=merchant, email="n@example.com"),
        "text": CustomerFactory(merchant=merchant, phone="+16475550100", sms_opt_in=True),
        "text-no-number": CustomerFactory(merchant=merchant, phone="", sms_opt_in=True),
        "push": CustomerFactory(merchant=merchant, push_opt_in=True),
    }
    for key, customer in people.items():
        customer.external_id = key
        customer.save()
    return make_segment(merchant, "all", *people.values())


@pytest.mark.parametrize(
    ("reachable", "expected"),
    [
        (None, ["mail", "mail-no-address", "mail-not-opted", "push", "text", "text-no-number"]),
        ("email", ["mail"]),
        ("sms", ["text"]),
        ("push", ["push"]),
    ],
)
def test_a_download_can_keep_only_the_members_a_channel_reaches(audience, reachable, expected):
    csv_ids = [
        row[0] for row in csv_rows(audience, columns=["external_id"], reachable=reachable)[1:]
    ]
    python_ids = [
        row[0]
        for row in csv_rows(audience, columns=["external_id"], reachable=reachable, use_copy=False)[
            1:
        ]
    ]
    xlsx = b"".join(
        exports.stream_members_xlsx(segment=audience, columns=["external_id"], reachable=reachable)
    )
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx), read_only=True)["Members"]
    xlsx_ids = [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)]

    assert csv_ids == python_ids == xlsx_ids == expected


def test_a_narrowed_download_says_so_in_its_name_and_an_unknown_channel_is_refused(audience):
    response = exports.members_download_response(segment=audience, fmt="csv", reachable="sms")
    today = audience.merchant.today().isoformat()

    assert f'filename="acme-all-members-sms-{today}.csv"' in response["Content-Disposition"]
    with pytest.raises(ValueError, match='Unknown channel "fax"'):
        exports.members_download_response(segment=audience, fmt="csv", reachable="fax")


def test_the_download_page_passes_the_channel_and_explains_a_bad_one(staff_client, audience):
    url = reverse("segments:download", args=[audience.pk, "csv"])

    response = staff_client.get(url, {"columns": "external_id", "reachable": "email"})
    refused = staff_client.get(url, {"reachable": "fax"})
    everyone = staff_client.get(url, {"columns": "external_id", "reachable": ""})

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [["External id"], ["mail"]]
    assert refused.status_code == 400
    assert 'Unknown channel "fax"' in refused.content.decode()
    assert len(b"".join(everyone.streaming_content).decode().splitlines()) == 7
