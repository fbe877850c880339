"""Benchmark of the CSV import on PostgreSQL: wall time per phase and peak memory.

    .venv/bin/python bench/import_bench.py --customers 100000 [--small 10000]
        [--database-url postgres://postgres@127.0.0.1:5432/sp_import_bench]

For each size (the small one first, to show that memory does not grow with the files):
writes contract CSV files (about 10 transactions per customer and 2.5 line items per
transaction), recreates the database, runs `manage.py import_data` in a child process, then
runs it again with the same files (the idempotent re-import), and reports wall time, rows/s,
the import's phases (from its log) and the peak RSS of the import process. Raw output goes
to bench/out/ (git-ignored).

The CSV files come from `manage.py generate_dataset --csv` when that command exists, else
from the small writer below.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PYTHON = sys.executable
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/sp_import_bench"
FILES = ("branches", "products", "customers", "transactions", "items", "redemptions")
PHASE_RE = re.compile(r"import phase (.+): ([\d.]+) s")


def write_csv(directory: Path, customers: int, seed: int) -> None:
    """Contract files: ~10 transactions per customer, ~2.5 lines per transaction."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    branches = [f"B{i:02d}" for i in range(20)]
    skus = [f"SKU-{i:05d}" for i in range(2000)]
    prices = [rng.randint(199, 9999) for _ in skus]
    tags = ["VIP", "Newsletter", "Wholesale", "Staff", "Local", "Online"]
    tiers = ["Bronze", "Silver", "Gold", "Platinum"]
    with open(directory / "branches.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["code", "name"])
        w.writerows([code, f"Store {code}"] for code in branches)
    with open(directory / "products.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sku", "name", "product_type", "brand", "category", "price"])
        for sku, price in zip(skus, prices, strict=True):
            w.writerow(
                [
                    sku,
                    f"Product {sku}",
                    rng.choice(["flower", "edible", "vape"]),
                    f"Brand {rng.randint(1, 40)}",
                    rng.choice(["a", "b", "c"]),
                    f"{price / 100:.2f}",
                ]
            )
    with (
        open(directory / "customers.csv", "w", newline="") as fc,
        open(directory / "transactions.csv", "w", newline="") as ft,
        open(directory / "items.csv", "w", newline="") as fi,
        open(directory / "redemptions.csv", "w", newline="") as fr,
    ):
        wc, wt, wi, wr = csv.writer(fc), csv.writer(ft), csv.writer(fi), csv.writer(fr)
        wc.writerow(
            [
                "external_id", "first_name", "last_name", "email", "phone", "gender",
                "birth_date", "tags", "tier", "joined_at", "home_branch", "email_opt_in",
                "points_balance", "lifetime_points",
            ]
        )  # fmt: skip
        wt.writerow(
            ["external_id", "customer_external_id", "occurred_at", "kind", "total", "branch"]
        )
        wi.writerow(["transaction_external_id", "sku", "quantity", "amount"])
        wr.writerow(["external_id", "customer_external_id", "reward", "points", "redeemed_at"])
        txn = 0
        red = 0
        for c in range(customers):
            cid = f"C{c:07d}"
            joined = start + timedelta(seconds=rng.randint(0, 365 * 86400))
            wc.writerow(
                [
                    cid, f"First{c}", f"Last{c}", f"c{c}@example.com",
                    f"+1 416 555 {c % 10000:04d}", rng.choice(["female", "male", "other", ""]),
                    f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    ";".join(rng.sample(tags, rng.randint(0, 2))), rng.choice(tiers),
                    joined.strftime("%Y-%m-%dT%H:%M:%S"), rng.choice(branches),
                    rng.choice(["yes", "no"]), rng.randint(0, 5000), rng.randint(0, 20000),
                ]
            )  # fmt: skip
            when = joined
            for _ in range(rng.randint(0, 20)):  # 10 on average
                txn += 1
                tid = f"T{txn:08d}"
                when += timedelta(seconds=rng.randint(3600, 40 * 86400))
                total = 0
                for _ in range(rng.randint(1, 4)):  # 2.5 on average
                    p = rng.randrange(len(skus))
                    qty = rng.randint(1, 3)
                    amount = prices[p] * qty
                    total += amount
                    wi.writerow([tid, skus[p], qty, f"{amount / 100:.2f}"])
                refund = rng.random() < 0.03
                wt.writerow(
                    [
                        tid, cid, when.strftime("%Y-%m-%dT%H:%M:%S"),
                        "refund" if refund else "purchase", f"{total / 100:.2f}",
                        rng.choice(branches),
                    ]
                )  # fmt: skip
            if rng.random() < 0.3:
                red += 1
                wr.writerow(
                    [f"R{red:08d}", cid, "Free coffee", 100, when.strftime("%Y-%m-%dT%H:%M:%S")]
                )


