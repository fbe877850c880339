"""Computing and storing a merchant's customer scores (lifecycle stage, RFM, tiers).

Two ways in, one set of definitions (`customers.scores.definitions`):

- `scores_compute()`: every customer of a merchant as of an instant, set-based. One SQL
  statement gathers each customer's inputs (from the metrics rows, or the transactions up
  to `as_of`) with their latest order's merchant-local date into a temporary table; R, F
  and M are scored by thresholds (`score_cutoffs`: the contract's rank formula as "more
  than c values are lower"), one sort per score; a few statements then write the history
  of what changed and update only the rows that changed. Tier downgrades happen on a
  scheduled computation only, after the grace period.
- `customer_scores_follow()`: the customers a write just touched (a purchase, a refund, an
  import), inside that write's transaction, before the segments hear of the change. The
  lifecycle stage follows at once and a tier upgrade happens on the purchase that reaches
  it; RFM percentiles wait for the next computation (they depend on everyone else).

Both leave a row for every stage and tier change in `ScoreChange`. The predictions and
smart segments (`customers.scores.predictions`) ride along: the computation fits the models
and scores everyone; a write scores its customers from the stored fit.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Count
from django.utils import timezone

from customers.models import (
    Customer,
    CustomerMetrics,
    Merchant,
    ScoreChange,
    ScoreSettings,
    Tier,
    TierRule,
    Transaction,
)
from customers.scores import prediction_store
from customers.scores.definitions import (
    RFM_GROUP_NAMES,
    STAGE_NAMES,
    UNSCORED_GROUP,
    LifecycleRules,
    ScoreRules,
    TierThreshold,
    downgrade_reason,
    period_start,
    score_cutoffs,
    tier_for,
    tier_move,
)
from customers.scores.predictions import (
    TRACKING_CALIBRATION_WEEKS,
    ModelState,
    holdout_check,
    model_state,
    summary_json,
)
from customers.scores.predictions import score as predictions_score
from customers.scores.smart import NO_ORDER_SEGMENT, SMART_SEGMENT_NAMES
from customers.signals import customers_changed, score_changes_recorded
from customers.sql import adapt as _adapt
from customers.sql import any_of
from customers.sql import distinct as _distinct

#: Up to this many customers, a write's follow-up updates each metrics row with its own
#: statement (a purchase: one); more go through a temporary table.
FEW_UPDATES = 20
#: The history's reasons, by what moved the customer.
REASON_COMPUTATION = "scheduled computation"
REASON_RECOMPUTATION = "recomputation"
REASON_PURCHASE = "purchase or refund"
REASON_BULK = "import or bulk change"


def score_settings_for(merchant: Merchant | int) -> ScoreSettings:
    """The merchant's score settings, created with the contract's defaults if missing."""
    merchant_id = merchant if isinstance(merchant, int) else merchant.pk
    settings_row, _ = ScoreSettings.objects.get_or_create(merchant_id=merchant_id)
    return settings_row


def score_rules(settings_row: ScoreSettings) -> ScoreRules:
    """The definitions a computation applies, read from the merchant's settings."""
    tiers = tuple(
        TierThreshold(
            tier_id=rule.tier_id,
            name=rule.tier.name,
            rank=rule.tier.rank,
            metric=rule.metric,
            period=rule.period,
            threshold=rule.threshold,
        )
        for rule in TierRule.objects.filter(merchant_id=settings_row.merchant_id).select_related(
            "tier"
        )
    )
    return ScoreRules(
        lifecycle=LifecycleRules(
            dormant_days=settings_row.dormant_days,
            at_risk_days=settings_row.at_risk_days,
            window_days=settings_row.window_days,
            loyal_orders=settings_row.loyal_orders,
            regular_orders=settings_row.regular_orders,
        ),
        grid=tuple(tuple(row) for row in settings_row.rfm_grid),
        tiers=tiers,
        tier_grace_days=settings_row.tier_grace_days,
    )


