"""Template filters for numbers as people read them (`customers.portal.formatting`):
`{{ n|count }}`, `{{ amount|money:currency }}`, `{{ share|percent }}`, `{{ x|number }}`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from customers.portal.formatting import (
    EMPTY,
    format_count,
    format_money,
    format_number,
    format_percent,
)
from customers.scores.definitions import RFM_GROUP_LABELS, STAGE_LABELS

register = template.Library()


@register.filter
def count(value: Any) -> str:
    return format_count(value)


@register.filter
def money(value: Any, currency: str = "") -> str:
    return format_money(value, currency)


@register.filter
def percent(value: Any) -> str:
    return format_percent(value)


@register.filter
def number(value: Any) -> str:
    return format_number(value)


@register.filter
def share_of(part: Any, whole: Any) -> str:
    """`{{ part|share_of:whole }}`: the part's share of the whole as a percentage ("—"
    when the whole is zero)."""
    if not whole:
        return format_percent(None)
    return format_percent(Decimal(part) / Decimal(whole))


@register.filter
def stage_label(name: str | None) -> str:
    """A lifecycle stage's wording ("at_risk" -> "At risk"); none -> "—"."""
    return STAGE_LABELS.get(name or "", EMPTY)


@register.filter
def group_label(name: str | None) -> str:
    """An RFM group's wording ("needs_attention" -> "Needs attention")."""
    return RFM_GROUP_LABELS.get(name or "", name or EMPTY)


@register.filter
def change(value: Any) -> str:
    """A relative change as a signed percentage: `0.125` -> "+12.5%"; None -> "—"."""
    if value is None or value == "":
        return format_percent(None)
    text = format_percent(abs(value))
    return f"+{text}" if value > 0 else f"-{text}" if value < 0 else text
