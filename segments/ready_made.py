"""Ready-made segments over the customer scores: the six lifecycle stages, the eleven RFM
groups, one segment per tier and the ten smart segments. Ordinary dynamic segments (one `in`
condition each), so they refresh like any other, and right after each score computation
(which announces a merchant-level change). `segments.services.segments_add_ready_made`
creates them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from customers.models import Merchant, Tier
from customers.scores.definitions import (
    RFM_GROUP_HELP,
    RFM_GROUP_LABELS,
    RFM_GROUPS,
    STAGE_DISPLAY_ORDER,
    STAGE_LABELS,
)
from customers.scores.service import score_rules, score_settings_for
from customers.scores.smart import AT_RISK_BELOW, LOST_BELOW, SMART_SEGMENTS
from segments.models import Segment

#: The families of ready-made segments, with the button's wording.
FAMILIES = {
    "lifecycle": "lifecycle stages",
    "rfm": "RFM groups",
    "tiers": "tiers",
    "smart": "the ten smart segments",
}
UNKNOWN_FAMILY_ERROR = "Unknown ready-made segments {family!r}: use lifecycle, rfm, tiers or smart."
#: What each smart segment holds, for its description. Without the merchant's figures (its
#: percentiles move with every computation, and a merchant without a fit yet has the
#: recency ratio rule in place of P(alive)): the builder's help and "why in, why out" give
#: them as they are now (`customers.scores.smart.step_reason`).
SMART_DESCRIPTIONS = {
    "active_loyal": (
        f"two or more orders, P(alive) at least {AT_RISK_BELOW}, and neither a richie rich, "
        "a big spender nor a bulk shopper"
    ),
    "big_spender": "spend at or above the merchant's 80th percentile",
    "richie_rich": "mean price per unit at or above the merchant's 90th percentile",
    "bulk_shopper": "2 or more units per line item on average",
    "loyal_at_risk": f"4 or more orders, and P(alive) below {AT_RISK_BELOW}",
    "sleeping_opportunist": (
        f"P(alive) below {AT_RISK_BELOW}, and at least half the orders redeemed points"
    ),
    "churn_candidate": f"P(alive) below {AT_RISK_BELOW}",
    "one_time_shopper": "one order, within the merchant's one-time cut-off (90 days or more)",
    "waiting_first_order": "no order yet",
    "lost": (
        "one order, longer ago than the merchant's one-time cut-off, "
        f"or P(alive) below {LOST_BELOW}"
    ),
}


@dataclass(frozen=True)
class ReadyMade:
    slug: str
    name: str
    description: str
    rules: dict[str, Any]


def _one(field: str, value: str) -> dict[str, Any]:
    return {"match": "all", "conditions": [{"field": field, "op": "in", "value": [value]}]}


def _keys(family: str, tiers: list[tuple[int, str]]) -> list[tuple[str, str, str]]:
    """(slug, name, the value its one condition picks) of each segment of a family."""
    if family == "lifecycle":
        return [
            (f"lifecycle-{n.replace('_', '-')}", f"Lifecycle: {STAGE_LABELS[n]}", n)
            for n in STAGE_DISPLAY_ORDER
        ]
    if family == "rfm":
        return [(f"rfm-{n.replace('_', '-')}", f"RFM: {label}", n) for n, label in RFM_GROUPS]
    if family == "tiers":
        return [(f"tier-{pk}", f"Tier: {name}", name) for pk, name in tiers]
    if family == "smart":
        return [
            (f"smart-{n.replace('_', '-')}", f"Smart: {label}", n) for n, label in SMART_SEGMENTS
        ]
    raise ValueError(UNKNOWN_FAMILY_ERROR.format(family=family))


def _tiers(merchant: Merchant) -> list[tuple[int, str]]:
    return list(
        Tier.objects.filter(merchant=merchant).order_by("-rank", "name").values_list("pk", "name")
    )


def ready_made_segments(*, merchant: Merchant, family: str) -> list[ReadyMade]:
    """The segments of one family, as they would be created for `merchant` (the lifecycle
    stages described with the merchant's thresholds)."""
    keys = _keys(family, _tiers(merchant) if family == "tiers" else [])
    if family == "lifecycle":
        definitions = score_rules(score_settings_for(merchant)).lifecycle.definitions()
        return [
            ReadyMade(
                slug,
                name,
                f"Lifecycle stage {STAGE_LABELS[value].lower()}: {definitions[value]}.",
                _one("lifecycle_stage", value),
            )
            for slug, name, value in keys
        ]
    if family == "rfm":
        return [
            ReadyMade(
                slug,
                name,
                f"RFM group {RFM_GROUP_LABELS[value].lower()}: {RFM_GROUP_HELP[value]}.",
                _one("rfm_group", value),
            )
            for slug, name, value in keys
        ]
    if family == "smart":
        return [
            ReadyMade(
                slug,
                name,
                f"Smart segment {name.removeprefix('Smart: ').lower()}: "
                f"{SMART_DESCRIPTIONS[value]}.",
                _one("smart_segment", value),
            )
            for slug, name, value in keys
        ]
    return [
        ReadyMade(slug, name, f"Customers holding the {value} tier.", _one("tier", value))
        for slug, name, value in keys
    ]


def ready_made_missing(*, merchant: Merchant) -> list[tuple[str, str, int, int]]:
    """Per family: (family, label, how many of its segments the merchant lacks, how many
    there are). A segment counts as there when its slug or its name is taken. Two queries
    (the merchant's segments, its tiers), for the segment list's menu."""
    taken = taken_check(merchant)
    tiers = _tiers(merchant)
    rows = []
    for family, label in FAMILIES.items():
        keys = _keys(family, tiers)
        missing = sum(1 for slug, name, _ in keys if not taken(slug, name))
        rows.append((family, label, missing, len(keys)))
    return rows


def taken_check(merchant: Merchant) -> Callable[[str, str], bool]:
    """Whether a slug or a name is taken among the merchant's segments (one query)."""
    rows = list(Segment.objects.filter(merchant=merchant).values_list("slug", "name"))
    slugs = {slug for slug, _ in rows}
    names = {name.lower() for _, name in rows}
    return lambda slug, name: slug in slugs or name.lower() in names
