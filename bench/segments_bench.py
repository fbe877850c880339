"""Segment engine benchmark (issue 3) on PostgreSQL: live counts against hand-written SQL,
full refreshes, and one new transaction applied incrementally.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sp_bench \\
        .venv/bin/python bench/segments_bench.py [--sizes 10000,100000,1000000] [--runs 7]
        [--skip refresh,incremental,celery]

Reads the merchants `bench-10k`, `bench-100k` and `bench-1m` made by `generate_bench.py`
(never rebuilds them). For each size:

a. the live count (`engine.count_matching`, fast path, as of now) of each template segment
   and of an 8-condition tree: median of `--runs` runs after a warm-up run; and the builder's
   count with its per-condition funnel (`engine.funnel`);
b. a hand-written SQL query for the same count over the same tables (the per-customer row
   and the per-product stats), its median, the ratio, and a check that the counts are equal;
c. a full refresh of a segment of a tenth of the customers (at most 100,000), the same
   refresh again with nothing changed, then a refresh of all 50 segments of the merchant
   (the templates, the 8-condition tree and generated variants);
d. one new purchase against those 50 segments: the database time of writing its rows, of
   the customer's metrics and product stats, and of the incremental membership update
   (every query's time as the client sees it, so round trips count too), and the time from
   commit until a real Celery worker on Redis has made the membership visible.

Prints a markdown table and writes raw JSON to bench/out/segments-<timestamp>.json. The
benchmark segments it creates are named "bench: ..." and are deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Tasks go to Redis (a real worker runs them in the end-to-end figure); the other figures call
# the services directly and never enqueue anything.
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

import django  # noqa: E402

django.setup()

from django.db import DatabaseError, connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from customers.metrics import refresh_metrics  # noqa: E402
from customers.models import Customer, LineItem, Merchant, Product, Transaction  # noqa: E402
from segments import engine, services  # noqa: E402
from segments.models import Segment, SegmentKind, SegmentMembership  # noqa: E402

COUNT_TARGET_MS = 100.0
TREE_TARGET_MS = 150.0
RATIO_TARGET = 1.5
REFRESH_TARGET_S = 2.0
REFRESH_ALL_TARGET_S = 300.0
INCREMENTAL_TARGET_MS = 5.0
END_TO_END_TARGET_S = 1.0
BENCH_PREFIX = "bench: "


def cond(field: str, op: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value, **extra}


def all_of(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"match": "all", "conditions": list(conditions)}


#: The template segments of the product, by name.
TEMPLATES: dict[str, dict[str, Any]] = {
    "Munchie lovers": all_of(
        cond("purchased", "gte", 1, products={"product_types": ["edible"]}, window_days=30)
    ),
    "Phat Panda preroll lovers": all_of(
        cond(
            "purchased",
            "gt",
            15,
            products={"product_types": ["preroll"], "brands": ["Phat Panda"]},
            last_within_days=14,
        )
    ),
    "Vendor day": all_of(cond("customer_type", "in", ["vendor"])),
    "Locals 21-30": all_of(cond("tags", "has_any", ["local"]), cond("age", "between", [21, 30])),
    "Bronze: spend 500+": all_of(cond("total_spend", "gte", 500)),
    "Gold: spend 1000+": all_of(cond("total_spend", "gte", 1000)),
    "Birthday this month": all_of(cond("birthday", "this_month", None)),
    "Not contacted in 30 days": {
        "match": "any",
        "conditions": [
            cond("last_contacted", "before_days", 30),
            cond("last_contacted", "never", None),
        ],
    },
}

#: An arbitrary tree of 8 conditions: metrics, profile, tags and a purchase.
TREE_8 = {
    "match": "all",
    "conditions": [
        cond("total_spend", "gte", 200),
        cond("orders_count", "gte", 3),
        cond("last_purchase", "within_days", 180),
        cond("age", "gte", 21),
        cond("email_opt_in", "is", True),
        {
            "match": "any",
            "conditions": [
                cond("tags", "has_any", ["vip", "local"]),
                cond("points_balance", "gte", 500),
            ],
        },
        {"match": "any", "negate": True, "conditions": [cond("tags", "has_any", ["staff"])]},
        cond("purchased", "gte", 1, products={"product_types": ["flower"]}, window_days=90),
    ],
}
TREE_NAME = "8-condition tree (one on products)"

#: The same tree with a profile condition instead of the product one: eight conditions
#: answered by the per-customer row alone.
TREE_8_ROW = {
    **TREE_8,
    "conditions": [
        *TREE_8["conditions"][:-1],
        cond("gender", "in", ["female", "other", "unspecified"]),
    ],
}
ROW_TREE_NAME = "8-condition tree (per-customer row)"


def hand_sql(name: str, merchant: Merchant, now: dt.datetime) -> tuple[str, list[Any]]:
    """The count a person would write for each segment, by hand, over the same tables the
    engine reads (the per-customer row and the per-product stats)."""
    m = merchant.pk
    today = timezone.localtime(now, merchant.tzinfo).date()

    def years_ago(n: int) -> dt.date:
        try:
            return today.replace(year=today.year - n)
        except ValueError:  # 29 February
            return today.replace(year=today.year - n, day=28)

    def tag_ids(*names: str) -> str:
        listed = ", ".join(f"'{n}'" for n in names)
        return (
            f"ARRAY(SELECT id FROM customers_tag WHERE merchant_id = {m} "
            f"AND lower(name) IN ({listed}))"
        )

    stats = """
        FROM customers_customerproductstats s
        JOIN customers_product p ON p.id = s.product_id
        WHERE p.merchant_id = %s"""
    if name == "Munchie lovers":
        sql = f"""SELECT count(DISTINCT s.customer_id) {stats}
            AND lower(p.product_type) = 'edible' AND s.last_purchased_at >= %s"""
        return sql, [m, now - dt.timedelta(days=30)]
    if name == "Phat Panda preroll lovers":
        sql = f"""SELECT count(*) FROM (
            SELECT s.customer_id {stats}
              AND lower(p.product_type) = 'preroll' AND lower(p.brand) = 'phat panda'
            GROUP BY s.customer_id
            HAVING sum(s.units) > 15 AND max(s.last_purchased_at) >= %s) x"""
        return sql, [m, now - dt.timedelta(days=14)]
    lean = "SELECT count(*) FROM customers_customermetrics WHERE merchant_id = %s"
    if name == "Vendor day":
        return f"{lean} AND lower(customer_type) = 'vendor'", [m]
    if name == "Locals 21-30":
        sql = f"{lean} AND tag_ids && {tag_ids('local')} AND birth_date <= %s AND birth_date > %s"
        return sql, [m, years_ago(21), years_ago(31)]
    if name in ("Bronze: spend 500+", "Gold: spend 1000+"):
        limit = 500 if name.startswith("Bronze") else 1000
        return f"{lean} AND net_spend >= %s", [m, Decimal(limit)]
    if name == "Birthday this month":
        return f"{lean} AND extract(month FROM birth_date) = %s", [m, today.month]
    if name == "Not contacted in 30 days":
        sql = f"{lean} AND (last_contacted_at < %s OR last_contacted_at IS NULL)"
        return sql, [m, now - dt.timedelta(days=30)]
    tree = f"""{lean} AND net_spend >= 200 AND orders_count >= 3
        AND last_purchase_at >= %s AND birth_date <= %s AND email_opt_in
        AND (tag_ids && {tag_ids("vip", "local")} OR points_balance >= 500)
        AND NOT tag_ids && {tag_ids("staff")}"""
    tree_params = [m, now - dt.timedelta(days=180), years_ago(21)]
    if name == TREE_NAME:
        sql = f"""{tree} AND customer_id IN (SELECT s.customer_id {stats}
            AND lower(p.product_type) = 'flower' AND s.last_purchased_at >= %s)"""
        return sql, [*tree_params, m, now - dt.timedelta(days=90)]
    if name == ROW_TREE_NAME:
        return f"{tree} AND gender IN ('female', 'other', 'unspecified')", tree_params
    raise KeyError(name)


def median_ms(fn: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    """Warm up once, then time `runs` calls; (median ms, all ms, last result)."""
    result = fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times, result


def sql_count(sql: str, params: list[Any]) -> int:
    """Run a hand-written count under the engine's session settings (JIT off, work_mem)."""
    with engine.evaluation_settings(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.fetchone()[0])


