"""Writes of a merchant's score settings, and when its scores are computed.

`score_settings_update()` validates and saves the thresholds, the RFM grid, the tier rules
and the cadence, records the change (who, when, old and new values) and queues a
recomputation. `scores_recompute_request()` queues one ("recompute now");
`scores_due()` says which merchants' scheduled computation has come (the beat task).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from customers.models import (
    Merchant,
    ScoreSettings,
    ScoreSettingsChange,
    Tier,
    TierRule,
)
from customers.scores.definitions import (
    TIER_METRICS,
    TIER_PERIODS,
    LifecycleRules,
    grid_problems,
    lifecycle_problems,
)
from customers.scores.service import score_settings_for

#: The local hour from which a day's scheduled computation runs (after the night's imports).
SCHEDULE_HOUR = 3
#: The settings fields a merchant edits (besides the grid and the tier rules).
THRESHOLD_FIELDS = (
    "dormant_days",
    "at_risk_days",
    "window_days",
    "loyal_orders",
    "regular_orders",
    "tier_grace_days",
)
LIMITS = {
    "dormant_days": (1, 3650),
    "at_risk_days": (1, 3650),
    "window_days": (1, 3650),
    "loyal_orders": (2, 10_000),
    "regular_orders": (2, 10_000),
    "tier_grace_days": (0, 3650),
}
WEEKDAY_NAMES = (
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
)
#: A computation queued or running for longer than this is taken for lost (a worker that
#: died): the schedule starts another.
STALE_AFTER = dt.timedelta(hours=2)
MSG_WEEKDAY = "Pick a weekday (Monday to Sunday) for a weekly computation."


@dataclass(frozen=True)
class TierRuleInput:
    """One tier rule as submitted: an existing tier (`tier_id`) or a new one (`name`)."""

    name: str
    rank: int
    metric: str
    period: str
    threshold: Decimal | None
    tier_id: int | None = None


def settings_snapshot(settings_row: ScoreSettings) -> dict[str, Any]:
    """The editable values of a merchant's score settings, as JSON (the change log)."""
    rules = [
        {
            "tier": rule.tier.name,
            "rank": rule.tier.rank,
            "metric": rule.metric,
            "period": rule.period,
            "threshold": str(rule.threshold),
        }
        for rule in TierRule.objects.filter(merchant_id=settings_row.merchant_id)
        .select_related("tier")
        .order_by("tier__rank", "tier__name")
    ]
    return {
        **{name: getattr(settings_row, name) for name in THRESHOLD_FIELDS},
        "cadence": settings_row.cadence,
        "weekday": settings_row.weekday,
        "rfm_grid": [list(row) for row in settings_row.rfm_grid],
        "tier_rules": rules,
    }


