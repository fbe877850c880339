"""The customer list's search box and filters.

Every choice list (tiers, tags, branches, customer types) comes from the current merchant
only, so a submitted id of another merchant's tier, tag or branch fails validation ("Select a
valid choice") and the list shows no rows instead of leaking or ignoring it silently.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from customers import selectors
from customers.models import Customer, Merchant
from customers.portal.tenancy import current_merchant
from customers.scores.definitions import RFM_GROUPS, STAGE_DISPLAY_ORDER, STAGE_LABELS
from customers.scores.smart import SMART_SEGMENTS

#: The lifecycle filter's choice for customers without a stage (no order yet).
NO_STAGE = "none"

YES_NO_CHOICES = (("yes", "Yes"), ("no", "No"))


def _tiers(request: HttpRequest | None) -> Any:
    return selectors.merchant_tiers(merchant=_merchant(request))


def _tags(request: HttpRequest | None) -> Any:
    return selectors.merchant_tags(merchant=_merchant(request))


def _branches(request: HttpRequest | None) -> Any:
    return selectors.merchant_branches(merchant=_merchant(request))


def _merchant(request: HttpRequest | None) -> Merchant:
    if request is None:
        raise LookupError("CustomerFilter needs the request: its choices are per merchant.")
    return current_merchant(request)


class DateInput(forms.DateInput):
    input_type = "date"


class CustomerFilter(django_filters.FilterSet):
    """Filters of the customer list. The queryset given must already be the merchant's."""

    q = django_filters.CharFilter(
        method="filter_search",
        label="Search",
        help_text="Name, email, phone or external id, as you type.",
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "title": "Searches names, emails, phone numbers and external ids",
                "autofocus": True,
            }
        ),
    )
    tier = django_filters.ModelMultipleChoiceFilter(
        queryset=_tiers, label="Tier", distinct=False, widget=forms.CheckboxSelectMultiple
    )
    customer_type = django_filters.MultipleChoiceFilter(
        label="Customer type", widget=forms.CheckboxSelectMultiple
    )
    tags = django_filters.ModelMultipleChoiceFilter(
        queryset=_tags,
        method="filter_tags",
        label="Tags (any of)",
        widget=forms.SelectMultiple(attrs={"data-searchable": "", "data-placeholder": "Any tag"}),
    )
    home_branch = django_filters.ModelMultipleChoiceFilter(
        queryset=_branches,
        label="Home branch",
        distinct=False,
        widget=forms.CheckboxSelectMultiple,
    )
    email_opt_in = django_filters.ChoiceFilter(
        choices=YES_NO_CHOICES, method="filter_yes_no", label="Email opt-in", empty_label="Any"
    )
    sms_opt_in = django_filters.ChoiceFilter(
        choices=YES_NO_CHOICES, method="filter_yes_no", label="SMS opt-in", empty_label="Any"
    )
    push_opt_in = django_filters.ChoiceFilter(
        choices=YES_NO_CHOICES, method="filter_yes_no", label="Push opt-in", empty_label="Any"
    )
    joined_from = django_filters.DateFilter(
        method="filter_joined_from", label="Joined from", widget=DateInput
    )
    joined_to = django_filters.DateFilter(
        method="filter_joined_to", label="Joined to (inclusive)", widget=DateInput
    )
    spend_min = django_filters.NumberFilter(
        field_name="metrics__net_spend", lookup_expr="gte", label="Net spend at least"
    )
    spend_max = django_filters.NumberFilter(
        field_name="metrics__net_spend", lookup_expr="lte", label="Net spend at most"
    )
    lifecycle_stage = django_filters.MultipleChoiceFilter(
        label="Lifecycle stage",
        choices=[
            *((name, STAGE_LABELS[name]) for name in STAGE_DISPLAY_ORDER),
            (NO_STAGE, "No order yet"),
        ],
        method="filter_stage",
    )
    rfm_group = django_filters.MultipleChoiceFilter(
        label="RFM group", choices=RFM_GROUPS, field_name="metrics__rfm_group"
    )
    smart_segment = django_filters.MultipleChoiceFilter(
        label="Smart segment", choices=SMART_SEGMENTS, field_name="metrics__smart_segment"
    )

    #: Shown open in the filter panel; the others are under "More filters".
    primary_fields = ("q", "tier", "lifecycle_stage", "customer_type", "tags")

    class Meta:
        model = Customer
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.merchant = _merchant(self.request)
        self.filters["customer_type"].extra["choices"] = [
            (value, value) for value in selectors.merchant_customer_types(merchant=self.merchant)
        ]

    def filter_stage(self, queryset: QuerySet[Customer], name: str, value: list[str]) -> Any:
        if not value:
            return queryset
        wanted = Q(metrics__lifecycle_stage__in=[v for v in value if v != NO_STAGE])
        if NO_STAGE in value:
            wanted |= Q(metrics__lifecycle_stage__isnull=True)
        return queryset.filter(wanted)

    def filter_search(self, queryset: QuerySet[Customer], name: str, value: str) -> Any:
        return selectors.customer_search(queryset, value)

    def filter_tags(self, queryset: QuerySet[Customer], name: str, value: list[Any]) -> Any:
        if not value:
            return queryset
        return selectors.customers_with_any_tag(queryset, list(value))

    def filter_yes_no(self, queryset: QuerySet[Customer], name: str, value: str) -> Any:
        if value not in {"yes", "no"}:
            return queryset
        return queryset.filter(**{name: value == "yes"})

    def filter_joined_from(self, queryset: QuerySet[Customer], name: str, value: Any) -> Any:
        # From 00:00 of that day in the merchant's time zone.
        start, _ = selectors.merchant_day_bounds(merchant=self.merchant, day=value)
        return queryset.filter(joined_at__gte=start)

    def filter_joined_to(self, queryset: QuerySet[Customer], name: str, value: Any) -> Any:
        # Up to the end of that day in the merchant's time zone (before the next local 00:00).
        _, end = selectors.merchant_day_bounds(merchant=self.merchant, day=value)
        return queryset.filter(joined_at__lt=end)