def bench_counts(merchant: Merchant, runs: int) -> list[dict[str, Any]]:
    rows = []
    for name, rules in [*TEMPLATES.items(), (TREE_NAME, TREE_8), (ROW_TREE_NAME, TREE_8_ROW)]:

        def compiled(rules: dict[str, Any] = rules) -> int:
            return engine.count_matching(merchant=merchant, rules=rules)

        def with_funnel(rules: dict[str, Any] = rules) -> Any:
            return engine.count_with_funnel(merchant=merchant, rules=rules)

        compiled_ms, compiled_all, count = median_ms(compiled, runs)
        funnel_ms, _, _ = median_ms(with_funnel, max(3, runs // 2))
        # The compiled SQL alone, run like the hand-written one (no Python compilation).
        qs = engine.count_queryset(merchant=merchant, rules=rules)
        compiled_sql, compiled_params = engine.count_sql(qs)

        def compiled_query(sql: str = compiled_sql, params: Any = compiled_params) -> int:
            return sql_count(sql, list(params))

        query_ms, _, _ = median_ms(compiled_query, runs)
        # Equality at one fixed instant (the live count's "now" moves between runs, and
        # "not contacted in 30 days" changes by the second on real data).
        now = timezone.now()
        sql, params = hand_sql(name, merchant, now)
        fixed = engine.count_matching(merchant=merchant, rules=rules, as_of=now, exact=False)
        if fixed != sql_count(sql, params):
            raise AssertionError(f"{name}: compiled {fixed} != hand-written")

        def hand(sql: str = sql, params: list[Any] = params) -> int:
            return sql_count(sql, params)

        hand_ms, hand_all, _ = median_ms(hand, runs)
        row: dict[str, Any] = {
            "segment": name,
            "count": count,
            "compiled_ms": round(compiled_ms, 1),
            "compiled_runs_ms": [round(t, 1) for t in compiled_all],
            "funnel_ms": round(funnel_ms, 1),
            "query_ms": round(query_ms, 1),
            "hand_ms": round(hand_ms, 1),
            "hand_runs_ms": [round(t, 1) for t in hand_all],
            "ratio": round(query_ms / hand_ms, 2) if hand_ms else None,
            "target_ms": COUNT_TARGET_MS if name in TEMPLATES else TREE_TARGET_MS,
        }
        print(
            f"  {name}: {count} customers, count_matching {compiled_ms:.1f} ms (its SQL alone "
            f"{query_ms:.1f} ms), hand-written {row['hand_ms']} ms, with the funnel "
            f"{row['funnel_ms']} ms",
            flush=True,
        )
        rows.append(row)
    return rows


# --- refreshes ------------------------------------------------------------------------------


def spend_for_members(merchant: Merchant, members: int) -> Decimal:
    """The net spend threshold that selects about `members` customers."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT net_spend FROM customers_customermetrics WHERE merchant_id = %s "
            "ORDER BY net_spend DESC OFFSET %s LIMIT 1",
            [merchant.pk, members],
        )
        return Decimal(cursor.fetchone()[0]) + Decimal("0.01")


def variants(merchant: Merchant, wanted: int) -> list[tuple[str, dict[str, Any]]]:
    """Templates plus varied dynamic segments, `wanted` in all."""
    out = [(name, rules) for name, rules in TEMPLATES.items()]
    out.append((TREE_NAME, TREE_8))
    types = ["flower", "preroll", "vape", "edible", "concentrate"]
    tags = ["vip", "local", "staff"]
    i = 0
    while len(out) < wanted:
        kind = i % 6
        if kind == 0:
            rules = all_of(cond("total_spend", "gte", 100 + 150 * i))
        elif kind == 1:
            rules = all_of(
                cond("last_purchase", "within_days", 7 + 5 * i),
                cond("orders_count", "gte", 1 + i % 5),
            )
        elif kind == 2:
            rules = all_of(
                cond(
                    "purchased",
                    "gte",
                    1,
                    products={"product_types": [types[i % len(types)]]},
                    window_days=30 + i,
                )
            )
        elif kind == 3:
            rules = all_of(
                cond("tags", "has_any", [tags[i % len(tags)]]),
                cond("age", "between", [18 + i % 20, 30 + i % 20]),
            )
        elif kind == 4:
            rules = all_of(
                cond("last_purchase", "before_days", 30 + 10 * i),
                cond("total_spend", "gte", 50 * (i % 10)),
            )
        else:
            rules = all_of(
                cond("points_balance", "gte", 100 * (i % 10)), cond("sms_opt_in", "is", True)
            )
        out.append((f"variant {i + 1}", rules))
        i += 1
    return out


def create_segment(merchant: Merchant, name: str, rules: dict[str, Any]) -> Segment:
    # Created directly (not through segment_create) so no refresh is queued on a broker.
    segment = Segment.objects.create(
        merchant=merchant,
        name=BENCH_PREFIX + name,
        slug=f"bench-{abs(hash(name)) % 10**10}-{Segment.objects.count()}",
        kind=SegmentKind.DYNAMIC,
        rules=rules,
    )
    return segment


SEGMENT_TABLES = ("segments_segment", "segments_segmentmembership", "segments_membershipevent")


def vacuum_tables(*, full: bool = False) -> None:
    """VACUUM (ANALYZE) the tables refreshes write (outside any transaction).

    `full` rewrites the segment tables compactly: after a previous run's millions of bench
    memberships and events were deleted, a plain VACUUM would leave their space free all
    over the tables and the next refresh's inserts would scatter into it (a first refresh
    of 100,000 members took 48 s that way instead of 3 s).
    """
    with connection.cursor() as cursor:
        for table in (
            *SEGMENT_TABLES,
            "customers_customermetrics",
            "customers_customerproductstats",
        ):
            option = "FULL, ANALYZE" if full and table in SEGMENT_TABLES else "ANALYZE"
            cursor.execute(f"VACUUM ({option}) {table}")


def delete_bench_segments(merchant: Merchant) -> None:
    for segment in Segment.objects.filter(merchant=merchant, name__startswith=BENCH_PREFIX):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM segments_membershipevent WHERE segment_id = %s", [segment.pk]
                )
                cursor.execute(
                    "DELETE FROM segments_segmentmembership WHERE segment_id = %s", [segment.pk]
                )
            segment.delete()


def bench_refresh(merchant: Merchant) -> dict[str, Any]:
    customers = Customer.objects.filter(merchant=merchant).count()
    threshold = spend_for_members(merchant, min(100_000, customers // 10))
    big = create_segment(
        merchant, "100k spenders", all_of(cond("total_spend", "gte", str(threshold)))
    )
    # Wall time of the call, commit included (the service's own duration stops before it).
    started = time.perf_counter()
    first = services.segment_refresh(segment_id=big.pk)
    first_ms = round((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    services.segment_refresh(segment_id=big.pk)
    again_ms = round((time.perf_counter() - started) * 1000)
    print(
        f"  refresh of {first.member_count} members: {first_ms} ms (no change: {again_ms} ms)",
        flush=True,
    )
    for name, rules in variants(merchant, 49):
        create_segment(merchant, name, rules)
    started = time.perf_counter()
    results = services.merchant_segments_refresh(merchant_id=merchant.pk)
    total_s = time.perf_counter() - started
    statuses = [r.status for r in results]
    slowest = sorted(results, key=lambda r: -r.duration_ms)[:5]
    members = sum(r.member_count or 0 for r in results)
    print(
        f"  refresh of {len(results)} segments: {total_s:.1f} s ({statuses.count('ok')} ok, "
        f"{members:,} memberships written)",
        flush=True,
    )
    # The next scheduled run: the memberships exist, little has changed.
    started = time.perf_counter()
    second = services.merchant_segments_refresh(merchant_id=merchant.pk)
    again_s = time.perf_counter() - started
    print(f"  the same {len(second)} segments again: {again_s:.1f} s", flush=True)
    return {
        "threshold": str(threshold),
        "members": first.member_count,
        "first_refresh_ms": first_ms,
        "no_change_refresh_ms": again_ms,
        "segments": len(results),
        "all_refresh_s": round(total_s, 2),
        "all_memberships": members,
        "all_refresh_again_s": round(again_s, 2),
        "statuses": statuses,
        "slowest": [
            {
                "segment": Segment.objects.get(pk=r.segment_id).name,
                "ms": r.duration_ms,
                "members": r.member_count,
            }
            for r in slowest
        ],
    }


# --- one new transaction --------------------------------------------------------------------


@contextmanager
def query_timer() -> Iterator[list[float]]:
    """Sum of the database time of every query run inside (connection.execute_wrapper)."""
    spent: list[float] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent.append((time.perf_counter() - started) * 1000)

    with connection.execute_wrapper(wrapper):
        yield spent


def write_purchase(
    customer: Customer, product: Product, external_id: str, total: Decimal
) -> Transaction:
    """A purchase as a bulk writer (the import, an API) writes it: the rows, then the
    customer's metrics and product stats, in the caller's transaction; `customers_changed`
    enqueues the membership update on commit."""
    txn = write_rows(customer, product, external_id, total)
    refresh_metrics([customer.pk])
    return txn


def median_order_total(merchant: Merchant) -> Decimal:
    """The merchant's median order total (over a 1% sample of its orders)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY total) "
            "FROM customers_transaction TABLESAMPLE SYSTEM (1) REPEATABLE (1) "
            "WHERE merchant_id = %s AND kind = 'purchase'",
            [merchant.pk],
        )
        return Decimal(cursor.fetchone()[0] or "50.00")


