"""Check the per-customer rows the segment engine reads against their sources, in Python.

`assert_segment_rows_exact(merchant)` recomputes, without SQL aggregates, what
`CustomerMetrics` (the copy of the profile and the tag ids) and `CustomerProductStats`
(units and latest order per customer and product) must hold, and compares.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from customers.metrics import PROFILE_COLUMNS
from customers.models import (
    Customer,
    CustomerMetrics,
    CustomerProductStats,
    LineItem,
    TransactionKind,
)


def expected_profiles(merchant: Any) -> dict[int, dict[str, Any]]:
    profiles = {}
    for customer in Customer.objects.filter(merchant=merchant).prefetch_related("tags"):
        row = {column: getattr(customer, column) for column in PROFILE_COLUMNS}
        row["tag_ids"] = sorted(tag.pk for tag in customer.tags.all())
        profiles[customer.pk] = row
    return profiles


def stored_profiles(merchant: Any) -> dict[int, dict[str, Any]]:
    return {
        row.pk: {
            **{column: getattr(row, column) for column in PROFILE_COLUMNS},
            "tag_ids": list(row.tag_ids),
        }
        for row in CustomerMetrics.objects.filter(merchant=merchant)
    }


def expected_product_stats(merchant: Any) -> dict[tuple[int, int], tuple[int, Any, int]]:
    units: dict[tuple[int, int], int] = defaultdict(int)
    last: dict[tuple[int, int], Any] = {}
    items = LineItem.objects.filter(
        transaction__merchant=merchant, transaction__kind=TransactionKind.PURCHASE
    ).select_related("transaction")
    for item in items:
        key = (item.transaction.customer_id, item.product_id)
        units[key] += item.quantity
        at = item.transaction.occurred_at
        last[key] = max(last.get(key, at), at)
    return {key: (units[key], last[key], merchant.pk) for key in units}


def stored_product_stats(merchant: Any) -> dict[tuple[int, int], tuple[int, Any, int]]:
    rows = CustomerProductStats.objects.filter(customer__merchant=merchant)
    return {
        (r.customer_id, r.product_id): (r.units, r.last_purchased_at, r.merchant_id) for r in rows
    }


def assert_segment_rows_exact(merchant: Any) -> None:
    assert stored_profiles(merchant) == expected_profiles(merchant)
    assert stored_product_stats(merchant) == expected_product_stats(merchant)
