"""The segment list's search box and filters.

The queryset given is already the current merchant's segments; every filter narrows it.
Statistics filters read the values stored at the last refresh (`Segment.avg_*`), so a list
of hundreds of segments filters without touching a membership.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from customers import selectors as customer_selectors
from customers.models import Merchant
from customers.portal.tenancy import current_merchant
from segments.models import Segment, SegmentKind

YES_NO_CHOICES = (("yes", "Yes"), ("no", "No"))


class DateInput(forms.DateInput):
    input_type = "date"


class NumberInput(forms.NumberInput):
    def __init__(self, **attrs: Any) -> None:
        super().__init__(attrs={"step": "any", **attrs})


def _range(field: str, label: str) -> tuple[django_filters.NumberFilter, ...]:
    return (
        django_filters.NumberFilter(
            field_name=field, lookup_expr="gte", label=f"{label} from", widget=NumberInput()
        ),
        django_filters.NumberFilter(
            field_name=field, lookup_expr="lte", label=f"{label} to", widget=NumberInput()
        ),
    )


class SegmentFilter(django_filters.FilterSet):
    """Filters of the segment list, usable together (each narrows the others)."""

    q = django_filters.CharFilter(
        method="filter_search",
        label="Search",
        help_text="Name or description, as you type.",
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "title": "Searches names and descriptions",
            }
        ),
    )
    active = django_filters.ChoiceFilter(
        choices=YES_NO_CHOICES, method="filter_active", label="Active", empty_label="Any"
    )
    kind = django_filters.ChoiceFilter(choices=SegmentKind.choices, label="Kind", empty_label="Any")
    members_min, members_max = _range("member_count", "Members")
    atv_min, atv_max = _range("avg_transaction_value", "Avg. transaction value")
    transactions_min, transactions_max = _range("avg_transactions", "Avg. number of transactions")
    clv_min, clv_max = _range("avg_clv", "Avg. CLV")
    created_from = django_filters.DateFilter(
        method="filter_created_from", label="Created from", widget=DateInput
    )
    created_to = django_filters.DateFilter(
        method="filter_created_to", label="Created to (inclusive)", widget=DateInput
    )

    #: Shown open in the filter panel; the others are under "More filters".
    primary_fields = ("q", "active", "kind")

    class Meta:
        model = Segment
        fields: list[str] = []

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(*args, request=request, **kwargs)
        if request is None:
            raise LookupError("SegmentFilter needs the request: dates are the merchant's.")
        self.merchant: Merchant = current_merchant(request)

    def filter_search(self, queryset: QuerySet[Segment], name: str, value: str) -> Any:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))

    def filter_active(self, queryset: QuerySet[Segment], name: str, value: str) -> Any:
        if value not in {"yes", "no"}:
            return queryset
        return queryset.filter(is_active=value == "yes")

    def filter_created_from(self, queryset: QuerySet[Segment], name: str, value: Any) -> Any:
        # From 00:00 of that day in the merchant's time zone.
        start, _ = customer_selectors.merchant_day_bounds(merchant=self.merchant, day=value)
        return queryset.filter(created_at__gte=start)

    def filter_created_to(self, queryset: QuerySet[Segment], name: str, value: Any) -> Any:
        # Up to the end of that day in the merchant's time zone (before the next local 00:00).
        _, end = customer_selectors.merchant_day_bounds(merchant=self.merchant, day=value)
        return queryset.filter(created_at__lt=end)