def write_rows(
    customer: Customer, product: Product, external_id: str, total: Decimal
) -> Transaction:
    """The transaction and its line item alone (bulk_create: no per-object metrics)."""
    (txn,) = Transaction.objects.bulk_create(
        [
            Transaction(
                merchant_id=customer.merchant_id,
                external_id=external_id,
                customer=customer,
                occurred_at=timezone.now(),
                kind="purchase",
                total=total,
            )
        ]
    )
    LineItem.objects.bulk_create(
        [LineItem(transaction=txn, product=product, quantity=1, amount=txn.total)]
    )
    return txn


def server_statements() -> bool:
    """Whether pg_stat_statements can tell the database's own time per statement. It needs
    the extension in this database (created here when missing) and the library preloaded
    (`shared_preload_libraries = 'pg_stat_statements'`, a server restart): without the
    library the extension can be created but every call of it fails, so a reset is tried
    too. When it cannot measure, it says so and the benchmark goes on without server time."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
            if cursor.fetchone() is None:
                cursor.execute("CREATE EXTENSION pg_stat_statements")
            cursor.execute("SELECT pg_stat_statements_reset()")
    except DatabaseError as exc:
        print(
            "pg_stat_statements cannot measure server time here "
            f"({type(exc).__name__}: {str(exc).strip()}); going on without it. "
            "Preload it (docs/deployment.md, PostgreSQL settings) to measure it.",
            flush=True,
        )
        return False
    return True


def reset_server_time() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_statements_reset()")


def server_time_ms() -> float:
    """Planning plus execution time of every statement since the last reset, as PostgreSQL
    itself measured it (no round trips, no driver)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(total_plan_time + total_exec_time), 0) FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query NOT LIKE '%%pg_stat_statements%%'"
        )
        return float(cursor.fetchone()[0])


