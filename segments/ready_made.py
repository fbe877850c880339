"""Ready-made segments over the customer scores: the six lifecycle stages, the eleven RFM
groups, and one segment per tier. Ordinary dynamic segments (one `in` condition each), so
they refresh like any other, and right after each score computation (which announces a
merchant-level change). `segments.services.segments_add_ready_made` creates them."""

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
from segments.models import Segment

#: The families of ready-made segments, with the button's wording.
FAMILIES = {
    "lifecycle": "lifecycle stages",
    "rfm": "RFM groups",
    "tiers": "tiers",
}
UNKNOWN_FAMILY_ERROR = "Unknown ready-made segments {family!r}: use lifecycle, rfm or tiers."


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
