"""Time `generate_dataset` on PostgreSQL at 10k, 100k and 1M customers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sp_bench \
        .venv/bin/python bench/generate_bench.py [--sizes 10000,100000,1000000] [--seed 1]

Each size goes into its own merchant (`bench-10k`, `bench-100k`, `bench-1m`); a size whose
merchant already has customers is skipped (the command refuses to write into it), so the
1M merchant that later benchmarks read is never rebuilt by accident. Reports wall time,
rows written per table, rows/s, the generator's peak RSS and the database's growth. Raw
command output and a JSON summary go to bench/out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def slug_for(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"bench-{size // 1_000_000}m"
    if size % 1000 == 0:
        return f"bench-{size // 1000}k"
    return f"bench-{size}"


def psql_value(sql: str) -> str:
    """One value from the benchmark database, through Django so DATABASE_URL applies."""
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
        "django.setup(); from django.db import connection; c = connection.cursor();"
        f"c.execute({sql!r}); print(c.fetchone()[0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def run_size(size: int, seed: int) -> dict[str, object]:
    slug = slug_for(size)
    existing = psql_value(
        "SELECT count(*) FROM customers_customer c JOIN customers_merchant m"
        f" ON m.id = c.merchant_id WHERE m.slug = '{slug}'"
    )
    if int(existing):
        print(f"{slug}: exists with {existing} customers, skipped")
        return {"size": size, "merchant": slug, "skipped": True, "customers": int(existing)}
    db_before = int(psql_value("SELECT pg_database_size(current_database())"))
    command = [
        sys.executable,
        "manage.py",
        "generate_dataset",
        "--merchant",
        slug,
        "--customers",
        str(size),
        "--seed",
        str(seed),
        "--name",
        f"Bench {size:,} customers",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(f"  [{slug}] {line}", end="")
        lines.append(line)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    (OUT / f"generate-{slug}.txt").write_text("".join(lines))
    if process.returncode:
        raise SystemExit(f"generate_dataset failed for {slug} (exit {process.returncode})")
    counts = {
        m.group(1): int(m.group(2))
        for m in (re.match(r"\s+(\w+): (\d+)$", line) for line in lines)
        if m
    }
    rows = sum(counts.values())
    db_after = int(psql_value("SELECT pg_database_size(current_database())"))
    return {
        "size": size,
        "merchant": slug,
        "wall_s": round(wall, 1),
        "rows": counts,
        "rows_total": rows,
        "rows_per_s": round(rows / wall),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "cpu_user_s": round(usage.ru_utime, 1),
        "db_growth_mb": round((db_after - db_before) / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database (see the docstring).")
    OUT.mkdir(parents=True, exist_ok=True)
    results = [run_size(int(size), args.seed) for size in args.sizes.split(",")]
    print()
    print(f"{'merchant':<12} {'wall s':>8} {'rows':>12} {'rows/s':>9} {'RSS MB':>7} {'DB +MB':>7}")
    for r in results:
        if r.get("skipped"):
            print(f"{r['merchant']:<12} skipped (exists)")
            continue
        print(
            f"{r['merchant']:<12} {r['wall_s']:>8} {r['rows_total']:>12,} {r['rows_per_s']:>9,}"
            f" {r['peak_rss_mb']:>7} {r['db_growth_mb']:>7}"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT / f"generate_bench-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