def bench_incremental(merchant: Merchant, runs: int) -> dict[str, Any]:
    """Database time of one purchase: writing its rows and the customer's metrics and product
    stats (one transaction, as a bulk writer does), then the incremental update against
    every active segment (called directly, as the Celery task would after the commit).

    Two measures: the time of each query as the client sees it (round trips included), and,
    when pg_stat_statements is loaded, the planning and execution time the server spent.
    Commits (a WAL flush) are in neither."""
    from segments.tasks import update_customers

    product = Product.objects.filter(merchant=merchant).order_by("pk").first()
    assert product is not None
    customers = list(Customer.objects.filter(merchant=merchant).order_by("?")[: runs * 3 + 1])
    segments = Segment.objects.filter(merchant=merchant, is_active=True, kind="dynamic").count()
    total = median_order_total(merchant)
    server = server_statements()
    phases: dict[str, list[float]] = {
        "write": [],
        "metrics": [],
        "update": [],
        "wall": [],
        "server_metrics": [],
        "server_update": [],
        "queries": [],
    }
    changed = 0
    # The signal runs as in production (its queries count as the metrics' time); the task it
    # enqueues on commit is not sent, since the update is called here directly.
    with mock.patch.object(update_customers, "delay"):
        for i, customer in enumerate(customers):
            started = time.perf_counter()
            with transaction.atomic():
                with query_timer() as written:
                    write_rows(customer, product, f"bench-inc-{time.time_ns()}-{i}", total)
                if server:
                    reset_server_time()
                with query_timer() as metrics:
                    refresh_metrics([customer.pk])
                server_metrics = server_time_ms() if server else 0.0
            # What the Celery task does once that transaction has committed:
            if server:
                reset_server_time()
            with query_timer() as update:
                changes = services.segment_memberships_update_for_customers(
                    merchant_id=merchant.pk, customer_ids=[customer.pk]
                )
            server_update = server_time_ms() if server else 0.0
            wall = (time.perf_counter() - started) * 1000
            if i == 0:
                continue  # warm-up
            changed += bool(changes)
            phases["write"].append(sum(written))
            phases["metrics"].append(sum(metrics))
            phases["update"].append(sum(update))
            phases["wall"].append(wall)
            phases["server_metrics"].append(server_metrics)
            phases["server_update"].append(server_update)
            phases["queries"].append(len(metrics) + len(update))
    median = {k: round(statistics.median(v), 2) for k, v in phases.items()}

    def both(a: str, b: str) -> float:
        return round(statistics.median(x + y for x, y in zip(phases[a], phases[b], strict=True)), 2)

    result = {
        "segments": segments,
        "purchase_total": str(total),
        "purchases": len(customers) - 1,
        "purchases_that_changed_a_membership": changed,
        "write_db_ms_median": median["write"],
        "metrics_db_ms_median": median["metrics"],
        "update_db_ms_median": median["update"],
        "metrics_and_update_db_ms_median": both("metrics", "update"),
        "server_metrics_ms_median": median["server_metrics"] if server else None,
        "server_update_ms_median": median["server_update"] if server else None,
        "server_ms_median": both("server_metrics", "server_update") if server else None,
        "queries_median": median["queries"],
        "wall_ms_median": median["wall"],
        "update_db_ms": [round(x, 2) for x in phases["update"]],
    }
    print(
        f"  one purchase, {segments} segments: metrics + memberships "
        f"{result['metrics_and_update_db_ms_median']} ms of query time as the client sees it "
        f"(metrics {median['metrics']}, update {median['update']}, "
        f"{median['queries']:.0f} queries), {result['server_ms_median']} ms in the server; "
        f"writing the rows {median['write']} ms; wall {median['wall']} ms; {changed} of "
        f"{len(customers) - 1} purchases of {total} changed a membership",
        flush=True,
    )
    return result


