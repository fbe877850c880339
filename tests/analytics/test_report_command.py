"""`manage.py report segment-analysis`: the rows on hand-computed data, the CSV and JSON
formats, and exit status 2 with the reason on every bad argument."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from analytics.management.commands.report import Command
from customers.metrics import refresh_merchant_metrics
from customers.models import CustomerMetrics, Merchant
from segments.models import Segment, SegmentKind, SegmentMembership
from tests.factories import CustomerFactory, TransactionFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TORONTO = ZoneInfo("America/Toronto")
#: The period of every test: Monday 4 to Sunday 10 May 2026, Toronto (EDT, UTC-4).
PERIOD = ["--from", "2026-05-04", "--to", "2026-05-10"]
HEADER = "group,customers,customers_share,revenue,revenue_share,orders,avg_order_value"


def local(month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=TORONTO)


def buy(customer, when: dt.datetime, total: str, *, refund: bool = False):
    return TransactionFactory(
        customer=customer, occurred_at=when, total=Decimal(total), refund=refund
    )


def segment(merchant, slug: str, members) -> Segment:
    seg = Segment.objects.create(
        merchant=merchant, name=slug.title(), slug=slug, kind=SegmentKind.MANUAL
    )
    SegmentMembership.objects.bulk_create(
        SegmentMembership(segment=seg, customer=customer) for customer in members
    )
    return seg


@pytest.fixture
def shop(merchant, other_merchant):
    """Six customers of acme with their stages, and their sales around the period:

    ann (loyal)    100.00 on 5 May; 50.00 and a 20.00 refund at 23:30 on 10 May (the last day)
    bob (loyal)    40.00 at 23:30 on 3 May (the day before); 60.50 on 7 May; 5.00 at
                   00:00 on 11 May (the first instant after)
    cal (at_risk)  80.00 in January
    dee (no stage) nothing
    eve (new)      110.00 on 8 May; a 9.99 refund at 23:30 on 3 May (the day before)
    fay (dormant)  nothing

    In the period: revenue 130.00 + 60.50 + 110.00 = 300.50 from 4 orders. Segments: vip
    (ann, eve), quiet (cal, dee), empty; rival's big spender and its own `vip` count nowhere.
    """
    people = {name: CustomerFactory(merchant=merchant, first_name=name) for name in "abcdef"}
    ann, bob, cal, dee, eve, fay = people.values()
    buy(ann, local(5, 5), "100.00")
    buy(ann, local(5, 10, 23, 30), "50.00")
    buy(ann, local(5, 10, 23, 30), "20.00", refund=True)
    buy(bob, local(5, 3, 23, 30), "40.00")
    buy(bob, local(5, 7), "60.50")
    buy(bob, local(5, 11, 0, 0), "5.00")
    buy(cal, local(1, 10), "80.00")
    buy(eve, local(5, 8, 18), "110.00")
    buy(eve, local(5, 3, 23, 30), "9.99", refund=True)
    rival = CustomerFactory(merchant=other_merchant)
    buy(rival, local(5, 7), "1000.00")
    refresh_merchant_metrics(merchant.pk)
    refresh_merchant_metrics(other_merchant.pk)
    stages = {ann: "loyal", bob: "loyal", cal: "at_risk", dee: None, eve: "new", fay: "dormant"}
    for customer, stage in stages.items():
        CustomerMetrics.objects.filter(customer=customer).update(lifecycle_stage=stage)
    CustomerMetrics.objects.filter(customer=rival).update(lifecycle_stage="loyal")
    segment(merchant, "vip", [ann, eve])
    segment(merchant, "quiet", [cal, dee])
    segment(merchant, "empty", [])
    segment(other_merchant, "vip", [rival])
    segment(other_merchant, "rival-only", [rival])
    return people


def report(*args: str) -> str:
    out = io.StringIO()
    call_command("report", "segment-analysis", "--merchant", "acme", *args, stdout=out)
    return out.getvalue()


def usage_error(*args: str) -> str:
    """The message of a refused call, which must exit with status 2."""
    with pytest.raises(CommandError) as refused:
        report(*args)
    assert refused.value.returncode == 2
    return str(refused.value)


# -- The rows -------------------------------------------------------------------------------


def test_lifecycle_stages_count_the_last_day_to_its_end_and_not_the_day_before(shop):
    # when
    out = report(*PERIOD, "--group-by", "lifecycle_stage")

    # then: stages in display order, the unplaced customers last as `none`; shares of the 6
    # customers and of the 300.50 of revenue
    assert out.splitlines() == [
        HEADER,
        "new,1,0.166667,110.00,0.366057,1,110.00",
        "repeat,0,0.000000,0.00,0.000000,0,",
        "regular,0,0.000000,0.00,0.000000,0,",
        "loyal,2,0.333333,190.50,0.633943,3,70.17",  # 210.50 of orders / 3
        "at_risk,1,0.166667,0.00,0.000000,0,",
        "dormant,1,0.166667,0.00,0.000000,0,",
        "none,1,0.166667,0.00,0.000000,0,",
    ]


def test_segments_in_the_order_given_by_their_slugs(shop):
    # when: a slug named twice counts once
    out = report(*PERIOD, "--group-by", "segment", "--segments", "quiet, vip,empty,vip")

    # then: vip's revenue is ann's 130.00 and eve's 110.00; its average order value is
    # order totals (150.00 + 110.00) / 3 orders, before the refund
    assert out.splitlines() == [
        HEADER,
        "quiet,2,0.333333,0.00,0.000000,0,",
        "vip,2,0.333333,240.00,0.798669,3,86.67",
        "empty,0,0.000000,0.00,0.000000,0,",
    ]


def test_a_period_without_sales_leaves_the_revenue_share_empty(shop):
    # when: February, when nobody bought (the merchant's revenue is 0: no share of it)
    out = report("--from", "2026-02-01", "--to", "2026-02-28", "--group-by", "segment",
                 "--segments", "vip")  # fmt: skip

    # then
    assert out.splitlines() == [HEADER, "vip,2,0.333333,0.00,,0,"]


def test_refunds_that_cancel_the_orders_leave_zero_not_minus_zero(merchant):
    # given: 0.30 - 0.10 - 0.20, which SQLite's float sum leaves a hair below zero
    customer = CustomerFactory(merchant=merchant)
    buy(customer, local(5, 5), "0.30")
    buy(customer, local(5, 6), "0.10", refund=True)
    buy(customer, local(5, 7), "0.20", refund=True)
    segment(merchant, "tiny", [customer])

    # when
    out = report(*PERIOD, "--group-by", "segment", "--segments", "tiny")

    # then
    assert out.splitlines() == [HEADER, "tiny,1,1.000000,0.00,,1,0.30"]


def test_rfm_groups_and_smart_segments_list_every_group(shop):
    rows = list(csv.DictReader(io.StringIO(report(*PERIOD, "--group-by", "rfm_group"))))
    smart = list(csv.DictReader(io.StringIO(report(*PERIOD, "--group-by", "smart_segment"))))

    # then: every customer is in one group, with the period's revenue shared between them
    for table in (rows, smart):
        assert sum(int(row["customers"]) for row in table) == 6
        assert sum(Decimal(row["revenue"]) for row in table) == Decimal("300.50")
        assert sum(int(row["orders"]) for row in table) == 4
    assert rows[0]["group"] == "champions"
    assert "" not in {row["group"] for row in rows + smart}


def test_json_has_the_period_and_exact_strings_for_money_and_shares(shop):
    # when
    out = report(*PERIOD, "--group-by", "segment", "--segments", "vip,empty", "--format", "json")

    # then
    assert json.loads(out) == {
        "merchant": "acme",
        "from": "2026-05-04",
        "to": "2026-05-10",
        "group_by": "segment",
        "rows": [
            {
                "group": "vip",
                "customers": 2,
                "customers_share": "0.333333",
                "revenue": "240.00",
                "revenue_share": "0.798669",
                "orders": 3,
                "avg_order_value": "86.67",
            },
            {
                "group": "empty",
                "customers": 0,
                "customers_share": "0.000000",
                "revenue": "0.00",
                "revenue_share": "0.000000",
                "orders": 0,
                "avg_order_value": None,
            },
        ],
    }


def test_json_writes_the_unplaced_group_as_none(shop):
    rows = json.loads(report(*PERIOD, "--group-by", "lifecycle_stage", "--format", "json"))

    assert rows["rows"][-1]["group"] == "none"
    assert rows["rows"][-1]["customers"] == 1


# -- Refusals: exit status 2 with the reason ------------------------------------------------


def test_an_unknown_merchant_is_named(shop):
    with pytest.raises(CommandError) as refused:
        call_command(
            "report", "segment-analysis", "--merchant", "nope", *PERIOD, "--group-by", "segment"
        )

    assert refused.value.returncode == 2
    assert str(refused.value) == "Unknown merchant 'nope'."


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        (
            ["--from", "2026-13-01", "--to", "2026-05-10"],
            "--from: '2026-13-01' is not a date (use YYYY-MM-DD).",
        ),
        (
            ["--from", "2026-05-04", "--to", "10/05/2026"],
            "--to: '10/05/2026' is not a date (use YYYY-MM-DD).",
        ),
        (
            ["--from", "2026-05-10", "--to", "2026-05-04"],
            "The period ends (2026-05-04) before it starts (2026-05-10).",
        ),
        (
            ["--from", "2000-01-01", "--to", "2026-05-04"],
            "The period is 9,621 days long; a report covers at most 3,660 days.",
        ),
    ],
)
def test_a_bad_date_or_period_is_refused(shop, dates, message):
    assert usage_error(*dates, "--group-by", "lifecycle_stage") == message


def test_an_unknown_grouping_is_refused_with_the_choices(shop):
    assert usage_error(*PERIOD, "--group-by", "tier") == (
        "--group-by: Unknown grouping 'tier': use one of lifecycle_stage, rfm_group, "
        "smart_segment, segment."
    )


def test_grouping_by_segment_needs_segments(shop):
    message = "--segments is required with --group-by segment (segment slugs, comma-separated)."

    assert usage_error(*PERIOD, "--group-by", "segment") == message
    assert usage_error(*PERIOD, "--group-by", "segment", "--segments", " , ") == message


def test_segments_with_another_grouping_are_refused(shop):
    assert usage_error(*PERIOD, "--group-by", "rfm_group", "--segments", "vip") == (
        "--segments applies to --group-by segment only, not to rfm_group."
    )


def test_unknown_segments_are_named_and_another_merchants_are_unknown(shop):
    assert usage_error(*PERIOD, "--group-by", "segment", "--segments", "vip,ghost,rival-only") == (
        "--segments: merchant 'acme' has no segment 'ghost' or 'rival-only'."
    )


def test_an_unknown_format_is_refused(shop):
    assert usage_error(
        *PERIOD, "--group-by", "segment", "--segments", "vip", "--format", "xml"
    ) == ("--format: 'xml' is not a format: use csv or json.")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: REPORT"),
        (["churn"], "invalid choice: 'churn'"),
        (["segment-analysis", "--merchant", "acme"], "required: --from, --to, --group-by"),
    ],
)
def test_a_missing_report_or_argument_exits_2_with_the_usage(argv, message, capsys):
    # when: as from a shell (argparse's own errors exit before the command runs)
    with pytest.raises(SystemExit) as exit_info:
        Command().run_from_argv(["manage.py", "report", *argv])

    # then
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: manage.py report" in err
    assert message in err


@pytest.mark.django_db(transaction=True)
def test_exit_codes_from_a_real_process():
    """The exit status a shell sees: 0 with the report on stdout, 2 with the reason."""
    from django.db import connection

    env = {**os.environ}
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(settings_dict["NAME"])
        if "memory" in name or not name.startswith("/"):
            pytest.skip("the SQLite test database is in memory: no other process can see it")
        env["DATABASE_URL"] = f"sqlite:///{name}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}"
            f"/{settings_dict['NAME']}"
        )
    Merchant.objects.create(slug="proc", name="Proc", time_zone="UTC")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "report", "segment-analysis", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    ok = run("--merchant", "proc", *PERIOD, "--group-by", "lifecycle_stage")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == HEADER

    unknown = run("--merchant", "nope", *PERIOD, "--group-by", "lifecycle_stage")
    assert unknown.returncode == 2
    assert "Unknown merchant 'nope'." in unknown.stderr

    bad_date = run("--merchant", "proc", "--from", "2026-13-01", "--to", "2026-05-10",
                   "--group-by", "segment")  # fmt: skip
    assert bad_date.returncode == 2
    assert "--from: '2026-13-01' is not a date (use YYYY-MM-DD)." in bad_date.stderr