def make_csv(directory: Path, customers: int, seed: int) -> str:
    """Fill `directory` with the contract files; returns which generator made them."""
    if all((directory / f"{name}.csv").exists() for name in FILES):
        return "cached"
    generator = ROOT / "customers" / "management" / "commands" / "generate_dataset.py"
    if generator.exists():
        directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DATABASE_URL": "sqlite:////tmp/sp_import_bench_gen.sqlite3"}
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [PYTHON, "manage.py", "create_merchant", "--slug", "bench-gen", "--name", "Gen",
             "--timezone", "America/Toronto"],
            cwd=ROOT, env=env, check=False, capture_output=True,
        )  # fmt: skip
        done = subprocess.run(
            [PYTHON, "manage.py", "generate_dataset", "--merchant", "bench-gen", "--customers",
             str(customers), "--seed", str(seed), "--csv", str(directory)],
            cwd=ROOT, env=env, check=False,
        )  # fmt: skip
        if done.returncode == 0 and all((directory / f"{n}.csv").exists() for n in FILES):
            return "generate_dataset"
    write_csv(directory, customers, seed)
    return "bench writer"


def measure(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run `argv` in a fresh child of a fresh process, so ru_maxrss is that command's alone."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.monotonic() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'rc': p.returncode, 'wall': wall, 'rss_kb': rss,"
        " 'stdout': p.stdout, 'stderr': p.stderr}))\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", probe, *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def reset_database(url: str, env: dict[str, str]) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    psql = ["psql", "-h", parsed.hostname or "127.0.0.1", "-U", parsed.username or "postgres",
            "-p", str(parsed.port or 5432), "-d", "postgres", "-q"]  # fmt: skip
    subprocess.run([*psql, "-c", f"DROP DATABASE IF EXISTS {name}"], check=True)
    subprocess.run([*psql, "-c", f"CREATE DATABASE {name}"], check=True)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [PYTHON, "manage.py", "create_merchant", "--slug", "bench", "--name", "Bench",
         "--timezone", "America/Toronto"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip


def count_rows(directory: Path) -> dict[str, int]:
    counts = {}
    for name in FILES:
        with open(directory / f"{name}.csv", "rb") as f:
            counts[name] = sum(1 for _ in f) - 1
    return counts


def run_size(customers: int, url: str, seed: int, log: list[str]) -> dict[str, object]:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "1", "DJANGO_LOG_LEVEL": "INFO"}
    directory = OUT / f"csv-{customers}"
    started = time.monotonic()
    source = make_csv(directory, customers, seed)
    gen_wall = time.monotonic() - started
    rows = count_rows(directory)
    reset_database(url, env)
    argv = [PYTHON, "manage.py", "import_data", "--merchant", "bench", "-v", "2"]
    for name in FILES:
        argv += [f"--{name}", str(directory / f"{name}.csv")]
    result: dict[str, object] = {"customers": customers, "rows": rows, "csv": source,
                                 "csv_wall_s": round(gen_wall, 1)}  # fmt: skip
    for run in ("first import", "re-import (same files)"):
        m = measure(argv, env)
        log.append(f"## {customers} customers, {run}\n{m['stdout']}{m['stderr']}")
        if m["rc"] != 0:
            raise SystemExit(f"import failed ({m['rc']}):\n{m['stderr']}")
        phases = {k: float(v) for k, v in PHASE_RE.findall(str(m["stderr"]))}
        total_rows = sum(rows.values())
        result[run] = {
            "wall_s": round(float(str(m["wall"])), 1),
            "rows_per_s": round(total_rows / float(str(m["wall"]))),
            "peak_rss_mb": round(int(str(m["rss_kb"])) / 1024, 1),
            "phases_s": phases,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000, help="0 to skip the small size")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    results = []
    for size in [s for s in (args.small, args.customers) if s]:
        results.append(run_size(size, args.database_url, args.seed, log))
        print(json.dumps(results[-1], indent=2), flush=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "self_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (OUT / f"import-{stamp}.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2)
    )
    (OUT / f"import-{stamp}.log").write_text("\n".join(log))
    print(json.dumps({"machine": machine}, indent=2))


if __name__ == "__main__":
    main()