# -- the inputs, in SQL -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """The per-customer inputs query: customer_id, tier_id, n, spend, last_at, window_n,
    then one column per tier-rule input (`tier_keys`, in order)."""

    sql: str
    params: list[Any]
    tier_keys: tuple[str, ...]


def _inputs(
    merchant: Merchant,
    rules: ScoreRules,
    as_of: dt.datetime,
    ids: Collection[int] | None,
    *,
    few: bool = False,
) -> _Inputs:
    """The per-customer inputs as of `as_of`, of the merchant's customers or of `ids`.

    When no transaction of theirs lies after `as_of` (a computation of now), the count,
    spend and latest order are the metrics rows' (exact after every write): only the orders
    of the lifecycle window and the tier periods are aggregated, over the transactions of
    that range (the merchant-and-time index). Otherwise everything is aggregated from the
    transactions up to `as_of`.

    `few` (the customers a write touched) adds their stored stage and pending downgrade,
    and their tier's name and rank, as four more columns after `window_n` (`stage_now`,
    `below_now`, `tier_name`, `tier_rank`). A write's follow-up reads the metrics rows the
    write just brought up to date, and only the recent transactions: not each customer's
    whole history, whose pages a delta update (`customers.metrics_delta`) never read.
    """
    txn_table = Transaction._meta.db_table
    later = Transaction.objects.filter(merchant=merchant, occurred_at__gt=as_of)
    if ids is not None:
        later = later.filter(customer_id__any=list(ids))
    from_metrics = not later.exists()
    signed = "CASE WHEN kind = 'purchase' THEN total ELSE -total END"
    window_start = as_of - dt.timedelta(days=rules.lifecycle.window_days)
    aggregates = [
        "SUM(CASE WHEN kind = 'purchase' AND occurred_at >= %s THEN 1 ELSE 0 END) AS window_n",
    ]
    aggregate_params: list[Any] = [window_start]
    if not from_metrics:
        aggregates += [
            "SUM(CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END) AS n",
            f"SUM({signed}) AS spend",
            "MAX(CASE WHEN kind = 'purchase' THEN occurred_at END) AS last_at",
        ]
    earliest = window_start
    outer: list[str] = []
    keys = tuple(dict.fromkeys(rule.key for rule in rules.tiers))
    lifetime = (
        {"spend": "m.net_spend", "orders": "m.orders_count", "points": "m.lifetime_points"}
        if from_metrics
        else {
            "spend": "COALESCE(t.spend, 0)",
            "orders": "COALESCE(t.n, 0)",
            "points": "c.lifetime_points",
        }
    )
    for index, key in enumerate(keys):
        metric, period = key.split("_", 1)
        start = period_start(period, as_of=as_of, tz=merchant.tzinfo)
        if start is None:
            column = lifetime[metric]
        else:
            value = {
                "spend": signed,
                "orders": "CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END",
                "points": "points_earned",
            }[metric]
            aggregates.append(
                f"SUM(CASE WHEN occurred_at >= %s THEN {value} ELSE 0 END) AS k{index}"
            )
            aggregate_params.append(start)
            earliest = min(earliest, start)
            column = f"COALESCE(t.k{index}, 0)"
        outer.append(f"{column} AS tier_{index}")
    alias, key = ("m", "m.customer_id") if from_metrics else ("c", "c.id")
    if ids is None:
        txn_scope, row_scope = "merchant_id = %s", f"{alias}.merchant_id = %s"
        scope_params: list[Any] = [merchant.pk]
    else:
        txn_scope, scope_params = any_of("customer_id", ids)
        row_scope, _ = any_of(key, ids)
    tier_columns = "".join(f", {column}" for column in outer)
    if from_metrics:
        # Only the range the window and the periods need: the rest is on the metrics rows.
        range_sql, range_params = "occurred_at >= %s AND occurred_at <= %s", [earliest, as_of]
        rows = f"{CustomerMetrics._meta.db_table} m"
        select = (
            "m.customer_id AS customer_id, m.tier_id AS tier_id, m.orders_count AS n, "
            "m.net_spend AS spend, m.last_purchase_at AS last_at"
        )
    else:
        range_sql, range_params = "occurred_at <= %s", [as_of]
        rows = f"{Customer._meta.db_table} c"
        select = (
            "c.id AS customer_id, c.tier_id AS tier_id, COALESCE(t.n, 0) AS n, "
            "COALESCE(t.spend, 0) AS spend, t.last_at AS last_at"
        )
    current = ""
    if few:
        stored = alias
        if not from_metrics:
            rows += f" LEFT JOIN {CustomerMetrics._meta.db_table} cm ON cm.customer_id = c.id"
            stored = "cm"
        rows += f" LEFT JOIN {Tier._meta.db_table} ct ON ct.id = {alias}.tier_id"
        current = (
            f", {stored}.lifecycle_stage AS stage_now, {stored}.tier_below_since AS below_now"
            ", ct.name AS tier_name, ct.rank AS tier_rank"
        )
    sql = f"""
        SELECT {select}, COALESCE(t.window_n, 0) AS window_n{current}{tier_columns}
        FROM {rows}
        LEFT JOIN (
            SELECT customer_id, {", ".join(aggregates)}
            FROM {txn_table}
            WHERE {txn_scope} AND {range_sql}
            GROUP BY customer_id
        ) t ON t.customer_id = {key}
        WHERE {row_scope}
    """
    params = [*aggregate_params, *scope_params, *range_params, *scope_params]
    return _Inputs(sql, params, keys)


def _case(pairs: Iterable[tuple[str, list[Any], Any]], default: str = "NULL") -> tuple[str, list]:
    """`CASE WHEN cond THEN %s ... ELSE default END` from (condition, its params, value)."""
    parts, params = [], []
    for condition, condition_params, value in pairs:
        parts.append(f"WHEN {condition} THEN %s")
        params.extend([*condition_params, value])
    if not parts:
        return default, []
    return f"CASE {' '.join(parts)} ELSE {default} END", params


# -- the whole merchant -----------------------------------------------------------------------

_WORK = "score_work"
_INPUTS = "score_inputs"
#: The value each score compares (R: the latest order's local date; F: orders; M: spend).
_RFM_VALUES = (("r", "last_day"), ("f", "n"), ("m", "spend"))


def _rfm_thresholds(cursor: Any) -> dict[str, list[Any]] | None:
    """The contract's scores as thresholds: with the scored customers' values sorted
    a_1 <= ... <= a_N, a value scores at least s exactly when it exceeds a_c(s) (the
    `score_cutoffs`), since "c values are strictly lower" is "v > a_c". One sort per
    score instead of a rank per customer. None when at most one customer is scored (all
    score 1)."""
    cursor.execute(f"SELECT COUNT(*) FROM {_INPUTS} WHERE n > 0")
    scored = cursor.fetchone()[0]
    if scored <= 1:
        return None
    cutoffs = score_cutoffs(scored)
    thresholds = {}
    for score, column in _RFM_VALUES:
        marks = ", ".join(["%s"] * len(cutoffs))
        cursor.execute(
            f"""
            SELECT position, value FROM (
                SELECT {column} AS value, ROW_NUMBER() OVER (ORDER BY {column}) AS position
                FROM {_INPUTS} WHERE n > 0
            ) sorted WHERE position IN ({marks})
            """,
            cutoffs,
        )
        at = dict(cursor.fetchall())
        thresholds[score] = [at[cutoff] for cutoff in cutoffs]
    return thresholds


def _build_work(
    merchant: Merchant, rules: ScoreRules, as_of: dt.datetime, *, rfm: bool = True
) -> None:
    """Fill the temporary table `score_work` (one row per customer of the merchant):
    customer_id, tier_id (held now), stage, r, f, m, grp, target (the tier the rules give).
    Without `rfm`, the RFM scores and group are the stored ones (between computations)."""
    inputs = _inputs(merchant, rules, as_of, None)
    today = merchant.today(as_of)
    life = rules.lifecycle
    local_day, local_params = connection.ops.datetime_cast_date_sql(
        "last_at", [], merchant.time_zone
    )
    stage, stage_params = _case(
        [
            ("n = 0", [], None),
            ("last_day < %s", [today - dt.timedelta(days=life.dormant_days)], "dormant"),
            ("last_day < %s", [today - dt.timedelta(days=life.at_risk_days)], "at_risk"),
            ("n = 1", [], "new"),
            ("window_n >= %s", [life.loyal_orders], "loyal"),
            ("window_n >= %s", [life.regular_orders], "regular"),
        ],
        default="'repeat'",
    )
    # The highest-ranked rule reached wins (the rules are few: one CASE branch each).
    by_rank = sorted(enumerate(rules.tiers), key=lambda item: (-item[1].rank, -item[1].threshold))
    target, target_params = _case(
        (f"tier_{inputs.tier_keys.index(rule.key)} >= %s", [rule.threshold], rule.tier_id)
        for _, rule in by_rank
    )
    # The grid as a small table joined on (R, FM): a CASE of 25 branches would evaluate the
    # scores again in each branch, for every customer.
    grid = [
        (5 - row, column + 1, name)
        for row, cells in enumerate(rules.grid)
        for column, name in enumerate(cells)
    ]
    grid_rows = ", ".join(["(%s, %s, %s)"] * len(grid))
    grid_params = [value for cell in grid for value in cell]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_WORK}")
        cursor.execute(f"DROP TABLE IF EXISTS {_INPUTS}")
        if connection.vendor == "postgresql" and connection.in_atomic_block:
            # TRICKY: the planner's estimates of these statements pass the JIT thresholds,
            # and compiling took 3.2 of 3.9 s at 100,000 customers; they gain nothing from
            # JIT. Their sorts (one per score) stay in memory at a million customers instead
            # of spilling to disk at the default 4 MB.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '128MB'")
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE {_INPUTS} AS
            SELECT inputs.*, {local_day} AS last_day FROM ({inputs.sql}) inputs
            """,
            _adapt([*local_params, *inputs.params]),
        )
        score_params: list[Any] = []
        if rfm:
            thresholds = _rfm_thresholds(cursor)
            parts = []
            for score, column in _RFM_VALUES:
                if thresholds is None:
                    parts.append(f"CASE WHEN n > 0 THEN 1 END AS {score}")
                    continue
                above = f"CASE WHEN {column} > %s THEN 1 ELSE 0 END"
                parts.append(f"CASE WHEN n > 0 THEN 1 + {' + '.join([above] * 4)} END AS {score}")
                score_params += thresholds[score]
            scores_sql, rows = ", ".join(parts), f"{_INPUTS} i"
            group = "COALESCE(g.column3, %s)"
            group_join = (
                f"LEFT JOIN (VALUES {grid_rows}) g "
                "ON g.column1 = s.r AND g.column2 = (s.f + s.m + 1) / 2"
            )
            group_params, join_params = [UNSCORED_GROUP], grid_params
        else:
            scores_sql = (
                "m.rfm_recency AS r, m.rfm_frequency AS f, m.rfm_monetary AS m, "
                "m.rfm_group AS stored_group"
            )
            rows = f"{_INPUTS} i JOIN {CustomerMetrics._meta.db_table} m "
            rows += "ON m.customer_id = i.customer_id"
            group, group_join, group_params, join_params = "s.stored_group", "", [], []
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE {_WORK} AS
            SELECT s.customer_id, s.tier_id, s.stage, s.r, s.f, s.m, {group} AS grp, s.target,
                   s.spend
            FROM (
                SELECT i.customer_id, i.tier_id, {stage} AS stage, {scores_sql},
                       {target} AS target, i.spend AS spend
                FROM {rows}
            ) s
            {group_join}
            """,
            _adapt([*group_params, *stage_params, *score_params, *target_params, *join_params]),
        )
        cursor.execute(f"DROP TABLE {_INPUTS}")
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {_WORK}")


def _write_lifecycle_and_rfm(
    merchant: Merchant,
    rules: ScoreRules,
    as_of: dt.datetime,
    *,
    reason_prefix: str = REASON_COMPUTATION,
) -> None:
    metrics, changes = CustomerMetrics._meta.db_table, ScoreChange._meta.db_table
    definitions = rules.lifecycle.definitions()
    reason, reason_params = _case(
        [
            ("w.stage = %s", [name], f"{reason_prefix}: {definitions[name]}"[:200])
            for name in STAGE_NAMES
        ],
        default="'no order'",
    )
    distinct = _distinct()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {changes}
                (merchant_id, customer_id, kind, from_value, to_value, changed_at, reason)
            SELECT %s, w.customer_id, 'lifecycle', COALESCE(m.lifecycle_stage, ''),
                   COALESCE(w.stage, ''), %s, {reason}
            FROM {_WORK} w JOIN {metrics} m ON m.customer_id = w.customer_id
            WHERE m.lifecycle_stage {distinct} w.stage
            """,
            _adapt([merchant.pk, as_of, *reason_params]),
        )
        new = "(w.stage, w.r, w.f, w.m, w.grp)"
        current = (
            f"({metrics}.lifecycle_stage, {metrics}.rfm_recency, {metrics}.rfm_frequency, "
            f"{metrics}.rfm_monetary, {metrics}.rfm_group)"
        )
        cursor.execute(
            f"""
            UPDATE {metrics}
            SET lifecycle_stage = w.stage, rfm_recency = w.r, rfm_frequency = w.f,
                rfm_monetary = w.m, rfm_group = w.grp
            FROM {_WORK} w
            WHERE {metrics}.customer_id = w.customer_id AND {current} {distinct} {new}
            """
        )


