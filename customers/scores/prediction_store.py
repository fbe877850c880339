"""The predictions' inputs gathered in SQL, and the scores written back: the database side
of `customers.scores.predictions`.

Of now (nothing dated after `as_of`: the schedule, Recompute now, a write's follow-up),
every customer's inputs come from their metrics row, which every write keeps exact. Of a
past instant, and for the holdout check, the orders are grouped by customer and
merchant-local day into a temporary table, from which one statement derives each
customer's x, t_x, T, m and the smart segments' figures. Results go back in one UPDATE
that touches only the rows whose values changed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from django.db import connection

from customers.models import CustomerMetrics, LineItem, Merchant, Transaction
from customers.scores.predictions import Inputs, Scores, holdout_weeks
from customers.scores.smart import NO_ORDER_SEGMENT
from customers.sql import adapt, any_of, date_param, day_diff, distinct

DAYS = "score_days"
FIRSTS = "score_firsts"
#: Each customer's first purchase day, from the purchase days.
FIRSTS_SQL = f"SELECT customer_id, MIN(day) AS first FROM {DAYS} GROUP BY customer_id"
RESULTS = "score_predictions"
#: What the UPDATE writes, in the order of the results table's columns.
RESULT_COLUMNS = (
    "p_alive",
    "churn_risk",
    "expected_orders_90d",
    "p_order_30d",
    "predicted_clv",
    "smart_segment",
    "churn_cutoff_on",
)


def _days_sql(merchant: Merchant, as_of: dt.datetime, *, sample: int = 1) -> tuple:
    """Purchase days: customer_id, day (merchant-local), total, orders, redeemed; of the
    one-in-`sample` customers by id."""
    local_day, local_params = connection.ops.datetime_cast_date_sql(
        "occurred_at", [], merchant.time_zone
    )
    # TRICKY: SQLite would call the (Python) local-date function twice per order, once for
    # the select list and once for the grouping, if the inner query were flattened into
    # the outer; a LIMIT keeps it apart (SQLite's flattening rule 14). -1 is no limit.
    keep_apart = " LIMIT -1" if connection.vendor == "sqlite" else ""
    sampled = f" AND customer_id %% {int(sample)} = 0" if sample > 1 else ""
    sql = f"""
        SELECT customer_id, day, SUM(total) AS total, COUNT(*) AS orders,
               SUM(CASE WHEN points_redeemed > 0 THEN 1 ELSE 0 END) AS redeemed
        FROM (
            SELECT customer_id, {local_day} AS day, total, points_redeemed
            FROM {Transaction._meta.db_table}
            WHERE merchant_id = %s AND kind = 'purchase' AND occurred_at <= %s{sampled}{keep_apart}
        ) orders
        GROUP BY customer_id, day
    """
    return sql, [*local_params, merchant.pk, as_of]


def _inputs_sql(
    merchant: Merchant,
    as_of: dt.datetime,
    *,
    spend_sql: str,
    spend_params: list[Any],
    calibration_end: dt.date | None,
    items_from_metrics: bool,
) -> tuple[str, list[Any]]:
    """One row per customer with an order: `Inputs.COLUMNS`, then (with a calibration
    end) their purchase days and latest purchase day up to it. `spend_sql` is a query of
    (customer_id, spend) to join. The line items' figures come from the metrics rows when
    `items_from_metrics` (nothing is dated after `as_of`), otherwise from the line items."""
    today = merchant.today(as_of)
    items, txns = LineItem._meta.db_table, Transaction._meta.db_table
    scope, scope_params = "t.merchant_id = %s", [merchant.pk]
    real = "DOUBLE PRECISION"
    if items_from_metrics:
        # The metrics rows keep these exact after every write: no pass over the line items.
        metrics_scope = scope.replace("t.", "m.")
        line_items = f"""
            SELECT m.customer_id, m.items_amount AS amount, m.units AS units,
                   m.line_items AS items
            FROM {CustomerMetrics._meta.db_table} m
            WHERE {metrics_scope} AND m.line_items > 0
        """
        line_params: list[Any] = list(scope_params)
    else:
        line_items = f"""
            SELECT t.customer_id, SUM(i.amount) AS amount, SUM(i.quantity) AS units,
                   COUNT(*) AS items
            FROM {items} i JOIN {txns} t ON t.id = i.transaction_id
            WHERE {scope} AND t.kind = 'purchase' AND t.occurred_at <= %s
            GROUP BY t.customer_id
        """
        line_params = [*scope_params, as_of]
    calibration, calibration_params = "", []
    if calibration_end is not None:
        calibration = f""",
               SUM(CASE WHEN s.day <= {date_param()} THEN 1 ELSE 0 END) AS days_cal,
               MAX(CASE WHEN s.day <= {date_param()} THEN s.day END) AS last_cal"""
        calibration_params = [calibration_end, calibration_end]
    calibration_out = (
        f", b.days_cal - 1, {day_diff('b.last_cal', 'b.first')}" if calibration_end else ""
    )
    sql = f"""
        SELECT b.customer_id, b.n, CAST(COALESCE(w.spend, 0) AS {real}), b.days - 1,
               {day_diff("b.last", "b.first")}, {day_diff(date_param(), "b.first")},
               CAST(b.gross - b.first_total AS {real}), b.redeemed,
               CASE WHEN b.first_orders >= 2 THEN 0
                    ELSE {day_diff("b.second_day", "b.first")} END,
               CAST(li.amount AS {real}) / li.units,
               CAST(li.units AS {real}) / li.items
               {calibration_out}
        FROM (
            SELECT s.customer_id, f.first, COUNT(*) AS days, MAX(s.day) AS last,
                   SUM(s.orders) AS n, SUM(s.total) AS gross, SUM(s.redeemed) AS redeemed,
                   SUM(CASE WHEN s.day = f.first THEN s.total ELSE 0 END) AS first_total,
                   MAX(CASE WHEN s.day = f.first THEN s.orders ELSE 0 END) AS first_orders,
                   MIN(CASE WHEN s.day > f.first THEN s.day END) AS second_day
                   {calibration}
            FROM {DAYS} s JOIN {FIRSTS} f ON f.customer_id = s.customer_id
            GROUP BY s.customer_id, f.first
        ) b
        LEFT JOIN ({spend_sql}) w ON w.customer_id = b.customer_id
        LEFT JOIN ({line_items}) li ON li.customer_id = b.customer_id
        ORDER BY b.customer_id
    """
    return sql, [today, *calibration_params, *spend_params, *line_params]


#: The holdout check reads the orders of at most about this many customers: above it, a
#: fixed one-in-k sample of them by id (the check compares totals; a sample of this size
#: leaves them within a fraction of a percent).
HOLDOUT_SAMPLE_CUSTOMERS = 50_000


def merchant_inputs(
    merchant: Merchant, as_of: dt.datetime, *, spend_table: str, holdout: bool = True
) -> tuple[Inputs, dict[str, Any]]:
    """Every customer's inputs, and what the holdout check needs (unless not `holdout`):
    the calibration inputs, cohorts and end, or why there is none. The purchase-days
    tables are left for `repeat_days_by_day`.

    A computation of now (nothing dated after `as_of`) reads every customer's inputs from
    the metrics rows, which keep them exact after every write; the holdout check then
    groups the orders of a sample of customers by day. A computation of a past instant
    groups every order up to it."""
    today = merchant.today(as_of)
    now = not Transaction.objects.filter(merchant=merchant, occurred_at__gt=as_of).exists()
    if now:
        inputs = _metrics_inputs(merchant, today)
        if not holdout or not len(inputs.n):
            return inputs, _no_holdout(today, "no check asked for" if not holdout else None)
        sample = max(1, math.ceil(len(inputs.n) / HOLDOUT_SAMPLE_CUSTOMERS))
        first = today - dt.timedelta(days=int(inputs.age.max()))
        checked, calibration_end, extra = _days_inputs(
            merchant, as_of, today, first, spend_table=spend_table, sample=sample, now=True
        )
    else:
        inputs, calibration_end, extra = _days_inputs(
            merchant, as_of, today, None, spend_table=spend_table, sample=1, now=False
        )
        checked, sample = inputs, 1
    if calibration_end is None or extra is None:
        return inputs, _no_holdout(today, None)
    in_calibration = ~np.isnan(extra[:, 1])
    size = int(in_calibration.sum())
    context: dict[str, Any] = {"calibration_end": calibration_end, "today": today}
    context["sample_every"] = sample
    context["calibration"] = Inputs(
        customer_id=checked.customer_id[in_calibration],
        n=extra[in_calibration, 0] + 1,
        spend=checked.spend[in_calibration],
        x=extra[in_calibration, 0],
        span=extra[in_calibration, 1],
        age=(checked.age - (today - calibration_end).days)[in_calibration],
        repeat_total=np.full(size, np.nan),
        redeemed=np.zeros(size),
        first_gap=np.full(size, np.nan),
        unit_price=np.full(size, np.nan),
        mean_quantity=np.full(size, np.nan),
    )
    first_days, sizes = np.unique(checked.age[in_calibration].astype(int), return_counts=True)
    context["cohorts"] = {
        today - dt.timedelta(days=int(age)): int(count)
        for age, count in zip(first_days, sizes, strict=True)
    }
    return inputs, context


def _no_holdout(today: dt.date, why: str | None) -> dict[str, Any]:
    return {
        "calibration_end": None,
        "today": today,
        "error": f"no check: {why or 'the history is shorter than 12 weeks'}",
    }


def _metrics_inputs(
    merchant: Merchant, today: dt.date, ids: Collection[int] | None = None
) -> Inputs:
    """The inputs of every customer of the merchant with an order, or of those of `ids`,
    from their metrics rows (as of now)."""
    first, first_params = connection.ops.datetime_cast_date_sql(
        "m.first_purchase_at", [], merchant.time_zone
    )
    last, last_params = connection.ops.datetime_cast_date_sql(
        "m.last_purchase_at", [], merchant.time_zone
    )
    real = "DOUBLE PRECISION"
    scope, scope_params = "m.merchant_id = %s", [merchant.pk]
    if ids is not None:
        scope, scope_params = any_of("m.customer_id", ids)
    sql = f"""
        SELECT m.customer_id, m.orders_count, CAST(m.net_spend AS {real}),
               m.purchase_days - 1, {day_diff(last, first)}, {day_diff(date_param(), first)},
               CAST(m.gross_spend - m.first_day_total AS {real}), m.redeemed_orders,
               m.first_gap_days,
               CASE WHEN m.units > 0 THEN CAST(m.items_amount AS {real}) / m.units END,
               CASE WHEN m.line_items > 0 THEN CAST(m.units AS {real}) / m.line_items END
        FROM {CustomerMetrics._meta.db_table} m
        WHERE {scope} AND m.orders_count > 0
        ORDER BY m.customer_id
    """
    params = [*last_params, *first_params, today, *first_params, *scope_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, adapt(params))
        return Inputs.from_table(_fetch_floats(cursor, len(Inputs.COLUMNS)))


def _days_inputs(
    merchant: Merchant,
    as_of: dt.datetime,
    today: dt.date,
    first: dt.date | None,
    *,
    spend_table: str,
    sample: int,
    now: bool,
) -> tuple[Inputs, dt.date | None, np.ndarray | None]:
    """The inputs of the customers of the one-in-`sample` sample by id (all with 1) from
    their orders grouped by day, with the holdout check's calibration end (from the
    merchant's `first` purchase day, or the sample's when None) and, per customer, their
    purchase days up to it - 1 and the days from their first to their last one then (NaN
    for a customer whose first order is after it)."""
    days_sql, days_params = _days_sql(merchant, as_of, sample=sample)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {DAYS}")
        cursor.execute(f"DROP TABLE IF EXISTS {FIRSTS}")
        cursor.execute(f"CREATE TEMPORARY TABLE {DAYS} AS {days_sql}", adapt(days_params))
        # Keyed tables, not subqueries: SQLite joins unindexed subqueries row by row.
        cursor.execute(
            f"CREATE TEMPORARY TABLE {FIRSTS} (customer_id BIGINT PRIMARY KEY, first DATE)"
        )
        cursor.execute(f"INSERT INTO {FIRSTS} {FIRSTS_SQL}")
        if connection.vendor == "sqlite":
            cursor.execute(f"CREATE INDEX {DAYS}_customer ON {DAYS} (customer_id)")
            cursor.execute(f"CREATE INDEX {spend_table}_customer ON {spend_table} (customer_id)")
        else:
            cursor.execute(f"ANALYZE {DAYS}")
            cursor.execute(f"ANALYZE {FIRSTS}")
        if first is None:
            cursor.execute(f"SELECT MIN(first) FROM {FIRSTS}")
            first = cursor.fetchone()[0]
            if isinstance(first, str):
                first = dt.date.fromisoformat(first)
        weeks = holdout_weeks((today - first).days) if first is not None else None
        calibration_end = today - dt.timedelta(weeks=weeks) if weeks else None
        sql, params = _inputs_sql(
            merchant,
            as_of,
            spend_sql=f"SELECT customer_id, spend FROM {spend_table}",
            spend_params=[],
            calibration_end=calibration_end,
            items_from_metrics=now,
        )
        cursor.execute(sql, adapt(params))
        table = _fetch_floats(cursor, len(Inputs.COLUMNS) + (2 if calibration_end else 0))
    width = len(Inputs.COLUMNS)
    extra = table[:, width:] if calibration_end else None
    return Inputs.from_table(table[:, :width]), calibration_end, extra


def _fetch_floats(cursor: Any, width: int, chunk: int = 50_000) -> np.ndarray:
    """The cursor's rows as one float array (None as NaN), read in chunks: a million rows
    as Python tuples would hold several hundred megabytes at once."""
    parts = []
    while rows := cursor.fetchmany(chunk):
        parts.append(np.array(rows, dtype=float).reshape(len(rows), width))
    return np.vstack(parts) if parts else np.empty((0, width))


def repeat_days_by_day(calibration_end: dt.date, since: dt.date) -> dict[dt.date, int]:
    """How many repeat purchase days (after a customer's first) of the customers whose
    first purchase day is on or before `calibration_end` fell on each day after `since`
    (from the purchase-days table of `merchant_inputs`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.day, COUNT(*)
            FROM {DAYS} s JOIN {FIRSTS} f ON f.customer_id = s.customer_id
            WHERE f.first <= {date_param()} AND s.day > f.first AND s.day > {date_param()}
            GROUP BY s.day
            """,
            adapt([calibration_end, since]),
        )
        rows = cursor.fetchall()
    return {
        (dt.date.fromisoformat(day) if isinstance(day, str) else day): count for day, count in rows
    }


def drop_days() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {DAYS}")
        cursor.execute(f"DROP TABLE IF EXISTS {FIRSTS}")


def few_inputs(merchant: Merchant, as_of: dt.datetime, ids: Collection[int]) -> Inputs:
    """The inputs of a few customers (those with an order), from their metrics rows: a
    write's follow-up runs after the metrics upsert took the write in."""
    return _metrics_inputs(merchant, merchant.today(as_of), ids)


def result_rows(
    inputs: Inputs, scores: Scores, today: dt.date, chunk: int = 50_000
) -> Iterator[tuple[Any, ...]]:
    """(customer_id, *RESULT_COLUMNS) per customer, NULL for NaN, made a chunk at a time
    (a million rows of Python objects at once would hold several hundred megabytes).
    Probabilities are kept to 4 decimals and expected orders to 3 (more than any page
    shows): a customer's values then often stay the same from one day to the next, and
    the UPDATE skips the row."""

    def nullable(values: np.ndarray, digits: int) -> list[float | None]:
        return [None if math.isnan(v) else v for v in np.round(values, digits).tolist()]

    last = np.datetime64(today, "D") - inputs.d.astype(int) * np.timedelta64(1, "D")
    cutoff_days = np.nan_to_num(scores.cutoff_days, nan=0).astype(int)
    cutoff = last + cutoff_days * np.timedelta64(1, "D")
    for start in range(0, len(inputs.customer_id), chunk):
        part = slice(start, start + chunk)
        cutoff_dates = [
            None if math.isnan(days) else day.item()
            for days, day in zip(scores.cutoff_days[part].tolist(), cutoff[part], strict=True)
        ]
        yield from zip(
            inputs.customer_id[part].tolist(),
            nullable(scores.p_alive[part], 4),
            nullable(scores.churn_risk[part], 4),
            nullable(scores.expected_orders_90d[part], 3),
            nullable(scores.p_order_30d[part], 4),
            nullable(scores.predicted_clv[part], 2),
            scores.segment[part].tolist(),
            cutoff_dates,
            strict=True,
        )


def store(
    merchant: Merchant,
    inputs: Inputs,
    scores: Scores,
    today: dt.date,
    *,
    everyone: bool,
    stages: Mapping[int, str | None] | None = None,
) -> int:
    """Write the scores to the metrics rows where they changed; with `everyone`, also
    reset the customers without an order (as of the computation) to no prediction and
    "waiting for the first order". `stages`: new lifecycle stages of some of these
    customers, written by the same UPDATE (each UPDATE of a metrics row writes all its
    indexes: one instead of two). Returns how many rows changed."""
    stages = stages or {}
    rows: Iterable[tuple[Any, ...]] = (
        (*row, row[0] in stages, stages.get(row[0])) for row in result_rows(inputs, scores, today)
    )
    metrics = CustomerMetrics._meta.db_table
    real = "DOUBLE PRECISION"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RESULTS}")
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE {RESULTS} (
                customer_id BIGINT PRIMARY KEY, p_alive {real}, churn_risk {real},
                expected_orders_90d {real}, p_order_30d {real}, predicted_clv NUMERIC(14, 2),
                smart_segment VARCHAR(24), churn_cutoff_on DATE,
                stage_moved BOOLEAN, lifecycle_stage VARCHAR(16)
            )
            """
        )
        columns = ", ".join(("customer_id", *RESULT_COLUMNS, "stage_moved", "lifecycle_stage"))
        if connection.vendor == "postgresql":
            raw = cursor.cursor
            with raw.copy(f"COPY {RESULTS} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * (len(RESULT_COLUMNS) + 3))
            # SQLite holds small merchants: one batch is fine there.
            cursor.executemany(
                f"INSERT INTO {RESULTS} ({columns}) VALUES ({marks})",
                [adapt(row) for row in rows],
            )
        current = ", ".join(f"{metrics}.{c}" for c in RESULT_COLUMNS)
        new = ", ".join(f"r.{c}" for c in RESULT_COLUMNS)
        assignments = ", ".join(f"{c} = r.{c}" for c in RESULT_COLUMNS)
        cursor.execute(
            f"""
            UPDATE {metrics} SET {assignments},
                lifecycle_stage = CASE WHEN r.stage_moved THEN r.lifecycle_stage
                                       ELSE {metrics}.lifecycle_stage END
            FROM {RESULTS} r
            WHERE {metrics}.customer_id = r.customer_id
              AND (({current}) {distinct()} ({new}) OR r.stage_moved)
            """
        )
        changed = cursor.rowcount
        if everyone:
            cursor.execute(
                f"""
                UPDATE {metrics}
                SET {", ".join(f"{c} = NULL" for c in RESULT_COLUMNS if c != "smart_segment")},
                    smart_segment = %s
                WHERE merchant_id = %s
                  AND (p_alive IS NOT NULL OR predicted_clv IS NOT NULL
                       OR churn_cutoff_on IS NOT NULL OR smart_segment <> %s)
                  AND NOT EXISTS (
                      SELECT 1 FROM {RESULTS} r WHERE r.customer_id = {metrics}.customer_id
                  )
                """,
                [NO_ORDER_SEGMENT, merchant.pk, NO_ORDER_SEGMENT],
            )
            changed += cursor.rowcount
        cursor.execute(f"DROP TABLE {RESULTS}")
    return changed
