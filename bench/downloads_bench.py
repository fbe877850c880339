"""Member download benchmark (issue 4) on PostgreSQL: CSV through COPY at a million members,
the Python CSV writer for comparison, and XLSX at 100,000 members.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/segment_portal_bench \\
        .venv/bin/python bench/downloads_bench.py [--runs 3] [--skip python,xlsx]

Reads the merchants `bench-1m` and `bench-100k` made by `generate_bench.py`. For each it
makes a manual segment "bench: all members" whose members are all its customers (one
`INSERT ... SELECT`), then consumes each download end to end in a fresh subprocess, which
reports the time, the bytes, the time to the first chunk and its peak RSS (`ru_maxrss`,
before and after the download), so the peak is the download's and not the benchmark's:

a. CSV through COPY (`stream_members_csv`), default columns, 1,000,000 members: median of
   `--runs` runs (goal: more than 300,000 rows/s, peak RSS under 150 MB);
b. the same CSV through the Python writer (`use_copy=False`), once;
c. XLSX (`stream_members_xlsx`), default columns, 100,000 members, once;
d. for reference, a bare COPY of the 1M merchant's customer rows (all columns as stored, no
   join, sort or formatting), consumed the same way, once.

Prints a markdown table and writes raw JSON to bench/out/downloads-<timestamp>.json. The
segments are deleted at the end, with their memberships.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from customers.models import Merchant  # noqa: E402
from segments import exports  # noqa: E402
from segments.models import Segment, SegmentKind  # noqa: E402

BENCH_PREFIX = "bench: "
SEGMENT_NAME = BENCH_PREFIX + "all members"
SEGMENT_SLUG = "bench-all-members"
CSV_MERCHANT = "bench-1m"
XLSX_MERCHANT = "bench-100k"
ROWS_PER_S_TARGET = 300_000
PEAK_RSS_TARGET_MB = 150.0
KINDS = ("copy", "python", "xlsx", "reference")


def max_rss_mb() -> float:
    # Kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the child: one download --------------------------------------------------------------


def download(kind: str, segment_id: int) -> dict[str, Any]:
    """Consume one download end to end, in this (fresh) process."""
    segment = Segment.objects.only("id", "merchant_id", "slug", "member_count").get(pk=segment_id)
    rss_before = max_rss_mb()
    if kind == "xlsx":
        stream = exports.stream_members_xlsx(segment=segment)
    elif kind == "reference":
        stream = reference_copy(segment.merchant_id)
    else:
        stream = exports.stream_members_csv(segment=segment, use_copy=kind == "copy")
    # The machine may be shared: the 1-minute load average says how busy it was.
    load_before = os.getloadavg()[0]
    size = lines = 0
    first_chunk_s = None
    start = time.perf_counter()
    for chunk in stream:
        if first_chunk_s is None:
            first_chunk_s = time.perf_counter() - start
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - start
    # XLSX is a zip archive: count its rows as the members it was made from.
    rows = segment.member_count if kind == "xlsx" else lines - 1
    return {
        "kind": kind,
        "merchant": segment.merchant.slug,
        "rows": rows,
        "bytes": size,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "first_chunk_s": round(first_chunk_s or 0.0, 3),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(max_rss_mb(), 1),
        "load_before": round(load_before, 2),
    }


def reference_copy(merchant_id: int) -> Iterator[bytes]:
    """The floor to compare with: every column of the merchant's customers, as stored, by a
    bare COPY (no join, no sort, no formatting), consumed the same way."""
    with connection.cursor() as cursor:
        sql = (
            "COPY (SELECT * FROM customers_customer WHERE merchant_id = %s) "
            "TO STDOUT WITH (FORMAT csv, HEADER)"
        )
        with cursor.cursor.copy(sql, [merchant_id]) as copy:
            for row in copy:
                yield bytes(row)


def run_child(kind: str, segment: Segment) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--segment", str(segment.pk)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"The {kind} download failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  {kind}: {result['rows']:,} rows in {result['seconds']} s "
        f"({result['rows_per_s']:,} rows/s), peak RSS {result['peak_rss_mb']} MB, "
        f"load {result['load_before']}",
        flush=True,
    )
    return result


# --- setup and cleanup ----------------------------------------------------------------------


def insert_segment(merchant: Merchant) -> int:
    """Insert the segment row with the columns the bench database has.

    The benchmark never migrates the bench database, whose schema can be behind the models
    while a change is under way: the row gets the model's defaults for the columns that
    exist, and the segment is only ever loaded with its id, slug and merchant.
    """
    with connection.cursor() as cursor:
        table = connection.introspection.get_table_description(cursor, "segments_segment")
    existing = {column.name for column in table}
    segment = Segment(merchant=merchant, name=SEGMENT_NAME, slug=SEGMENT_SLUG)
    segment.kind = SegmentKind.MANUAL
    fields = [
        field
        for field in Segment._meta.local_concrete_fields
        if field.column in existing and not field.primary_key
    ]
    values = [
        field.get_db_prep_save(field.pre_save(segment, add=True), connection) for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO segments_segment ({', '.join(f.column for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING id",
            values,
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def bench_segment(merchant: Merchant) -> Segment | None:
    return (
        Segment.objects.filter(merchant=merchant, slug=SEGMENT_SLUG)
        .only("id", "merchant_id", "slug", "member_count")
        .first()
    )


def prepare_segment(merchant: Merchant) -> int:
    """Make the merchant's "bench: all members" segment hold all its customers; their count."""
    segment = bench_segment(merchant)
    segment_id = segment.pk if segment else insert_segment(merchant)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM segments_segmentmembership WHERE segment_id = %s", [segment_id])
        cursor.execute(
            "INSERT INTO segments_segmentmembership (segment_id, customer_id, since) "
            "SELECT %s, id, now() FROM customers_customer WHERE merchant_id = %s",
            [segment_id, merchant.pk],
        )
        members = cursor.rowcount
        cursor.execute(
            "UPDATE segments_segment SET member_count = %s WHERE id = %s", [members, segment_id]
        )
    # Fresh statistics, so the download is planned for the table as it now is.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE segments_segmentmembership")
    return members


