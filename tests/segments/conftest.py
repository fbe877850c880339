"""Helpers for the rule engine tests: a pinned `as_of`, rule builders, result readers."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from customers.models import Customer
from segments import engine

UTC = dt.UTC
#: Monday 15 June 2026, 12:00 in Toronto (EDT, UTC-4): "today" is 2026-06-15.
AS_OF = dt.datetime(2026, 6, 15, 16, 0, tzinfo=UTC)


def toronto(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """An aware instant from Toronto wall-clock fields."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("America/Toronto"))


def rules(*conditions: dict[str, Any], match: str = "all", negate: bool = False) -> dict[str, Any]:
    return {"match": match, "negate": negate, "conditions": list(conditions)}


def cond(field: str, op: str, value: Any = None, **extras: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value, **extras}


def ext_ids(qs) -> list[str]:
    return sorted(qs.values_list("external_id", flat=True))


@pytest.fixture
def evaluate(merchant):
    """evaluate(rules, fast=False) -> sorted external ids matching at AS_OF."""

    def run(tree: dict[str, Any], *, fast: bool = False, as_of: dt.datetime = AS_OF) -> list[str]:
        return ext_ids(
            engine.matching_customers(merchant=merchant, rules=tree, as_of=as_of, exact=not fast)
        )

    return run


@pytest.fixture
def check(merchant, evaluate):
    """check(condition, expected): the condition matches exactly `expected` (exact and fast
    paths), and its negation matches exactly the other customers of the merchant."""

    def run(condition: dict[str, Any], expected: list[str]) -> None:
        everyone = set(
            Customer.objects.filter(merchant=merchant).values_list("external_id", flat=True)
        )
        assert evaluate(rules(condition)) == sorted(expected)
        assert evaluate(rules(condition), fast=True) == sorted(expected)
        assert evaluate(rules(condition, negate=True)) == sorted(everyone - set(expected))
        assert evaluate(rules(condition, negate=True), fast=True) == sorted(
            everyone - set(expected)
        )

    return run


def builder_form(**fields: str) -> dict[str, str]:
    """The builder's form as a browser posts it (settings and the rule JSON), with `fields`
    laid over the defaults."""
    return {
        "name": "Phat Panda fans",
        "slug": "",
        "description": "",
        "is_active": "on",
        "refresh_cadence": "daily",
        "refresh_weekday": "6",
        "refresh_hour": "3",
        **fields,
    }
