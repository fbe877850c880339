"""Segment list benchmark (issue 4) on PostgreSQL: server time of the list page with 300
segments, and its number of queries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sp_bench \\
        .venv/bin/python bench/list_bench.py [--merchant bench-1m] [--segments 300] [--runs 20]

Creates 300 segments (named "bench list: ...", with statistics as a refresh stores them) and a
staff user for the merchant, then times requests through Django's test client in this
process (no network, no browser: the time the server spends, from the request to the
rendered response), production settings (DEBUG off, cached templates): the first page (25
rows), 100 rows, a search with two filters, a sort on a statistic, and the CSV export of all
300. Median of `--runs` after a warm-up. Deletes what it created. Raw JSON goes to
bench/out/list-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
from decimal import Decimal
from typing import Any

from portal_setup import ROOT, owner_client, use_plain_static_files  # sets Django up

# isort: split
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import Merchant
from segments.models import Segment, SegmentKind

OUT = ROOT / "bench" / "out"
PREFIX = "bench list: "
TARGET_MS = 100.0
USERNAME = "bench-list-user"


def setup(merchant: Merchant, count: int) -> Client:

    teardown(merchant)
    rnd = random.Random(4)
    now = timezone.now()
    Segment.objects.bulk_create(
        [
            Segment(
                merchant=merchant,
                name=f"{PREFIX}{i:03d} {rnd.choice(['vip', 'local', 'lapsed', 'spend'])}",
                slug=f"bench-list-{i:03d}",
                kind=rnd.choice([SegmentKind.DYNAMIC, SegmentKind.MANUAL]),
                rules={},
                description=rnd.choice(["", "weekly", "promo list"]),
                is_active=rnd.random() < 0.8,
                member_count=rnd.randint(0, 500_000),
                avg_transaction_value=Decimal(rnd.randint(1000, 30000)) / 100,
                avg_transactions=Decimal(rnd.randint(100, 2000)) / 100,
                avg_spending=Decimal(rnd.randint(1000, 500000)) / 100,
                last_refreshed_at=now,
                created_at=now - dt.timedelta(days=rnd.randint(0, 700)),
            )
            for i in range(count)
        ]
    )
    return owner_client(merchant, USERNAME)


def teardown(merchant: Merchant) -> None:
    from django.contrib.auth import get_user_model

    Segment.objects.filter(merchant=merchant, name__startswith=PREFIX).delete()
    get_user_model().objects.filter(username=USERNAME).delete()


def measure(client: Client, params: dict[str, str], runs: int) -> dict[str, Any]:
    response = client.get("/segments/", params)  # warm-up (and a check)
    assert response.status_code == 200, response.status_code
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get("/segments/", params)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        client.get("/segments/", params)
    return {
        "params": params,
        "median_ms": round(statistics.median(times), 1),
        "queries": len(captured),
        "bytes": len(response.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--merchant", default="bench-1m")
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("The list benchmark runs on PostgreSQL (set DATABASE_URL).")
    use_plain_static_files()
    merchant = Merchant.objects.get(slug=args.merchant)
    client = setup(merchant, args.segments)
    try:
        cases = {
            "first page (25 rows)": {},
            "100 rows": {"per_page": "100"},
            "search and two filters": {"q": "vip", "active": "yes", "members_min": "1000"},
            "100 rows by avg. spending, descending": {"sort": "-avg_spending", "per_page": "100"},
        }
        results = {name: measure(client, params, args.runs) for name, params in cases.items()}
        exports = []
        for _ in range(max(3, args.runs // 4)):
            started = time.perf_counter()
            export = client.get("/segments/", {"_export": "csv"})
            exports.append((time.perf_counter() - started) * 1000)
        results["CSV export of the whole list"] = {
            "median_ms": round(statistics.median(exports), 1),
            "rows": export.content.decode().count("\n") - 1,
        }
    finally:
        teardown(merchant)
    lines = [
        f"| page ({args.segments} segments) | server time (median of {args.runs}) | queries |",
        "|---|---|---|",
    ]
    for name, figures in results.items():
        # The goal is for the page; the export (all rows, a file) is shown for reference.
        if "queries" not in figures:
            verdict = "no goal"
        else:
            verdict = "met" if figures["median_ms"] < TARGET_MS else "**missed**"
        queries = figures.get("queries", "")
        lines.append(f"| {name} | {figures['median_ms']} ms ({verdict}) | {queries} |")
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"list-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"results": results, "markdown": table}, indent=2, default=str))
    print(f"\nraw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