def _check(
    values: dict[str, Any], grid: Sequence[Sequence[str]], tier_rules: Sequence[TierRuleInput]
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name, (low, high) in LIMITS.items():
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            errors.setdefault(name, []).append(f"Enter a whole number from {low} to {high}.")
    if not errors:
        lifecycle = LifecycleRules(**{k: values[k] for k in THRESHOLD_FIELDS[:5]})
        for name, message in lifecycle_problems(lifecycle).items():
            errors.setdefault(name, []).append(message)
    if values["cadence"] not in ("daily", "weekly"):
        errors.setdefault("cadence", []).append("Choose every night or once a week.")
    if values["cadence"] == "weekly" and values["weekday"] not in range(7):
        errors.setdefault("weekday", []).append(MSG_WEEKDAY)
    problems = grid_problems(grid)
    if problems:
        errors["rfm_grid"] = problems
    metrics, periods = dict(TIER_METRICS), dict(TIER_PERIODS)
    seen: set[str] = set()
    for index, rule in enumerate(tier_rules, start=1):
        where = f"Tier rule {index} ({rule.name or 'no name'})"
        if not rule.name.strip():
            errors.setdefault("tier_rules", []).append(f"Tier rule {index}: give the tier a name.")
        elif rule.name.strip().lower() in seen:
            errors.setdefault("tier_rules", []).append(f"{where}: the name is used twice.")
        seen.add(rule.name.strip().lower())
        if rule.metric not in metrics:
            errors.setdefault("tier_rules", []).append(f"{where}: choose what is counted.")
        if rule.period not in periods:
            errors.setdefault("tier_rules", []).append(f"{where}: choose the period.")
        if rule.threshold is None or rule.threshold < 0:
            errors.setdefault("tier_rules", []).append(
                f"{where}: the threshold must be a number of at least 0."
            )
        if rule.metric != "spend" and rule.threshold is not None and rule.threshold % 1:
            errors.setdefault("tier_rules", []).append(
                f"{where}: orders and points are whole numbers."
            )
    return errors


def score_settings_update(
    *,
    merchant: Merchant,
    user: Any,
    values: dict[str, Any],
    grid: Sequence[Sequence[str]],
    tier_rules: Sequence[TierRuleInput],
) -> ScoreSettingsChange | None:
    """Validate and save a merchant's score settings: `values` has every `THRESHOLD_FIELDS`
    entry plus `cadence` and `weekday`; `grid` is the RFM grid (rows R = 5..1); `tier_rules`
    replaces the merchant's tier rules (tiers named but not existing are created; tiers
    left without a rule keep their customers until the computation).

    Raises ValidationError (messages by field) and saves nothing on bad input. Records the
    change and queues a recomputation when anything changed; returns the change, or None.
    """
    errors = _check(values, grid, tier_rules)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        settings_row = ScoreSettings.objects.select_for_update().get(
            pk=score_settings_for(merchant).pk
        )
        before = settings_snapshot(settings_row)
        for name in THRESHOLD_FIELDS:
            setattr(settings_row, name, values[name])
        settings_row.cadence = values["cadence"]
        settings_row.weekday = values["weekday"] if values["weekday"] in range(7) else 6
        settings_row.rfm_grid = [list(row) for row in grid]
        settings_row.save()
        _replace_tier_rules(merchant, tier_rules)
        after = settings_snapshot(settings_row)
        if after == before:
            return None
        change = ScoreSettingsChange.objects.create(
            merchant=merchant,
            changed_by=user if getattr(user, "pk", None) else None,
            old=before,
            new=after,
        )
        scores_recompute_request(merchant=merchant)
    return change


def _replace_tier_rules(merchant: Merchant, rules: Sequence[TierRuleInput]) -> None:
    tiers: dict[str, Tier] = {t.name.lower(): t for t in Tier.objects.filter(merchant=merchant)}
    keep: list[int] = []
    for rule in rules:
        name = rule.name.strip()
        tier = tiers.get(name.lower()) or Tier.objects.create(
            merchant=merchant, name=name, rank=rule.rank
        )
        if tier.rank != rule.rank or tier.name != name:
            tier.rank, tier.name = rule.rank, name
            tier.save(update_fields=["rank", "name"])
        TierRule.objects.update_or_create(
            tier=tier,
            defaults={
                "merchant": merchant,
                "metric": rule.metric,
                "period": rule.period,
                "threshold": rule.threshold,
            },
        )
        keep.append(tier.pk)
    TierRule.objects.filter(merchant=merchant).exclude(tier_id__in=keep).delete()


def scores_recompute_request(*, merchant: Merchant) -> None:
    """Queue a computation of the merchant's scores ("recompute now", a settings change):
    marked queued at once, run by a worker after the caller's transaction commits (in
    process without a broker)."""
    from customers.tasks import compute_merchant_scores

    score_settings_for(merchant)
    # started_at is cleared so that the staleness check (scores_due) dates the wait from now.
    ScoreSettings.objects.filter(merchant=merchant).exclude(status="running").update(
        status="queued", queued_at=timezone.now(), started_at=None
    )
    merchant_id = merchant.pk
    transaction.on_commit(
        lambda: compute_merchant_scores.delay(merchant_id, scheduled=False), robust=True
    )


def scores_due(*, now: dt.datetime | None = None) -> list[Merchant]:
    """The merchants whose scheduled computation has come: never computed, or not yet
    today (merchant-local) once it is `SCHEDULE_HOUR` there, on every day or on the chosen
    weekday. A computation queued or running is not started twice (unless it has been
    pending for more than `STALE_AFTER`)."""
    now = now or timezone.now()
    due = []
    for merchant in Merchant.objects.all().order_by("pk"):
        settings_row = score_settings_for(merchant)
        pending_since = settings_row.started_at or settings_row.queued_at
        if (
            settings_row.status in ("queued", "running")
            and pending_since is not None
            and now - pending_since < STALE_AFTER
        ):
            continue
        local = now.astimezone(merchant.tzinfo)
        last = settings_row.scheduled_on
        if last is None:
            due.append(merchant)
            continue
        # A failed run leaves `scheduled_on` as it was: the next hourly tick tries again.
        if local.hour < SCHEDULE_HOUR or last >= local.date():
            continue
        if settings_row.cadence == "weekly" and local.weekday() != settings_row.weekday:
            continue
        due.append(merchant)
    return due


def next_scheduled_run(
    *, merchant: Merchant, settings_row: ScoreSettings, now: dt.datetime | None = None
) -> dt.datetime:
    """When the schedule next computes the merchant's scores (merchant-local time, at the
    hourly beat tick from `SCHEDULE_HOUR`): today if it has not run today and the day
    qualifies, else the next qualifying day."""
    now = now or timezone.now()
    tz = merchant.tzinfo
    local = now.astimezone(tz)
    last = settings_row.scheduled_on
    if last is None:  # never run on schedule: the next hourly tick runs it
        return local
    day = local.date()
    for _ in range(8):
        qualifies = settings_row.cadence == "daily" or day.weekday() == settings_row.weekday
        if qualifies and (last is None or last < day):
            at = dt.datetime.combine(day, dt.time(SCHEDULE_HOUR), tzinfo=tz)
            return max(at, local)
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(SCHEDULE_HOUR), tzinfo=tz)  # pragma: no cover