def _write_tiers(
    merchant: Merchant,
    rules: ScoreRules,
    as_of: dt.datetime,
    *,
    scheduled: bool,
    reason_prefix: str,
) -> None:
    """Upgrade at once; on a `scheduled` computation also start the grace period of a
    customer below their tier, and downgrade once it has run out. A customer back at their
    tier's threshold ends it. Customers' tiers and their copies on the metrics rows, with
    the history. (`tier_move` in `definitions` is the same rule for one customer.)"""
    metrics, changes = CustomerMetrics._meta.db_table, ScoreChange._meta.db_table
    customers, tiers = Customer._meta.db_table, Tier._meta.db_table
    today = merchant.today(as_of)
    grace_cut = today - dt.timedelta(days=rules.tier_grace_days)
    distinct = _distinct()
    moves = "score_tier_moves"
    reached, reached_params = _case(
        (
            "target = %s",
            [rule.tier_id],
            f"{reason_prefix}: {rule.reached}"[:200],
        )
        for rule in rules.tiers
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {moves}")
        # TRICKY: a missing rank (no tier) is -1, so any tier is an upgrade from none.
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE {moves} AS
            SELECT customer_id, old_id, new_id, below, reason FROM (
            SELECT customer_id, tier_id AS old_id, new_id, below_since,
                   CASE WHEN new_id {distinct} tier_id THEN NULL ELSE below END AS below,
                   reason
            FROM (
                SELECT customer_id, tier_id, below_since,
                       CASE
                         WHEN same THEN tier_id
                         WHEN tr > cr THEN target
                         WHEN tr = cr THEN tier_id
                         WHEN %s AND COALESCE(below_since, %s) <= %s THEN target
                         ELSE tier_id
                       END AS new_id,
                       CASE WHEN same OR tr >= cr THEN NULL
                            WHEN %s THEN COALESCE(below_since, %s)
                            ELSE below_since END AS below,
                       CASE WHEN NOT same AND tr > cr THEN {reached} ELSE %s END AS reason
                FROM (
                    SELECT w.customer_id, w.tier_id, w.target,
                           m.tier_below_since AS below_since,
                           (w.target IS NULL AND w.tier_id IS NULL)
                             OR COALESCE(w.target = w.tier_id, FALSE) AS same,
                           CASE WHEN w.tier_id IS NULL THEN -1
                                ELSE COALESCE(ct.rank, -1) END AS cr,
                           CASE WHEN w.target IS NULL THEN -1 ELSE nt.rank END AS tr
                    FROM {_WORK} w
                    JOIN {metrics} m ON m.customer_id = w.customer_id
                    LEFT JOIN {tiers} ct ON ct.id = w.tier_id
                    LEFT JOIN {tiers} nt ON nt.id = w.target
                ) ranked
            ) moved
            ) changed
            -- only the customers whose tier or grace period changes: a handful, not all
            WHERE new_id {distinct} old_id OR below {distinct} below_since
            """,
            _adapt(
                [
                    scheduled,
                    today,
                    grace_cut,
                    scheduled,
                    today,
                    *reached_params,
                    f"{reason_prefix}: {downgrade_reason(rules.tier_grace_days)}",
                ]
            ),
        )
        cursor.execute(
            f"""
            INSERT INTO {changes}
                (merchant_id, customer_id, kind, from_value, to_value, changed_at, reason)
            SELECT %s, v.customer_id, 'tier', COALESCE(ot.name, ''), COALESCE(nt.name, ''),
                   %s, v.reason
            FROM {moves} v
            LEFT JOIN {tiers} ot ON ot.id = v.old_id
            LEFT JOIN {tiers} nt ON nt.id = v.new_id
            WHERE v.new_id {distinct} v.old_id
            """,
            _adapt([merchant.pk, as_of]),
        )
        cursor.execute(
            f"""
            UPDATE {customers} SET tier_id = v.new_id
            FROM {moves} v
            WHERE {customers}.id = v.customer_id AND v.new_id {distinct} v.old_id
            """
        )
        cursor.execute(
            f"""
            UPDATE {metrics} SET tier_id = v.new_id, tier_below_since = v.below
            FROM {moves} v
            WHERE {metrics}.customer_id = v.customer_id
            """
        )
        cursor.execute(f"DROP TABLE {moves}")


def _summary(
    merchant: Merchant, as_of: dt.datetime, seconds: float, predicted: _Predicted
) -> dict[str, Any]:
    """What `compute_scores --json` prints. The stage and group counts come from the work
    table (what was just stored), read once, rather than from the whole metrics table."""
    stages: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    customers = scored = 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT stage, grp, r IS NOT NULL, COUNT(*) FROM {_WORK} GROUP BY stage, grp, 3"
        )
        for stage, group, has_scores, n in cursor.fetchall():
            customers += n
            scored += n if has_scores else 0
            stages[stage] += n
            groups[group] += n
    tier_counts = dict(
        Customer.objects.filter(merchant=merchant, tier__isnull=False)
        .values_list("tier__name")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {
        "merchant": merchant.slug,
        "as_of": as_of.astimezone(merchant.tzinfo).isoformat(),
        "customers": customers,
        "scored": scored,
        "bgnbd": summary_json(predicted.state.bgnbd),
        "gamma_gamma": summary_json(predicted.state.gamma_gamma),
        "prediction_error": predicted.state.error,
        "lifecycle": {name: stages[name] for name in STAGE_NAMES},
        "rfm_groups": {name: groups[name] for name in RFM_GROUP_NAMES},
        "tiers": dict(sorted(tier_counts.items())),
        "smart_segments": {
            name: predicted.segments[name] + (customers - predicted.customers)
            if name == NO_ORDER_SEGMENT
            else predicted.segments[name]
            for name in SMART_SEGMENT_NAMES
        },
        "seconds": round(seconds, 3),
    }


@dataclass
class _Predicted:
    state: ModelState
    #: Customers with an order, and how many of them are in each smart segment.
    customers: int
    segments: Counter[str]


def _predict_merchant(
    merchant: Merchant,
    as_of: dt.datetime,
    *,
    state: ModelState | None = None,
    holdout: bool = True,
) -> _Predicted:
    """Fit the models (unless `state`, a stored fit, is given; with the holdout check
    unless told not to), score every customer of the merchant and store it; the work
    table `score_work` gives each customer's spend."""
    inputs, context = prediction_store.merchant_inputs(
        merchant, as_of, spend_table=_WORK, holdout=holdout and state is None
    )
    try:
        if state is None:
            previous = ModelState.from_json(
                ScoreSettings.objects.filter(merchant=merchant).values_list("model", flat=True)[0]
            )
            state = model_state(
                inputs,
                as_of=as_of.astimezone(merchant.tzinfo).isoformat(),
                holdout=_holdout(context, previous) if holdout else None,
                previous=previous,
            )
        scores = predictions_score(inputs, state)
        prediction_store.store(merchant, inputs, scores, context["today"], everyone=True)
    finally:
        prediction_store.drop_days()
    return _Predicted(state, len(inputs.n), Counter(scores.segment.tolist()))


def _holdout(context: dict[str, Any], previous: ModelState) -> dict[str, Any]:
    """The calibration/holdout check, from what `merchant_inputs` gathered."""
    if context.get("error"):
        return {"error": context["error"]}
    calibration_end, today = context["calibration_end"], context["today"]
    since = calibration_end - dt.timedelta(weeks=TRACKING_CALIBRATION_WEEKS + 1)
    return holdout_check(
        calibration=context["calibration"],
        calibration_end=calibration_end,
        end=today,
        cohorts=context["cohorts"],
        repeat_days=prediction_store.repeat_days_by_day(calibration_end, since),
        start=previous,
    ) | {"sample_every": context["sample_every"]}


class ScoresError(Exception):
    """A computation that cannot run (bad settings); the message says why."""


def scores_compute(
    *,
    merchant: Merchant,
    as_of: dt.datetime | None = None,
    announce: bool = True,
    scheduled: bool = True,
    holdout: bool = True,
) -> dict[str, Any]:
    """Compute and store every score of every customer of `merchant` as of `as_of`
    (default: now), write the history of stage and tier changes, record the run on the
    merchant's settings and announce one merchant-level change (the segments refresh).

    A `scheduled` computation (the schedule, `compute_scores`) also applies tier downgrades
    after their grace period; a recomputation asked for in the portal ("recompute now", a
    settings change) moves everything else but leaves downgrades to the schedule.

    One transaction: a failure leaves the previous scores. Two computations of one merchant
    never overlap (the settings row is locked). Without `holdout`, the fit is not checked
    on a holdout period (the demo's backfill of past weeks). Returns the summary
    `compute_scores --json` prints.
    """
    as_of = as_of or timezone.now()
    if timezone.is_naive(as_of):
        raise ScoresError("as_of must be an aware datetime")
    started = time.perf_counter()
    score_settings_for(merchant)
    ScoreSettings.objects.filter(merchant=merchant).update(
        status="running", started_at=timezone.now(), error=""
    )
    try:
        with transaction.atomic():
            settings_row = ScoreSettings.objects.select_for_update().get(merchant=merchant)
            rules = score_rules(settings_row)
            reason = REASON_COMPUTATION if scheduled else REASON_RECOMPUTATION
            _build_work(merchant, rules, as_of)
            _write_lifecycle_and_rfm(merchant, rules, as_of, reason_prefix=reason)
            predicted = _predict_merchant(merchant, as_of, holdout=holdout)
            if rules.tiers:
                _write_tiers(merchant, rules, as_of, scheduled=scheduled, reason_prefix=reason)
            else:  # no rules (any more): no downgrade is pending
                CustomerMetrics.objects.filter(
                    merchant=merchant, tier_below_since__isnull=False
                ).update(tier_below_since=None)
            _changes_recorded(merchant, as_of)
            summary = _summary(merchant, as_of, time.perf_counter() - started, predicted)
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {_WORK}")
            finished = timezone.now()
            ScoreSettings.objects.filter(merchant=merchant).update(
                status="ok",
                finished_at=finished,
                **({"scheduled_on": merchant.today(finished)} if scheduled else {}),
                computed_as_of=as_of,
                seconds=summary["seconds"],
                summary=summary,
                model=predicted.state.as_json(),
                error="",
            )
            if announce:
                customers_changed.send(
                    sender=CustomerMetrics, customer_ids=None, merchant_id=merchant.pk
                )
    except Exception as exc:
        ScoreSettings.objects.filter(merchant=merchant).update(
            status="failed",
            finished_at=timezone.now(),
            seconds=round(time.perf_counter() - started, 3),
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        raise
    return summary


# -- a few customers, after a write -----------------------------------------------------------


def customer_scores_follow(
    *, merchant_id: int, customer_ids: Collection[int] | None, as_of: dt.datetime | None = None
) -> None:
    """Bring the lifecycle stage, tier, predictions and smart segment of these customers
    (every customer of the merchant when None) up to date after a write, in the caller's
    transaction: the stage follows, a tier upgrade happens now, the predictions come from
    the stored fit; downgrades, RFM, the fit and the merchant's cut-offs wait for the
    computation.

    Few customers are read into Python (four indexed queries: settings, tier rules, the
    stage and tier inputs, the prediction inputs; then one UPDATE per customer and the
    history); a merchant-level change runs the same set-based SQL as the computation."""
    as_of = as_of or timezone.now()
    # One query for the settings and the merchant (this runs on every purchase).
    settings_row = (
        ScoreSettings.objects.select_related("merchant").filter(merchant_id=merchant_id).first()
    ) or score_settings_for(merchant_id)
    merchant = settings_row.merchant
    rules = score_rules(settings_row)
    if customer_ids is None:
        _follow_merchant(merchant, rules, as_of, settings_row.model)
    else:
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            stages = _follow_few(merchant, rules, as_of, chunk)
            _predict_few(merchant, as_of, chunk, ModelState.from_json(settings_row.model), stages)
    _changes_recorded(merchant, as_of)


def _changes_recorded(merchant: Merchant, as_of: dt.datetime) -> None:
    """Tell listeners (webhooks) that this write's stage and tier changes are in the
    history: the `ScoreChange` rows of this merchant at `as_of`."""
    score_changes_recorded.send(
        sender=ScoreChange,
        merchant_id=merchant.pk,
        changed_at=as_of,
        kinds=frozenset({"lifecycle", "tier"}),
    )


def _follow_merchant(
    merchant: Merchant, rules: ScoreRules, as_of: dt.datetime, model: dict[str, Any]
) -> None:
    """Stage and tier upgrades of every customer (set-based), and predictions from the
    stored fit (`model`); RFM scores stay as they are, pending downgrades stay pending."""
    _build_work(merchant, rules, as_of, rfm=False)
    _write_lifecycle_and_rfm(merchant, rules, as_of, reason_prefix=REASON_BULK)
    _predict_merchant(merchant, as_of, state=ModelState.from_json(model))
    if rules.tiers:
        _write_tiers(merchant, rules, as_of, scheduled=False, reason_prefix=REASON_BULK)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {_WORK}")


def _follow_few(
    merchant: Merchant, rules: ScoreRules, as_of: dt.datetime, ids: list[int]
) -> dict[int, str | None]:
    """Tiers and the history written; returns the customers whose stage moved, with their
    new stage, for `_predict_few` to write with their predictions (one UPDATE each)."""
    inputs = _inputs(merchant, rules, as_of, ids, few=True)
    with connection.cursor() as cursor:
        cursor.execute(inputs.sql, _adapt(inputs.params))
        rows = cursor.fetchall()
    tz, today = merchant.tzinfo, merchant.today(as_of)
    definitions = rules.lifecycle.definitions()
    history: list[ScoreChange] = []
    stage_updates: dict[int, str | None] = {}
    tier_updates: dict[int | None, list[int]] = {}
    back_at_threshold: list[int] = []
    for row in rows:
        customer_id, tier_id, n, _spend, last_at, window_n, old_stage, below = row[:8]
        tier_name, tier_rank, tier_values = row[8], row[9], row[10:]
        if last_at is not None and isinstance(last_at, str):  # pragma: no cover - SQLite text
            last_at = dt.datetime.fromisoformat(last_at)
        if isinstance(below, str):  # SQLite returns dates as text
            below = dt.date.fromisoformat(below)
        if last_at is not None and timezone.is_naive(last_at):
            last_at = last_at.replace(tzinfo=dt.UTC)
        days = None if last_at is None else (today - last_at.astimezone(tz).date()).days
        stage = rules.lifecycle.stage(
            orders=n or 0, days_since_last=days, window_orders=window_n or 0
        )
        if stage != old_stage:
            stage_updates[customer_id] = stage
            history.append(
                ScoreChange(
                    merchant=merchant,
                    customer_id=customer_id,
                    kind="lifecycle",
                    from_value=old_stage or "",
                    to_value=stage or "",
                    changed_at=as_of,
                    reason=f"{REASON_PURCHASE}: {definitions.get(stage or '', 'no order')}"[:200],
                )
            )
        if not rules.tiers:
            continue
        values = {
            key: Decimal(str(value or 0))
            for key, value in zip(inputs.tier_keys, tier_values, strict=True)
        }
        target = tier_for(rules.tiers, values)
        move = tier_move(
            current_id=tier_id,
            current_rank=tier_rank,
            target=target,
            below_since=below,
            today=today,
            grace_days=rules.tier_grace_days,
            scheduled=False,
            reason_prefix=REASON_PURCHASE,
        )
        if below is not None and move.below_since is None and not move.changed:
            back_at_threshold.append(customer_id)  # reached their tier again: no downgrade
        if move.changed:
            tier_updates.setdefault(move.tier_id, []).append(customer_id)
            history.append(
                ScoreChange(
                    merchant=merchant,
                    customer_id=customer_id,
                    kind="tier",
                    from_value=tier_name or "",
                    to_value=target.name if target and move.tier_id == target.tier_id else "",
                    changed_at=as_of,
                    reason=move.reason[:200],
                )
            )
    for new_tier, changed in tier_updates.items():
        # The plain QuerySet.update: the metrics copy is written on the next line, and the
        # caller (the write chain) announces the change.
        models.QuerySet.update(Customer.objects.filter(pk__any=changed), tier_id=new_tier)
        CustomerMetrics.objects.filter(pk__any=changed).update(
            tier_id=new_tier, tier_below_since=None
        )
    if back_at_threshold:
        CustomerMetrics.objects.filter(pk__any=back_at_threshold).update(tier_below_since=None)
    if history:
        ScoreChange.objects.bulk_create(history)
    return stage_updates


def _predict_few(
    merchant: Merchant,
    as_of: dt.datetime,
    ids: list[int],
    state: ModelState,
    stages: dict[int, str | None],
) -> None:
    """Score these customers from the stored fit (the closed forms; no refit): their
    predictions, smart segment and churn cut-off follow a purchase at once, written with
    the new lifecycle `stages` of those whose stage moved."""
    inputs = prediction_store.few_inputs(merchant, as_of, ids)
    scores = predictions_score(inputs, state)
    today = merchant.today(as_of)
    if len(inputs.customer_id) > FEW_UPDATES:
        # A batch (an import, the API's purchases): the predictions and the stages that
        # moved through the computation's COPY and one UPDATE, not an UPDATE per customer.
        # A customer whose stage moved but who has no order is not among the predictions:
        # the reset below writes their stage (none).
        prediction_store.store(merchant, inputs, scores, today, everyone=False, stages=stages)
    else:
        for row in prediction_store.result_rows(inputs, scores, today):
            values = dict(zip(prediction_store.RESULT_COLUMNS, row[1:], strict=True))
            if row[0] in stages:
                values["lifecycle_stage"] = stages[row[0]]
            CustomerMetrics.objects.filter(pk=row[0]).update(**values)
    without_order = set(ids) - set(inputs.customer_id.tolist())
    if without_order:
        # No order (any more): no stage, no prediction, waiting for the first order.
        CustomerMetrics.objects.filter(pk__any=without_order).update(
            **{column: None for column in prediction_store.RESULT_COLUMNS}
            | {"smart_segment": NO_ORDER_SEGMENT, "lifecycle_stage": None}
        )