def delete_segment(merchant: Merchant) -> None:
    segment = bench_segment(merchant)
    if segment is None:
        return
    # In SQL: a million memberships are not loaded to be deleted, and the collector of
    # `Segment.delete()` would visit tables the bench database may not have yet.
    with transaction.atomic(), connection.cursor() as cursor:
        for table in (
            "segments_segmentmembership",
            "segments_membershipevent",
            "segments_segmentversion",
        ):
            cursor.execute(f"DELETE FROM {table} WHERE segment_id = %s", [segment.pk])
        cursor.execute("DELETE FROM segments_segment WHERE id = %s", [segment.pk])


def vacuum_memberships() -> None:
    # Plain VACUUM (no exclusive lock): the next benchmark finds the table without a
    # million dead rows.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) segments_segmentmembership")


# --- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| download | members | time | rows/s | MB | first chunk | peak RSS (before) | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in report["results"]:
        lines.append(
            f"| {result['label']} | {result['rows']:,} | {result['seconds']} s | "
            f"{result['rows_per_s']:,} | {result['bytes'] / 1e6:.0f} | "
            f"{result['first_chunk_s']} s | {result['peak_rss_mb']} MB "
            f"({result['rss_before_mb']} MB) | {result['load_before']} |"
        )
    copy = next((r for r in report["results"] if r["kind"] == "copy"), None)
    if copy:
        lines += [
            "",
            f"CSV through COPY: {copy['rows_per_s']:,} rows/s, goal > {ROWS_PER_S_TARGET:,} "
            f"({verdict(copy['rows_per_s'] > ROWS_PER_S_TARGET)}); peak RSS "
            f"{copy['peak_rss_mb']} MB, goal < {PEAK_RSS_TARGET_MB:.0f} MB "
            f"({verdict(copy['peak_rss_mb'] < PEAK_RSS_TARGET_MB)}).",
        ]
    return "\n".join(lines)


def bench(merchant: Merchant, kind: str, runs: int) -> dict[str, Any]:
    segment = bench_segment(merchant)
    assert segment is not None
    results = [run_child(kind, segment) for _ in range(runs)]
    median = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
    labels = {
        "copy": "CSV, COPY",
        "python": "CSV, Python writer",
        "xlsx": "XLSX",
        "reference": "reference: bare COPY of the customer table",
    }
    runs_note = f" (median of {runs})" if runs > 1 else ""
    return {
        **median,
        "label": labels[kind] + runs_note,
        "runs_seconds": [r["seconds"] for r in results],
        "median_seconds": statistics.median(r["seconds"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", default="", help="python,xlsx")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--segment", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(download(args.child, args.segment)))
        return
    if connection.vendor != "postgresql":
        sys.exit("The download benchmark runs on PostgreSQL (set DATABASE_URL).")
    skip = {s for s in args.skip.split(",") if s}

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (server_version,) = cursor.fetchone() or ("?",)
    report: dict[str, Any] = {
        "date": timezone.now().isoformat(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "cpus": os.cpu_count(),
        "results": [],
    }
    wanted = [(CSV_MERCHANT, "reference", 1), (CSV_MERCHANT, "copy", args.runs)]
    if "python" not in skip:
        wanted.append((CSV_MERCHANT, "python", 1))
    if "xlsx" not in skip:
        wanted.append((XLSX_MERCHANT, "xlsx", 1))
    merchants = {slug: Merchant.objects.filter(slug=slug).first() for slug, _, _ in wanted}
    missing = [slug for slug, merchant in merchants.items() if merchant is None]
    if missing:
        sys.exit(f"{', '.join(missing)}: missing (run bench/generate_bench.py)")
    try:
        for slug, merchant in merchants.items():
            assert merchant is not None
            members = prepare_segment(merchant)
            print(f"{slug}: segment {SEGMENT_NAME!r} with {members:,} members", flush=True)
        # As autovacuum leaves the table after a refresh (segments/0003 tunes it): without
        # this, the first downloads also set the new rows' hint bits and step over the
        # million rows the re-insert left dead, and take a third longer.
        vacuum_memberships()
        for slug, kind, runs in wanted:
            merchant = merchants[slug]
            assert merchant is not None
            print(f"{slug} {kind}:", flush=True)
            report["results"].append(bench(merchant, kind, runs))
    finally:
        for merchant in merchants.values():
            if merchant is not None:
                delete_segment(merchant)
        vacuum_memberships()
    table = markdown(report)
    print()
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"downloads-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({**report, "markdown": table}, indent=2, default=str))
    print(f"\nraw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
