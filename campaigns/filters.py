"""The search boxes and filters of the campaign list, a campaign's deliveries and a webhook
endpoint's delivery log.

The querysets given are already the current merchant's campaigns (or one of its campaigns'
deliveries); every filter narrows them, and the customer search looks among the merchant's
customers only.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from campaigns.models import (
    Campaign,
    CampaignStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    SkipReason,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEvent,
)
from customers import selectors as customer_selectors
from customers.models import Customer


class CampaignFilter(django_filters.FilterSet):
    """Filters of the campaign list, usable together."""

    q = django_filters.CharFilter(
        field_name="name",
        lookup_expr="icontains",
        label="Search",
        help_text="Name, as you type.",
        widget=forms.TextInput(attrs={"type": "search", "title": "Searches campaign names"}),
    )
    status = django_filters.ChoiceFilter(
        choices=CampaignStatus.choices, label="Status", empty_label="Any"
    )
    channel = django_filters.ChoiceFilter(
        choices=Channel.choices, label="Channel", empty_label="Any"
    )

    #: Shown open in the filter panel; the others are under "More filters".
    primary_fields = ("q", "status", "channel")

    class Meta:
        model = Campaign
        fields: list[str] = []


class DeliveryFilter(django_filters.FilterSet):
    """Filters of a campaign's deliveries: status, skip reason, and the customer (name,
    email, phone or external id, as the customer list searches)."""

    q = django_filters.CharFilter(
        method="filter_customer",
        label="Customer",
        help_text="Name, email, phone or external id, as you type.",
        widget=forms.TextInput(
            attrs={"type": "search", "title": "Searches the customers' names, emails and ids"}
        ),
    )
    status = django_filters.ChoiceFilter(
        choices=DeliveryStatus.choices, label="Status", empty_label="Any"
    )
    skip_reason = django_filters.ChoiceFilter(
        choices=SkipReason.choices, label="Skip reason", empty_label="Any"
    )

    primary_fields = ("q", "status", "skip_reason")

    class Meta:
        model = Delivery
        fields: list[str] = []

    def filter_customer(self, queryset: QuerySet[Delivery], name: str, value: str) -> Any:
        if not value.strip():
            return queryset
        merchant_id = self.merchant_id
        if merchant_id is None:
            return queryset.none()
        # The current merchant's customers only (the deliveries are one of its campaigns').
        customers = Customer.objects.filter(merchant_id=merchant_id)
        found = customer_selectors.customer_search(customers, value)
        return queryset.filter(customer_id__in=found.values("pk"))

    @property
    def merchant_id(self) -> int | None:
        request = self.request
        merchant = getattr(request, "merchant", None) if request is not None else None
        return merchant.pk if merchant is not None else None


class WebhookDeliveryFilter(django_filters.FilterSet):
    """Filters of an endpoint's delivery log (the queryset given is one endpoint's rows)."""

    status = django_filters.ChoiceFilter(
        choices=WebhookDeliveryStatus.choices,
        label="Status",
        empty_label="Any",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    event = django_filters.ChoiceFilter(
        field_name="message__event",
        choices=WebhookEvent.choices,
        label="Event",
        empty_label="Any",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )

    primary_fields = ("status", "event")

    class Meta:
        model = WebhookDelivery
        fields: list[str] = []
