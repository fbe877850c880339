"""Template filters for numbers as people read them (`customers.portal.formatting`):
`{{ n|count }}`, `{{ amount|money:currency }}`, `{{ share|percent }}`, `{{ x|number }}`."""

from __future__ import annotations

from typing import Any

from django import template

from customers.portal.formatting import format_count, format_money, format_number, format_percent

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
