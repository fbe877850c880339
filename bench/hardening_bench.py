"""Hostile and worst-case rule input (the Hardening issue, point 3) on PostgreSQL: the server
time of every endpoint that accepts rules, for the inputs the issue measured in seconds to
minutes and for the largest input the documented limits allow.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/segment_portal_bench \\
        .venv/bin/python bench/hardening_bench.py [--merchant bench-100k] [--runs 5]

Requests go through Django's test client in this process, production settings (DEBUG off):
the time from the request to the rendered response, median of `--runs` after a warm-up. The
save endpoint runs with the refresh it queues handed to a worker (not run in the request), as
in a deployment with Celery. `segment_preview` is timed in-process (call_command), without
the interpreter's start-up. Goal: every answer in under 1 s. Raw JSON goes to bench/out/.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from portal_setup import ROOT, owner_client, use_plain_static_files  # sets Django up

# isort: split
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from customers.models import Merchant, Tag
from segments.criteria.base import MAX_NAMES
from segments.models import Segment
from segments.rules import MAX_CONDITIONS, MAX_RULES_BYTES

OUT = ROOT / "bench" / "out"
TARGET_MS = 1000.0
USERNAME = "bench-hardening-user"
SEGMENT_NAME = "bench hardening"


def condition(field: str, op: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value, **extra}


def group(*nodes: Any, match: str = "all") -> dict[str, Any]:
    return {"match": match, "conditions": list(nodes)}


def inputs(tag_names: list[str]) -> dict[str, str]:
    """The inputs, as rule JSON text. The first five are the issue's; the rest are the
    largest the documented limits allow (valid, and invalid with the most errors)."""
    invalid = condition("nope", "gtee", "x")
    cases: dict[str, str] = {
        "10,000 invalid conditions (issue)": json.dumps(group(*[invalid] * 10_000)),
        "50x50x4 tree of invalid conditions (issue)": json.dumps(
            group(*[group(*[group(*[invalid] * 4)] * 50)] * 50)
        ),
        "has_any with 100,000 tag names (issue)": json.dumps(
            group(condition("tags", "has_any", [f"tag-{i}" for i in range(100_000)]))
        ),
        "JSON nested 500 deep (issue)": '{"match": "all", "conditions": [' * 500 + "]}" * 500,
        "a 5,000-digit integer (issue)": '{"match": "all", "conditions": [{"field": "age", '
        '"op": "gte", "value": ' + "9" * 5000 + "}]}",
    }
    # Largest valid tree: 100 conditions (2 groups of 50), tag lists filled up to the size
    # limit with the merchant's own tag names and made-up ones, every list at most 1,000.
    names = (tag_names + [f"made-up-tag-{i}" for i in range(MAX_NAMES)])[:MAX_NAMES]
    per_condition = MAX_NAMES
    while True:
        conditions = [
            condition("tags", "has_any" if i % 2 else "has_none", names[:per_condition])
            for i in range(MAX_CONDITIONS)
        ]
        tree = group(group(*conditions[:50], match="any"), group(*conditions[50:]))
        text = json.dumps(tree)
        if len(text.encode()) <= MAX_RULES_BYTES:
            break
        per_condition -= 5
    cases[f"largest valid tree ({len(text) // 1024} KiB, 100 tag conditions)"] = text
    # 100 different conditions of the costly kinds (aggregates, dates, products).
    mixed = [
        kind
        for i in range(20)
        for kind in (
            condition("total_spend", "gte", 100 + i),
            condition("last_purchase", "within_days", 90 + i),
            condition("orders_count", "between", [2, 50 + i]),
            condition("purchased", "gte", 1 + i, products={"product_types": ["preroll", "edible"]}),
            condition("member_since", "before_days", 30 + i),
        )
    ]
    cases["100 mixed conditions (spend, dates, products)"] = json.dumps(
        group(group(*mixed[:50], match="any"), group(*mixed[50:]))
    )
    worst_invalid = condition("tags", "has_any", [7] * 3, window_days=1)
    cases["100 conditions with 2 errors each (stops at 50)"] = json.dumps(
        group(*[group(*[worst_invalid] * 50)] * 2)
    )
    return cases


def builder_data(text: str, **extra: str) -> dict[str, str]:
    return {
        "name": SEGMENT_NAME,
        "slug": "",
        "description": "",
        "is_active": "on",
        "refresh_cadence": "daily",
        "refresh_weekday": "6",
        "refresh_hour": "3",
        "rules_json": text,
        **extra,
    }


def timed(call: Callable[[], Any], runs: int) -> tuple[float, Any]:
    result = call()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--merchant", default="bench-100k")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("The hardening benchmark runs on PostgreSQL (set DATABASE_URL).")
    use_plain_static_files()
    merchant = Merchant.objects.get(slug=args.merchant)
    customers = merchant.customers.count()
    client = owner_client(merchant, USERNAME)
    tag_names = list(Tag.objects.filter(merchant=merchant).values_list("name", flat=True))
    results: dict[str, dict[str, Any]] = {}
    rules_file = Path(tempfile.mkdtemp()) / "rules.json"

    def post(url: str, data: dict[str, str]) -> Callable[[], Any]:
        return lambda: client.post(url, data)

    def preview_command() -> str:
        try:
            call_command(
                "segment_preview",
                "--merchant",
                merchant.slug,
                "--rules",
                str(rules_file),
                stdout=io.StringIO(),
            )
            return "0"
        except CommandError as exc:
            return str(exc.returncode)

    try:
        # The refresh a save queues runs in a worker in production, not in the request.
        with mock.patch("segments.tasks.refresh_segment.delay"):
            for name, text in inputs(tag_names).items():
                rules_file.write_text(text)
                row: dict[str, Any] = {"bytes": len(text.encode())}
                endpoints = {
                    "editor": post("/segments/builder/editor/", {"rules_json": text}),
                    "live count": post("/segments/builder/preview/", {"rules_json": text}),
                    "paste": post(
                        "/segments/builder/editor/", {"paste_json": text, "action": "paste"}
                    ),
                    "save": post("/segments/new/", builder_data(text)),
                }
                for endpoint, call in endpoints.items():

                    def run(call: Callable[[], Any] = call) -> Any:
                        response = call()
                        Segment.objects.filter(merchant=merchant, name=SEGMENT_NAME).delete()
                        return response

                    ms, response = timed(run, args.runs)
                    row[endpoint] = {"ms": ms, "status": response.status_code}
                ms, code = timed(preview_command, args.runs)
                row["segment_preview"] = {"ms": ms, "status": f"exit {code}"}
                results[name] = row
                print(name, {k: v for k, v in row.items() if k != "bytes"}, flush=True)
    finally:
        Segment.objects.filter(merchant=merchant, name=SEGMENT_NAME).delete()
        get_user_model().objects.filter(username=USERNAME).delete()

    columns = ["editor", "live count", "paste", "save", "segment_preview"]
    lines = [
        f"| input ({merchant.slug}, {customers:,} customers) | bytes | "
        + " | ".join(columns)
        + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    slowest = 0.0
    for name, row in results.items():
        cells = []
        for column in columns:
            figure = row[column]
            slowest = max(slowest, figure["ms"])
            cells.append(f"{figure['ms']} ms ({figure['status']})")
        lines.append(f"| {name} | {row['bytes']:,} | " + " | ".join(cells) + " |")
    verdict = "met" if slowest < TARGET_MS else "**missed**"
    lines.append("")
    lines.append(f"Slowest answer: {slowest} ms (goal < {TARGET_MS:.0f} ms: {verdict}).")
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"hardening-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"results": results, "markdown": table}, indent=2, default=str))
    print(f"\nraw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
