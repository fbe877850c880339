"""Customer scores benchmark (issues 12 and 13) on PostgreSQL: `compute_scores` for a whole
merchant (time and peak memory, first computation and steady state; the predictions' fit and
the holdout check included) and one new purchase's database time with the lifecycle stage,
tier, predictions and smart segment kept.

    DJANGO_DEBUG=1 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/segment_portal_bench \\
        .venv/bin/python bench/scores_bench.py [--sizes 10000,100000,1000000] [--purchases 200]
        [--steady-runs 3] [--skip compute,first,breakdown,purchases]
    .venv/bin/python bench/run.py --only scores     # the same, through `make bench`

Reads the merchants `bench-10k`, `bench-100k` and `bench-1m` made by `generate_bench.py`
(never rebuilds them). For each size:

1. Tier rules: when the merchant has none, gives its four generated tiers spend rules
   (lifetime spend from 0 / 500 / 2,000 / 6,000 for Bronze / Silver / Gold / Platinum), so
   tiers are part of the measured work; existing rules are used as they are. The rules are
   left in place (later runs measure the same thing).
2. Resets the merchant's scores (stage, RFM, group, tier and its grace date, predictions,
   smart segment and churn cut-off on every metrics row, the stored fit, the customers'
   tiers, every `ScoreChange` row of the merchant), then VACUUM ANALYZE
   of those tables, so that the first computation is reproducible: every customer with an
   order gets a stage from none, every customer a tier from none, and a history row each.
   (The generator had already run the write chain's merchant-level follow: stages, no RFM,
   tiers as generated; the reset undoes that.)
3. `manage.py compute_scores --merchant SLUG --json` in a subprocess: the first
   computation, then (after VACUUM ANALYZE, as autovacuum would between nightly runs) the
   steady state, nothing or little changed, `--steady-runs` times (the table shows the run
   of median wall time; `--skip first` runs these alone, without the reset). Wall time of
   the process (interpreter and Django start-up and the commit included), its peak RSS
   (`ru_maxrss` from `os.wait4`), the service's own `seconds`, history rows written, the
   peak RSS of the PostgreSQL backend serving it (and its parallel workers: VmHWM, which
   counts the shared buffers it touched) and the server's temporary files.
4. `breakdown`: the same two computations again in this process (after the same reset),
   with the time of every SQL statement (`connection.execute_wrapper`): where the time goes.
5. `purchases`: `--purchases` random customers (fixed seed); for each, inside
   `transaction.atomic()` rolled back at the end, one purchase
   `Transaction(kind="purchase", total=25.00).save()`, the write chain every purchase takes
   (its row, the customer's metrics and product stats, `customer_scores_follow`, the
   announcement). Database time = the sum of the durations of every SQL statement of the
   save as the client sees it (round trips on localhost included; savepoints left out: a
   purchase outside a transaction has none; the commit is not in it, nothing is committed).
   Also the follow step alone. The segments' on-commit work never runs (rolled back).

Tasks are never run: CELERY_BROKER_URL is set to `memory://` for this process and the
command, so a merchant with dynamic segments would not refresh them inside the measurement.
Prints Markdown tables; raw output (each command's stdout and stderr) and a JSON summary go
to bench/out/ (git-ignored): `scores-<timestamp>.json`, `scores-<slug>-<run>-<timestamp>.txt`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/segment_portal_bench"
sys.path.insert(0, str(ROOT))

COMPUTE_TARGET_S = 20.0
COMPUTE_RSS_TARGET_MB = 500.0
PURCHASE_TARGET_MS = 5.0
#: The tier rules the benchmark gives a merchant without any: lifetime spend.
SPEND_THRESHOLDS = {"Bronze": 0, "Silver": 500, "Gold": 2000, "Platinum": 6000}
APP_NAME = "scores-bench-compute"
STAMP = time.strftime("%Y%m%d-%H%M%S")


def service_hash() -> str:
    """The code under test as it is on disk now (it may be uncommitted): each run records it,
    so figures of different versions are never mixed unnoticed."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "customers" / "scores").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def slug_for(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"bench-{size // 1_000_000}m"
    return f"bench-{size // 1000}k"


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["BENCH_DATABASE_URL"] = url
    # Never run a task: with no broker, Celery runs them eagerly in-process.
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


# --- the merchant: tier rules, reset -------------------------------------------------------


def ensure_tier_rules(merchant: Any) -> list[dict[str, Any]]:
    from customers.models import Tier, TierRule

    if not TierRule.objects.filter(merchant=merchant).exists():
        for tier in Tier.objects.filter(merchant=merchant):
            if tier.name in SPEND_THRESHOLDS:
                TierRule.objects.create(
                    merchant=merchant,
                    tier=tier,
                    metric="spend",
                    period="lifetime",
                    threshold=Decimal(SPEND_THRESHOLDS[tier.name]),
                )
    return [
        {
            "tier": rule.tier.name,
            "metric": rule.metric,
            "period": rule.period,
            "threshold": str(rule.threshold),
        }
        for rule in TierRule.objects.filter(merchant=merchant).select_related("tier")
    ]


def vacuum(*tables: str) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    return time.perf_counter() - started


SCORE_TABLES = ("customers_customermetrics", "customers_customer", "customers_scorechange")


def reset_scores(merchant: Any) -> dict[str, float]:
    """Every score of the merchant back to none, its history gone, tables vacuumed."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE customers_customermetrics SET lifecycle_stage = NULL, rfm_recency = NULL, "
            "rfm_frequency = NULL, rfm_monetary = NULL, rfm_group = 'prospects', "
            "tier_id = NULL, tier_below_since = NULL, p_alive = NULL, churn_risk = NULL, "
            "expected_orders_90d = NULL, p_order_30d = NULL, predicted_clv = NULL, "
            "smart_segment = 'waiting_first_order', churn_cutoff_on = NULL "
            "WHERE merchant_id = %s",
            [merchant.pk],
        )
        cursor.execute(
            "UPDATE customers_scoresettings SET model = '{}' WHERE merchant_id = %s",
            [merchant.pk],
        )
        cursor.execute(
            "UPDATE customers_customer SET tier_id = NULL "
            "WHERE merchant_id = %s AND tier_id IS NOT NULL",
            [merchant.pk],
        )
        cursor.execute("DELETE FROM customers_scorechange WHERE merchant_id = %s", [merchant.pk])
    reset_s = time.perf_counter() - started
    return {"reset_s": round(reset_s, 1), "vacuum_s": round(vacuum(*SCORE_TABLES), 1)}


def history_rows(merchant: Any) -> int:
    from customers.models import ScoreChange

    return ScoreChange.objects.filter(merchant=merchant).count()


def temp_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


# --- compute_scores in a subprocess ----------------------------------------------------------


class BackendWatch(threading.Thread):
    """Polls pg_stat_activity for the backend (and its parallel workers) serving the
    command, and keeps each one's VmHWM (peak RSS, shared buffers it touched included) and
    the largest RssAnon seen (its private memory: sorts, hashes; sampled every 0.1 s)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.done = threading.Event()
        self.peak_kb: dict[int, int] = {}
        self.anon_kb: dict[int, int] = {}
        self.leader: int | None = None

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.is_set():
                rows = conn.execute(
                    "SELECT pid, leader_pid FROM pg_stat_activity WHERE application_name = %s "
                    "OR leader_pid IN (SELECT pid FROM pg_stat_activity "
                    "WHERE application_name = %s)",
                    [APP_NAME, APP_NAME],
                ).fetchall()
                for pid, leader in rows:
                    if leader is None or leader == pid:
                        self.leader = pid
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue
                    found = re.search(r"VmHWM:\s+(\d+) kB", status)
                    if found:
                        self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), int(found.group(1)))
                    found = re.search(r"RssAnon:\s+(\d+) kB", status)
                    if found:
                        self.anon_kb[pid] = max(self.anon_kb.get(pid, 0), int(found.group(1)))
                self.done.wait(0.1)

    def figures(self) -> dict[str, Any]:
        leader = self.peak_kb.get(self.leader or -1)
        leader_anon = self.anon_kb.get(self.leader or -1)
        workers = [kb for pid, kb in self.peak_kb.items() if pid != self.leader]
        return {
            "backend_peak_rss_mb": round(leader / 1024) if leader else None,
            "backend_peak_private_mb": round(leader_anon / 1024) if leader_anon else None,
            "parallel_workers_seen": len(workers),
            "workers_peak_rss_mb": [round(kb / 1024) for kb in workers],
            "workers_peak_private_mb": [
                round(kb / 1024) for pid, kb in self.anon_kb.items() if pid != self.leader
            ],
        }