def bench_celery(merchant: Merchant, broker: str, runs: int) -> dict[str, Any]:
    """End to end: commit a purchase through the normal path (signal -> on_commit -> task on
    Redis) and poll until a real worker has put the customer into the 100k segment."""
    env = {**os.environ, "CELERY_BROKER_URL": broker}
    worker = subprocess.Popen(
        [
            str(Path(sys.executable)),
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-c",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from config.celery import app

        # This process may run tasks in-process (no broker in its settings): send them to the
        # worker instead, or the "end to end" figure would never leave this process.
        app.conf.task_always_eager = False
        app.conf.broker_url = broker
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if app.control.inspect(timeout=1).ping():
                break
        big = Segment.objects.get(merchant=merchant, name=BENCH_PREFIX + "100k spenders")
        product = Product.objects.filter(merchant=merchant).order_by("pk").first()
        assert product is not None
        member_ids = SegmentMembership.objects.filter(segment=big).values("customer_id")
        candidates = list(
            Customer.objects.filter(merchant=merchant)
            .exclude(pk__in=member_ids)
            .filter(
                metrics__net_spend__gte=Decimal(big.rules["conditions"][0]["value"]) - Decimal(2500)
            )
            .order_by("pk")[: runs + 1]
        )
        seconds = []
        for i, customer in enumerate(candidates):
            started = time.perf_counter()
            with transaction.atomic():
                write_purchase(
                    customer, product, f"bench-e2e-{time.time_ns()}-{i}", Decimal("2500.00")
                )
            while not SegmentMembership.objects.filter(segment=big, customer=customer).exists():
                if time.perf_counter() - started > 30:
                    raise TimeoutError("the membership did not appear within 30 s")
                time.sleep(0.005)
            if i:
                seconds.append(time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    result = {
        "median_s": round(statistics.median(seconds), 3),
        "runs_s": [round(s, 3) for s in seconds],
    }
    print(f"  end to end with a Celery worker: {result['median_s']} s", flush=True)
    return result


# --- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| size | segment | count | live count (median) | target | its SQL | hand-written SQL "
        "| ratio (goal ≤ 1.5x) | count + funnel |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in report["sizes"]:
        for row in size.get("counts", []):
            ok = row["compiled_ms"] < row["target_ms"]
            ratio = row.get("ratio")
            ratio_text = "" if ratio is None else f"{ratio}x ({verdict(ratio <= RATIO_TARGET)})"
            lines.append(
                f"| {size['customers']:,} | {row['segment']} | {row['count']:,} | "
                f"{row['compiled_ms']} ms | < {row['target_ms']:.0f} ms ({verdict(ok)}) | "
                f"{row['query_ms']} ms | {row['hand_ms']} ms | {ratio_text} | "
                f"{row['funnel_ms']} ms |"
            )
    lines += ["", "| size | what | figure | target |", "|---|---|---|---|"]
    for size in report["sizes"]:
        n = f"{size['customers']:,}"
        refresh = size.get("refresh")
        if refresh:
            lines += [
                f"| {n} | full refresh, one segment of {refresh['members']:,} members (first) | "
                f"{refresh['first_refresh_ms']} ms | < 2 s "
                f"({verdict(refresh['first_refresh_ms'] < REFRESH_TARGET_S * 1000)}) |",
                f"| {n} | same segment, nothing changed | {refresh['no_change_refresh_ms']} ms | |",
                f"| {n} | all {refresh['segments']} segments of the merchant, first fill "
                f"({refresh['all_memberships']:,} memberships and entry events written) | "
                f"{refresh['all_refresh_s']} s | < 5 min "
                f"({verdict(refresh['all_refresh_s'] < REFRESH_ALL_TARGET_S)}) |",
                f"| {n} | the same segments again (the nightly run) | "
                f"{refresh['all_refresh_again_s']} s | < 5 min "
                f"({verdict(refresh['all_refresh_again_s'] < REFRESH_ALL_TARGET_S)}) |",
            ]
        inc = size.get("incremental")
        if inc:
            server = inc["server_ms_median"]
            if server is None:
                server_cells = "not measured (needs pg_stat_statements) | < 5 ms |"
            else:
                server_cells = (
                    f"{server} ms (metrics {inc['server_metrics_ms_median']}, memberships "
                    f"{inc['server_update_ms_median']}) | < 5 ms ({verdict(server < 5)}) |"
                )
            lines += [
                f"| {n} | one purchase: metrics + memberships in {inc['segments']} segments, "
                f"time in the database server | {server_cells}",
                f"| {n} | same, query time as the client sees it ({inc['queries_median']:.0f} "
                f"queries) | {inc['metrics_and_update_db_ms_median']} ms (metrics "
                f"{inc['metrics_db_ms_median']}, memberships {inc['update_db_ms_median']}) | |",
                f"| {n} | writing the purchase's rows, DB time | {inc['write_db_ms_median']} ms "
                "| |",
            ]
        e2e = size.get("celery")
        if e2e:
            lines.append(
                f"| {n} | commit to membership visible, Celery worker on Redis | "
                f"{e2e['median_s']} s | < 1 s ({verdict(e2e['median_s'] < END_TO_END_TARGET_S)}) |"
            )
    return "\n".join(lines)


def slug_for(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"bench-{size // 1_000_000}m"
    return f"bench-{size // 1000}k"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip", default="", help="counts,refresh,incremental,celery")
    parser.add_argument(
        "--broker", default=os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("The segment benchmark runs on PostgreSQL (set DATABASE_URL).")
    skip = {s for s in args.skip.split(",") if s}
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict[str, Any] = {
        "date": timezone.now().isoformat(),
        "runs": args.runs,
        "sizes": [],
    }
    for size in sizes:
        merchant = Merchant.objects.filter(slug=slug_for(size)).first()
        if merchant is None:
            print(f"{slug_for(size)}: missing (run bench/generate_bench.py), skipped")
            continue
        customers = Customer.objects.filter(merchant=merchant).count()
        print(f"{merchant.slug}: {customers} customers", flush=True)
        figures: dict[str, Any] = {"merchant": merchant.slug, "customers": customers}
        report["sizes"].append(figures)
        if "counts" not in skip:
            figures["counts"] = bench_counts(merchant, args.runs)
        if {"refresh", "incremental", "celery"} <= skip:
            continue
        delete_bench_segments(merchant)
        vacuum_tables(full=True)
        try:
            if "refresh" not in skip:
                figures["refresh"] = bench_refresh(merchant)
                # What autovacuum does after the refreshes wrote millions of rows: measure the
                # purchases against tables in their steady state.
                vacuum_tables()
            if "incremental" not in skip:
                figures["incremental"] = bench_incremental(merchant, args.runs)
            if "celery" not in skip and "refresh" not in skip:
                figures["celery"] = bench_celery(merchant, args.broker, args.runs)
        finally:
            delete_bench_segments(merchant)
    table = markdown(report)
    print()
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"segments-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({**report, "markdown": table}, indent=2, default=str))
    print(f"\nraw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
