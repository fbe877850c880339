"""Ready-made segments over the customer scores: the six lifecycle stages, the eleven RFM
groups, and one segment per tier. Ordinary dynamic segments (one `in` condition each), so
they refresh like any other, and right after each score computation (which announces a
merchant-level change). `segments.services.segments_add_ready_made` creates them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from customers.models import Merchant, Tier
from customers.scores.definitions import (
    RFM_GROUP_HELP,
    RFM_GROUPS,
    STAGE_DISPLAY_ORDER,
    STAGE_LABELS,
)
from customers.scores.service import score_rules, score_settings_for
from segments.models import Segment

#: The families of ready-made segments, with the button's wording.
FAMILIES = {
    "lifecycle": "Lifecycle stages",
    "rfm": "RFM groups",
    "tiers": "Tiers",
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


def ready_made_segments(*, merchant: Merchant, family: str) -> list[ReadyMade]:
    """The segments of one family, as they would be created for `merchant`."""
    if family == "lifecycle":
        definitions = score_rules(score_settings_for(merchant)).lifecycle.definitions()
        return [
            ReadyMade(
                slug=f"lifecycle-{name.replace('_', '-')}",
                name=f"Lifecycle: {STAGE_LABELS[name]}",
                description=f"Lifecycle stage {STAGE_LABELS[name].lower()}: {definitions[name]}.",
                rules=_one("lifecycle_stage", name),
            )
            for name in STAGE_DISPLAY_ORDER
        ]
    if family == "rfm":
        return [
            ReadyMade(
                slug=f"rfm-{name.replace('_', '-')}",
                name=f"RFM: {label}",
                description=f"RFM group {label.lower()}: {RFM_GROUP_HELP[name]}.",
                rules=_one("rfm_group", name),
            )
            for name, label in RFM_GROUPS
        ]
    if family == "tiers":
        return [
            ReadyMade(
                slug=f"tier-{tier.pk}",
                name=f"Tier: {tier.name}",
                description=f"Customers holding the {tier.name} tier.",
                rules=_one("tier", tier.name),
            )
            for tier in Tier.objects.filter(merchant=merchant).order_by("-rank", "name")
        ]
    raise ValueError(UNKNOWN_FAMILY_ERROR.format(family=family))


def ready_made_missing(*, merchant: Merchant) -> list[tuple[str, str, int, int]]:
    """Per family: (family, label, how many of its segments the merchant lacks, how many
    there are). A segment counts as there when its slug or its name is taken."""
    taken = taken_check(merchant)
    rows = []
    for family, label in FAMILIES.items():
        wanted = ready_made_segments(merchant=merchant, family=family)
        rows.append((family, label, sum(1 for s in wanted if not taken(s)), len(wanted)))
    return rows


def taken_check(merchant: Merchant) -> Any:
    existing = Segment.objects.filter(merchant=merchant)
    slugs = set(existing.values_list("slug", flat=True))
    names = {name.lower() for name in existing.values_list("name", flat=True)}
    return lambda item: item.slug in slugs or item.name.lower() in names
