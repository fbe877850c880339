"""Segment templates: ready-made rule trees the builder can start from.

A plain list; each entry has `name`, `description` and `rules` (contract JSON, version 1).
`tests/segments/test_templates_catalog.py` checks that every one validates.
"""

from __future__ import annotations

from typing import Any

from django.utils.text import slugify

TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "Munchie lovers",
        "description": "Bought an edible in the last 30 days.",
        "rules": {
            "match": "all",
            "conditions": [
                {
                    "field": "purchased",
                    "products": {"product_types": ["edible"]},
                    "op": "gte",
                    "value": 1,
                    "window_days": 30,
                }
            ],
        },
    },
    {
        "name": "Phat Panda preroll lovers",
        "description": "More than 15 Phat Panda prerolls, the latest within 14 days.",
        "rules": {
            "match": "all",
            "conditions": [
                {
                    "field": "purchased",
                    "products": {"product_types": ["preroll"], "brands": ["Phat Panda"]},
                    "op": "gt",
                    "value": 15,
                    "last_within_days": 14,
                }
            ],
        },
    },
    {
        "name": "Vendor day",
        "description": "Customers of type vendor.",
        "rules": {
            "match": "all",
            "conditions": [{"field": "customer_type", "op": "in", "value": ["vendor"]}],
        },
    },
    {
        "name": "Locals 21-30",
        "description": "Tagged local and aged 21 to 30.",
        "rules": {
            "match": "all",
            "conditions": [
                {"field": "tags", "op": "has_any", "value": ["local"]},
                {"field": "age", "op": "between", "value": [21, 30]},
            ],
        },
    },
    {
        "name": "Bronze: spend 500+",
        "description": "Total spend of at least 500.",
        "rules": {
            "match": "all",
            "conditions": [{"field": "total_spend", "op": "gte", "value": 500}],
        },
    },
    {
        "name": "Gold: spend 1000+",
        "description": "Total spend of at least 1000.",
        "rules": {
            "match": "all",
            "conditions": [{"field": "total_spend", "op": "gte", "value": 1000}],
        },
    },
    {
        "name": "Birthday this month",
        "description": "Customers whose birthday falls in the current month.",
        "rules": {
            "match": "all",
            "conditions": [{"field": "birthday", "op": "this_month", "value": None}],
        },
    },
    {
        "name": "Not contacted in 30 days",
        "description": "Last contacted more than 30 days ago, or never contacted.",
        "rules": {
            "match": "any",
            "conditions": [
                {"field": "last_contacted", "op": "before_days", "value": 30},
                {"field": "last_contacted", "op": "never", "value": None},
            ],
        },
    },
]


def template_key(template: dict[str, Any]) -> str:
    return slugify(template["name"])


def find_template(key: str) -> dict[str, Any] | None:
    return next((t for t in TEMPLATES if template_key(t) == key), None)