def _rule_text(rule: dict[str, Any]) -> str:
    period = dict(TIER_PERIODS).get(rule["period"], rule["period"]).lower()
    metric = dict(TIER_METRICS).get(rule["metric"], rule["metric"]).lower()
    return f"{rule['tier']} (rank {rule['rank']}) from {rule['threshold']} {metric}, {period}"


def describe_change(change: ScoreSettingsChange) -> list[str]:
    """A settings change in words, one line per changed value (grid cells one by one,
    tier rules added, removed or changed)."""
    old, new = change.old, change.new
    lines = []
    days = dict(WEEKDAY_NAMES)
    for key in (*THRESHOLD_FIELDS, "cadence", "weekday"):
        if old.get(key) != new.get(key):
            before, after = old.get(key, "—"), new.get(key, "—")
            if key == "weekday":
                before, after = days.get(before, before), days.get(after, after)
            lines.append(f"{key.replace('_', ' ')}: {before} → {after}")
    old_grid, new_grid = old.get("rfm_grid") or [], new.get("rfm_grid") or []
    for row, cells in enumerate(new_grid):
        for column, name in enumerate(cells):
            before = old_grid[row][column] if row < len(old_grid) else None
            if before != name:
                lines.append(f"RFM grid R {5 - row}, FM {column + 1}: {before} → {name}")
    old_rules = {_rule_text(rule) for rule in old.get("tier_rules") or []}
    new_rules = {_rule_text(rule) for rule in new.get("tier_rules") or []}
    lines += [f"tier rule removed: {text}" for text in sorted(old_rules - new_rules)]
    lines += [f"tier rule added: {text}" for text in sorted(new_rules - old_rules)]
    return lines