def run_compute(merchant: Any, url: str, label: str) -> dict[str, Any]:
    """`manage.py compute_scores --json` in a subprocess: wall time, the process's own peak
    RSS (`ru_maxrss` of this child alone, from `os.wait4`), history rows written."""
    before_history, before_temp = history_rows(merchant), temp_bytes()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": "memory://",
        "PGAPPNAME": APP_NAME,
    }
    command = [sys.executable, "manage.py", "compute_scores", "--merchant", merchant.slug, "--json"]
    out_path = OUT / f"scores-{merchant.slug}-{label}-{STAMP}.txt"
    code = service_hash()
    watch = BackendWatch(url)
    watch.start()
    with (
        open(out_path.with_suffix(".stdout"), "w+") as out,
        open(out_path.with_suffix(".stderr"), "w+") as err,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        watch.done.set()
        watch.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    out_path.with_suffix(".stdout").unlink()
    out_path.with_suffix(".stderr").unlink()
    out_path.write_text(f"$ {' '.join(command)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    if process.returncode:
        raise SystemExit(f"compute_scores failed for {merchant.slug}:\n{stderr}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    result = {
        "service_sha256": code,
        "wall_s": round(wall, 2),
        "service_s": summary["seconds"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_sys_s": round(usage.ru_stime, 2),
        "history_rows": history_rows(merchant) - before_history,
        "server_temp_mb": round((temp_bytes() - before_temp) / 2**20, 1),
        **watch.figures(),
        "summary": summary,
    }
    print(
        f"  {label}: {result['wall_s']} s wall ({result['service_s']} s in the service), "
        f"peak RSS {result['peak_rss_mb']} MB (backend {result['backend_peak_rss_mb']} MB, "
        f"of it private {result['backend_peak_private_mb']} MB; workers "
        f"{result['workers_peak_rss_mb']} MB), "
        f"{result['history_rows']:,} history rows, server temp files "
        f"{result['server_temp_mb']} MB",
        flush=True,
    )
    return result


# --- the statements of one computation -------------------------------------------------------


@contextmanager
def statement_log() -> Iterator[list[dict[str, Any]]]:
    """Every SQL statement run inside: its duration (ms), rows, and the SQL."""
    from django.db import connection

    log: list[dict[str, Any]] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            cursor = context.get("cursor")
            log.append(
                {
                    "ms": (time.perf_counter() - started) * 1000,
                    "rows": getattr(cursor, "rowcount", None),
                    "sql": sql,
                }
            )

    with connection.execute_wrapper(wrapper):
        yield log


def label_for(sql: str) -> str:
    text = " ".join(sql.split())
    if text.startswith("CREATE TEMPORARY TABLE score_work"):
        return "CREATE TEMPORARY TABLE score_work AS (inputs, ranks, stages, groups, targets)"
    if text.startswith("CREATE TEMPORARY TABLE score_tier_moves"):
        return "CREATE TEMPORARY TABLE score_tier_moves AS (tier moves)"
    if "INSERT INTO customers_scorechange" in text:
        kind = "lifecycle" if "'lifecycle'" in text else "tier"
        return f"INSERT INTO customers_scorechange ({kind} history)"
    if text.startswith("UPDATE customers_customermetrics SET lifecycle_stage"):
        return "UPDATE customers_customermetrics (stage, RFM, group)"
    if text.startswith("UPDATE customers_customermetrics SET tier_id"):
        return "UPDATE customers_customermetrics (tier copy, grace date)"
    if text.startswith("UPDATE customers_customer SET tier_id"):
        return "UPDATE customers_customer (tier)"
    return text[:90]


def breakdown(merchant: Any) -> dict[str, Any]:
    """Both computations in this process, every statement timed."""
    from django.db import connection

    from customers.scores.service import scores_compute

    runs: dict[str, Any] = {"reset": reset_scores(merchant)}
    real_commit = connection._commit  # type: ignore[attr-defined]
    commits: list[float] = []

    def timed_commit() -> Any:
        started = time.perf_counter()
        try:
            return real_commit()
        finally:
            commits.append(time.perf_counter() - started)

    for label in ("first", "steady"):
        commits.clear()
        with statement_log() as log, mock.patch.object(connection, "_commit", timed_commit):
            started = time.perf_counter()
            scores_compute(merchant=merchant)
            wall = time.perf_counter() - started
        statements = [
            {"what": label_for(s["sql"]), "ms": round(s["ms"], 1), "rows": s["rows"]} for s in log
        ]
        runs[label] = {
            "wall_s": round(wall, 2),
            "sql_s": round(sum(s["ms"] for s in log) / 1000, 2),
            # The transaction's COMMIT: PostgreSQL checks the deferred foreign keys of every
            # row written (history rows, customers' tiers) and flushes the WAL.
            "commit_s": round(max(commits, default=0.0), 2),
            "statements": statements,
        }
        print(
            f"  breakdown, {label} computation in-process: {wall:.2f} s "
            f"(statements {runs[label]['sql_s']} s, commit {runs[label]['commit_s']} s)",
            flush=True,
        )
        for s in sorted(statements, key=lambda s: -s["ms"])[:8]:
            print(f"    {s['ms']:>9.1f} ms  {s['rows']!s:>9} rows  {s['what']}", flush=True)
        if label == "first":
            vacuum(*SCORE_TABLES)
    return runs


# --- one new purchase -----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def is_savepoint(sql: str) -> bool:
    return sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO"))


def bench_purchases(merchant: Any, runs: int, warmup: int = 5) -> dict[str, Any]:
    """One purchase's database time, its statements, and the score follow's share."""
    from django.db import connection, transaction
    from django.utils import timezone

    from customers import services as write_chain
    from customers.models import Customer, Transaction

    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            "SELECT id FROM customers_customer WHERE merchant_id = %s ORDER BY random() LIMIT %s",
            [merchant.pk, runs + warmup],
        )
        ids = [row[0] for row in cursor.fetchall()]
    by_id = Customer.objects.in_bulk(ids)
    chosen = [by_id[pk] for pk in ids]

    real_follow = write_chain.customer_scores_follow
    state = {"in_follow": False, "follow_wall_ms": 0.0}

    def timed_follow(**kwargs: Any) -> Any:
        state["in_follow"] = True
        started = time.perf_counter()
        try:
            return real_follow(**kwargs)
        finally:
            state["follow_wall_ms"] += (time.perf_counter() - started) * 1000
            state["in_follow"] = False

    samples: list[dict[str, Any]] = []
    per_statement: dict[str, list[float]] = {}
    log: list[dict[str, Any]] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            log.append(
                {
                    "ms": (time.perf_counter() - started) * 1000,
                    "follow": state["in_follow"],
                    "sql": sql,
                }
            )

    with mock.patch.object(write_chain, "customer_scores_follow", timed_follow):
        for i, customer in enumerate(chosen):
            log.clear()
            state["follow_wall_ms"] = 0.0
            with transaction.atomic():
                txn = Transaction(
                    merchant=merchant,
                    customer=customer,
                    external_id=f"bench-scores-{time.time_ns()}-{i}",
                    occurred_at=timezone.now(),
                    kind="purchase",
                    total=Decimal("25.00"),
                )
                with connection.execute_wrapper(wrapper):
                    started = time.perf_counter()
                    txn.save()
                    wall = (time.perf_counter() - started) * 1000
                transaction.set_rollback(True)
            if i < warmup:
                continue
            counted = [s for s in log if not is_savepoint(s["sql"])]
            follow = [s for s in counted if s["follow"]]
            history = [s for s in follow if "customers_scorechange" in s["sql"]]
            updates = [s for s in follow if s["sql"].lstrip().upper().startswith("UPDATE")]
            for s in counted:
                per_statement.setdefault(short_sql(s["sql"]), []).append(s["ms"])
            samples.append(
                {
                    "customer_id": customer.pk,
                    "db_ms": sum(s["ms"] for s in counted),
                    "statements": len(counted),
                    "follow_db_ms": sum(s["ms"] for s in follow),
                    "follow_statements": len(follow),
                    "follow_wall_ms": state["follow_wall_ms"],
                    "wall_ms": wall,
                    "score_changed": bool(history),
                    "score_updates": len(updates),
                }
            )

    # The floor of any statement as the client sees it: a `SELECT 1` round trip (localhost).
    round_trips = []
    with connection.cursor() as cursor:
        for _ in range(200):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            round_trips.append((time.perf_counter() - started) * 1000)

    def stats(key: str) -> dict[str, float]:
        values = [s[key] for s in samples]
        return {
            "median": round(statistics.median(values), 2),
            "p95": round(percentile(values, 0.95), 2),
            "max": round(max(values), 2),
        }

    result = {
        "purchases": len(samples),
        "total": "25.00",
        "db_ms": stats("db_ms"),
        "statements": stats("statements"),
        "follow_db_ms": stats("follow_db_ms"),
        "follow_statements": stats("follow_statements"),
        "follow_wall_ms": stats("follow_wall_ms"),
        "wall_ms": stats("wall_ms"),
        "purchases_that_moved_a_score": sum(s["score_changed"] for s in samples),
        "select_1_round_trip_ms_median": round(statistics.median(round_trips), 3),
        # Which statements a purchase runs (in first-seen order), in how many of the
        # purchases, and their median time: every purchase runs the same reads; the writes
        # of a stage or tier only when one moved.
        "statement_ms": [
            {"sql": sql, "runs": len(times), "median_ms": round(statistics.median(times), 3)}
            for sql, times in per_statement.items()
        ],
        "samples": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()} for s in samples
        ],
    }
    print(
        f"  one purchase ({len(samples)}): DB {result['db_ms']['median']} ms median, "
        f"p95 {result['db_ms']['p95']}, max {result['db_ms']['max']}; "
        f"{result['statements']['median']:.0f} statements; score follow "
        f"{result['follow_db_ms']['median']} ms DB ({result['follow_statements']['median']:.0f} "
        f"statements), {result['follow_wall_ms']['median']} ms wall; "
        f"{result['purchases_that_moved_a_score']} moved a stage or tier; a SELECT 1 round "
        f"trip {result['select_1_round_trip_ms_median']} ms",
        flush=True,
    )
    for row in result["statement_ms"]:
        print(f"    {row['median_ms']:>7.3f} ms  x{row['runs']:<4} {row['sql']}", flush=True)
    return result


