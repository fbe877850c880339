"""Reports benchmark (issue 14) on PostgreSQL: the report selectors and the dashboard on the
generator's 1M-customer merchant, each beside hand-written SQL for the same numbers, timed
in the same run.

    DJANGO_DEBUG=1 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/segment_portal_bench \\
        .venv/bin/python bench/reports_bench.py [--merchant bench-1m] [--runs 5]
    .venv/bin/python bench/run.py --only reports     # the same, through `make bench`

Reads the merchant `generate_bench.py` made (never rebuilds it); its lifecycle stages are
the ones the generator's write chain gave. Setup (kept between runs, made once): one manual
segment of 100,000 random customers (`bench-reports-100k`) and ten manual segments of
10,000 to 500,000 random customers (`bench-reports-overlap-N`, 1.52M memberships), written
with SQL (fixed seed); then VACUUM ANALYZE of the transactions and memberships, as
autovacuum keeps them in production (index-only scans need the visibility map).

Each measurement runs once to warm the cache, then `--runs` times; the table shows the
median and the slowest. "Product" is the portal's own code (`analytics.selectors`, the
dashboard view through Django's test client: server time, the template included); "SQL" is
the shortest hand-written statement that gives the same numbers, without the product's
extras (the previous period, the totals row, the branch and bucket totals). Checks that both
agree before timing. Raw figures go to bench/out/reports-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/segment_portal_bench"
sys.path.insert(0, str(ROOT))

OVERLAP_SIZES = (
    500_000,
    300_000,
    200_000,
    150_000,
    100_000,
    100_000,
    80_000,
    50_000,
    30_000,
    10_000,
)
TARGETS_S = {
    "analysis-90": 1.0,
    "analysis-365": 2.0,
    "branch-month-100k": 1.0,
    "overlap-10": 2.0,
    "dashboard": 0.5,
}


def timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def manual_segment(merchant: Any, slug: str, size: int, seed: float) -> Any:
    from django.db import connection, transaction

    from segments import services
    from segments.models import Segment, SegmentKind, SegmentMembership

    existing = Segment.objects.filter(merchant=merchant, slug=slug).first()
    if existing is not None and existing.member_count == size:
        return existing
    if existing is not None:
        existing.delete()
    segment = services.segment_create(
        merchant=merchant, name=slug.replace("-", " ").title(), slug=slug, kind=SegmentKind.MANUAL
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [seed])
        cursor.execute(
            f"""
            INSERT INTO {SegmentMembership._meta.db_table} (segment_id, customer_id, since)
            SELECT %s, id, now() FROM (
                SELECT id FROM customers_customer WHERE merchant_id = %s
                ORDER BY random() LIMIT %s
            ) picked
            """,
            [segment.pk, merchant.pk, size],
        )
        Segment.objects.filter(pk=segment.pk).update(member_count=size)
    segment.refresh_from_db()
    return segment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merchant", default="bench-1m")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client

    from analytics import selectors
    from analytics.periods import Granularity, Preset, preset_period
    from analytics.selectors import Scope
    from customers.models import Merchant, Role, StaffMembership

    settings.ALLOWED_HOSTS = ["*"]
    merchant = Merchant.objects.get(slug=args.merchant)
    tz = merchant.tzinfo
    today = merchant.today()
    scope = Scope(merchant=merchant)
    big = manual_segment(merchant, "bench-reports-100k", 100_000, 0.14)
    overlap_segments = [
        manual_segment(merchant, f"bench-reports-overlap-{i + 1}", size, 0.01 * (i + 1))
        for i, size in enumerate(OVERLAP_SIZES)
    ]
    from segments.services.statistics import segment_stats_refresh

    for segment in [big, *overlap_segments]:
        if segment.revenue_30d is None:  # the statistics a refresh stores (the dashboard's)
            segment_stats_refresh(segment=segment)
    with connection.cursor() as cursor:
        for table in (
            "customers_customersales",
            "customers_transaction",
            "segments_segmentmembership",
            "customers_customermetrics",
        ):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute(
            "SELECT count(*) FROM customers_transaction WHERE merchant_id = %s", [merchant.pk]
        )
        transactions = cursor.fetchone()[0]

    def sql(statement: str, params: list[Any]) -> Callable[[], list[tuple[Any, ...]]]:
        def run() -> list[tuple[Any, ...]]:
            # The same memory for sorts and hashes as the product's report statements.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL work_mem = '{selectors.REPORT_WORK_MEM}'")
                cursor.execute(statement, params)
                return cursor.fetchall()

        return run

    results: list[dict[str, Any]] = []

    def record(
        name: str,
        label: str,
        product: Callable[[], Any],
        hand: Callable[[], Any],
        check: Callable[[Any, Any], None],
    ) -> None:
        p_times, p_result = timed(product, args.runs)
        h_times, h_result = timed(hand, args.runs)
        check(p_result, h_result)
        row: dict[str, Any] = {
            "name": name,
            "label": label,
            "product_median_s": statistics.median(p_times),
            "product_max_s": max(p_times),
            "sql_median_s": statistics.median(h_times),
            "sql_max_s": max(h_times),
            "target_s": TARGETS_S.get(name),
        }
        row["ratio"] = row["product_median_s"] / row["sql_median_s"]
        results.append(row)
        print(
            f"{label:<58} product {row['product_median_s'] * 1000:8.0f} ms"
            f"  SQL {row['sql_median_s'] * 1000:8.0f} ms  ratio {row['ratio']:.2f}",
            flush=True,
        )

    # 1. Segment analysis by lifecycle stage, 90 and 365 days.
    for days, preset in ((90, Preset.LAST_90), (365, Preset.LAST_365)):
        period = preset_period(preset, today, tz)
        hand = sql(
            """
            SELECT COALESCE(m.lifecycle_stage, ''), count(*), sum(s.revenue), sum(s.orders)
            FROM customers_customermetrics m
            LEFT JOIN (
                SELECT customer_id,
                       sum(CASE WHEN kind = 'purchase' THEN total ELSE -total END) AS revenue,
                       count(*) FILTER (WHERE kind = 'purchase') AS orders
                FROM customers_transaction
                WHERE merchant_id = %s AND occurred_at >= %s AND occurred_at < %s
                GROUP BY customer_id
            ) s ON s.customer_id = m.customer_id
            WHERE m.merchant_id = %s
            GROUP BY 1
            """,
            [merchant.pk, period.since, period.until, merchant.pk],
        )

        def check_analysis(product: Any, hand_rows: Any) -> None:
            got = {r.key: (r.customers, r.revenue, r.orders) for r in product.rows}
            for key, customers, revenue, orders in hand_rows:
                assert got[key][0] == customers, (key, got[key], customers)
                assert got[key][1] == (revenue or 0), (key, got[key], revenue)
                assert got[key][2] == (orders or 0), (key, got[key], orders)

        record(
            f"analysis-{days}",
            f"Segment analysis by lifecycle stage, {days} days (+ previous)",
            functools.partial(
                selectors.segment_analysis, scope, period, group_by="lifecycle_stage"
            ),
            hand,
            check_analysis,
        )
        record(
            f"analysis-{days}-only",
            f"Segment analysis by lifecycle stage, {days} days (CLI: no previous)",
            functools.partial(
                selectors.segment_analysis,
                scope,
                period,
                group_by="lifecycle_stage",
                compare=False,
            ),
            hand,
            check_analysis,
        )

    # 2. Revenue by branch and month for the 100,000-member segment over 12 months.
    period = preset_period(Preset.LAST_365, today, tz)
    hand = sql(
        """
        SELECT date_trunc('month', t.occurred_at AT TIME ZONE %s)::date AS month, t.branch_id,
               sum(CASE WHEN t.kind = 'purchase' THEN t.total ELSE -t.total END),
               count(*) FILTER (WHERE t.kind = 'purchase'),
               count(DISTINCT t.customer_id) FILTER (WHERE t.kind = 'purchase')
        FROM customers_transaction t
        WHERE t.merchant_id = %s AND t.occurred_at >= %s AND t.occurred_at < %s
          AND t.customer_id IN (
              SELECT customer_id FROM segments_segmentmembership WHERE segment_id = %s)
        GROUP BY 1, 2
        """,
        [merchant.time_zone, merchant.pk, period.since, period.until, big.pk],
    )

    def check_branch(product: Any, hand_rows: Any) -> None:
        for month, branch, revenue, orders, customers in hand_rows:
            cell = product.cell(month, branch)
            assert (cell.revenue, cell.orders, cell.customers) == (revenue, orders, customers), (
                month,
                branch,
                cell,
            )

    record(
        "branch-month-100k",
        "Revenue by branch and month, 100,000-member segment, 12 months",
        lambda: selectors.revenue_by_branch(
            scope, period, granularity=Granularity.MONTH, segment=big
        ),
        hand,
        check_branch,
    )

    # 3. Overlap of 10 segments.
    ids = [s.pk for s in overlap_segments]
    marks = ", ".join(["%s"] * len(ids))
    hand = sql(
        f"""
        SELECT a.segment_id, b.segment_id, count(*)
        FROM segments_segmentmembership a
        JOIN segments_segmentmembership b ON b.customer_id = a.customer_id
        WHERE a.segment_id IN ({marks}) AND b.segment_id IN ({marks})
        GROUP BY 1, 2
        """,
        [*ids, *ids],
    )

    def check_overlap(product: Any, hand_rows: Any) -> None:
        position = {pk: i for i, pk in enumerate(ids)}
        for a, b, n in hand_rows:
            assert product.shared(position[a], position[b]) == n, (a, b, n)

    record(
        "overlap-10",
        "Overlap of 10 segments (1.52M memberships)",
        lambda: selectors.overlap(scope, segments=overlap_segments),
        hand,
        check_overlap,
    )

    # 4. The dashboard: server time of GET / (view, selectors, template).
    user, _ = get_user_model().objects.get_or_create(username="bench-reports-owner")
    StaffMembership.objects.get_or_create(
        user=user, merchant=merchant, defaults={"role": Role.OWNER}
    )
    client = Client()
    client.force_login(user)
    last30 = preset_period(Preset.LAST_30, today, tz)

    def dashboard() -> Any:
        response = client.get("/")
        assert response.status_code == 200, response.status_code
        return response

    hand = sql(
        """
        WITH sales AS (
            SELECT customer_id, occurred_at >= %s AS recent,
                   sum(CASE WHEN kind = 'purchase' THEN total ELSE -total END) AS revenue,
                   count(*) FILTER (WHERE kind = 'purchase') AS orders
            FROM customers_transaction
            WHERE merchant_id = %s AND occurred_at >= %s AND occurred_at < %s
            GROUP BY 1, 2
        ), top AS (
            SELECT sm.segment_id, sum(s.revenue) AS revenue
            FROM sales s JOIN segments_segmentmembership sm ON sm.customer_id = s.customer_id
            JOIN segments_segment g ON g.id = sm.segment_id AND g.merchant_id = %s AND g.is_active
            WHERE s.recent GROUP BY 1 ORDER BY 2 DESC LIMIT 5
        )
        SELECT 'figures', recent::int, sum(revenue), sum(orders), count(*) FROM sales GROUP BY 2
        UNION ALL
        SELECT 'stage', NULL, NULL, NULL, count(*) FROM customers_customermetrics
        WHERE merchant_id = %s GROUP BY lifecycle_stage
        UNION ALL
        SELECT 'top', segment_id, revenue, NULL, NULL FROM top
        """,
        [
            last30.since,
            merchant.pk,
            last30.previous().since,
            last30.until,
            merchant.pk,
            merchant.pk,
        ],
    )
    record(
        "dashboard",
        "Dashboard: GET / (last 30 days vs the 30 before)",
        dashboard,
        hand,
        lambda product, hand_rows: None,
    )

    print()
    print(f"Merchant {merchant.slug}: {transactions:,} transactions.")
    print()
    print("| Report | Goal | Product (median / slowest) | Hand-written SQL (median) | Ratio |")
    print("|---|---|---|---|---|")
    for row in results:
        goal = f"< {row['target_s'] * 1000:.0f} ms" if row["target_s"] else "—"
        met = (
            ""
            if row["target_s"] is None
            else (" met" if row["product_median_s"] < row["target_s"] else " **missed**")
        )
        print(
            f"| {row['label']} | {goal} | {row['product_median_s'] * 1000:.0f} / "
            f"{row['product_max_s'] * 1000:.0f} ms{met} | {row['sql_median_s'] * 1000:.0f} ms | "
            f"{row['ratio']:.2f} |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT / f"reports-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