def short_sql(sql: str) -> str:
    """A statement, recognisable and short: its first 110 characters, quotes dropped."""
    return " ".join(sql.replace('"', "").split())[:110]


# --- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| customers | computation | wall | in the service | peak RSS (process) | PostgreSQL "
        "backend peak RSS | history rows written | goal (1M: < 20 s, < 500 MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in report["sizes"]:
        compute = size.get("compute", {})
        for label in ("first", "steady"):
            run = compute.get(label)
            if not run:
                continue
            name = "first (every score from none)"
            if label == "steady":
                walls = sorted(r["wall_s"] for r in compute["steady_runs"])
                name = f"steady (median of {len(walls)}: {walls[0]} to {walls[-1]} s)"
            ok = run["wall_s"] < COMPUTE_TARGET_S and run["peak_rss_mb"] < COMPUTE_RSS_TARGET_MB
            lines.append(
                f"| {size['customers']:,} | {name} | {run['wall_s']} s | {run['service_s']} s | "
                f"{run['peak_rss_mb']} MB | {run['backend_peak_rss_mb']} MB | "
                f"{run['history_rows']:,} | "
                + ("" if size["customers"] < 1_000_000 else verdict(ok))
                + " |"
            )
    lines += [
        "",
        "| customers | purchase DB time median | p95 | max | statements | score follow DB "
        "median (p95) | its statements | moved a stage or tier | goal < 5 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in report["sizes"]:
        p = size.get("purchases")
        if not p:
            continue
        lines.append(
            f"| {size['customers']:,} | {p['db_ms']['median']} ms | {p['db_ms']['p95']} ms | "
            f"{p['db_ms']['max']} ms | {p['statements']['median']:.0f} | "
            f"{p['follow_db_ms']['median']} ms ({p['follow_db_ms']['p95']}) | "
            f"{p['follow_statements']['median']:.0f} | "
            f"{p['purchases_that_moved_a_score']} of {p['purchases']} | "
            f"{verdict(p['db_ms']['median'] < PURCHASE_TARGET_MS)} (median) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--purchases", type=int, default=200)
    parser.add_argument(
        "--steady-runs", type=int, default=3, help="steady-state computations (median shown)"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="compute,first,breakdown,purchases (first: no reset, steady runs only)",
    )
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        sys.exit("The scores benchmark runs on PostgreSQL (BENCH_DATABASE_URL).")
    setup_django(args.database_url)
    from django.db import connection
    from django.utils import timezone

    from customers.models import Customer, Merchant

    skip = {s for s in args.skip.split(",") if s}
    OUT.mkdir(parents=True, exist_ok=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        server = cursor.fetchone()[0]
        settings = {}
        for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit"):
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    report: dict[str, Any] = {
        "date": timezone.now().isoformat(),
        "server": server,
        "server_settings": settings,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_before": os.getloadavg(),
        # The code measured: the commit, and the service file as it was (it may be uncommitted).
        "git_head": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "service_sha256": service_hash(),
        "sizes": [],
    }
    print(f"{server}; {settings}", flush=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        merchant = Merchant.objects.filter(slug=slug_for(size)).first()
        if merchant is None or not Customer.objects.filter(merchant=merchant).exists():
            print(f"{slug_for(size)}: missing (run bench/generate_bench.py), skipped", flush=True)
            continue
        customers = Customer.objects.filter(merchant=merchant).count()
        print(f"{merchant.slug}: {customers:,} customers", flush=True)
        figures: dict[str, Any] = {
            "merchant": merchant.slug,
            "customers": customers,
            "tier_rules": ensure_tier_rules(merchant),
            "load_at_start": os.getloadavg(),
        }
        report["sizes"].append(figures)
        if "compute" not in skip:
            compute: dict[str, Any] = {}
            if "first" not in skip:
                figures["reset"] = reset_scores(merchant)
                compute["first"] = run_compute(merchant, args.database_url, "first")
                figures["vacuum_between_s"] = round(vacuum(*SCORE_TABLES), 1)
            steady = [
                run_compute(merchant, args.database_url, f"steady{i + 1}")
                for i in range(args.steady_runs)
            ]
            # The table shows the run of median wall time; every run is kept.
            compute["steady"] = sorted(steady, key=lambda run: run["wall_s"])[len(steady) // 2]
            compute["steady_runs"] = steady
            figures["compute"] = compute
        if "breakdown" not in skip:
            figures["breakdown"] = breakdown(merchant)
        if "purchases" not in skip:
            vacuum(*SCORE_TABLES)
            figures["purchases"] = bench_purchases(merchant, args.purchases)
        figures["load_at_end"] = os.getloadavg()
    table = markdown(report)
    print()
    print(table)
    path = OUT / f"scores-{STAMP}.json"
    path.write_text(json.dumps({**report, "markdown": table}, indent=2, default=str))
    print(f"\nraw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
