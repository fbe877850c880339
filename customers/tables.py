"""The customer list's table: display (`render_*`), export (`value_*`) and sorting.

Sorting is always on database fields (`metrics__net_spend`, `tier__rank`...), with empty
values (no tier, no purchase yet) last in both directions and the primary key as the final
tie-breaker, so pages are stable and SQLite and PostgreSQL sort alike.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import django_tables2 as tables
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from customers import selectors
from customers.models import Customer, Merchant
from customers.portal.formatting import EMPTY, format_money
from customers.portal.tables import (
    DEFAULT_PAGE_SIZE,
    PAGE_SIZES,
    ClippedColumn,
    NumColumn,
    SortColumn,
)
from customers.scores.definitions import RFM_GROUP_LABELS, STAGE_DISPLAY_ORDER, STAGE_LABELS


class TagsColumn(SortColumn):
    """Sorted by the customer's alphabetically first tag (case-insensitive), untagged last."""

    def order(self, queryset: QuerySet[Any], is_descending: bool) -> tuple[QuerySet[Any], bool]:
        key = F("_first_tag")
        return (
            queryset.alias(_first_tag=selectors.first_tag_name()).order_by(
                key.desc(nulls_last=True) if is_descending else key.asc(nulls_last=True),
                "-pk" if is_descending else "pk",
            ),
            True,
        )


class StageColumn(SortColumn):
    """Sorted in the order customers live through the stages (new, repeat, regular, loyal,
    at risk, dormant), customers without a stage last."""

    def order(self, queryset: QuerySet[Any], is_descending: bool) -> tuple[QuerySet[Any], bool]:
        key = F("_stage_order")
        return (
            queryset.alias(
                _stage_order=Case(
                    *(
                        When(metrics__lifecycle_stage=name, then=Value(index))
                        for index, name in enumerate(STAGE_DISPLAY_ORDER)
                    ),
                    default=None,
                    output_field=IntegerField(),
                )
            ).order_by(
                key.desc(nulls_last=True) if is_descending else key.asc(nulls_last=True),
                "-pk" if is_descending else "pk",
            ),
            True,
        )


class CustomerTable(tables.Table):
    """The merchant's customers. Pass `merchant=` (currency and time zone of the cells)."""

    external_id = SortColumn(verbose_name="External id")
    name = SortColumn(
        accessor="last_name",
        verbose_name="Name",
        order_by=("last_name", "first_name"),
        empty_values=(),
        attrs={"td": {"class": "cell-wrap"}},
    )
    email = ClippedColumn(verbose_name="Email")
    phone = SortColumn(verbose_name="Phone")
    tier = ClippedColumn(
        accessor="tier__name",
        verbose_name="Tier",
        order_by=("tier__rank",),
        attrs={"td": {"class": "cell-clip cell-narrow"}},
    )
    customer_type = SortColumn(verbose_name="Type")
    home_branch = SortColumn(
        accessor="home_branch__name", verbose_name="Home branch", order_by=("home_branch__name",)
    )
    joined = SortColumn(accessor="joined_at", verbose_name="Joined")
    orders = NumColumn(accessor="metrics__orders_count", verbose_name="Orders")
    net_spend = NumColumn(accessor="metrics__net_spend", verbose_name="Net spend")
    avg_order_value = NumColumn(accessor="metrics__avg_order_value", verbose_name="Avg order")
    last_purchase = SortColumn(accessor="metrics__last_purchase_at", verbose_name="Last purchase")
    lifecycle_stage = StageColumn(
        accessor="metrics__lifecycle_stage", verbose_name="Stage", order_by=("_stage_order",)
    )
    rfm_score = SortColumn(
        accessor="metrics__rfm_recency",
        verbose_name="RFM",
        order_by=("metrics__rfm_recency", "metrics__rfm_frequency", "metrics__rfm_monetary"),
    )
    rfm_group = SortColumn(accessor="metrics__rfm_group", verbose_name="RFM group")
    opt_ins = SortColumn(
        accessor="pk",
        verbose_name="Opt-ins",
        order_by=("email_opt_in", "sms_opt_in", "push_opt_in"),
    )
    # An order_by of its own: with the accessor's "pk", django-tables2 took the queryset's
    # "pk" tie-breaker for a sort by tags and marked the column sorted on the first view.
    tags = TagsColumn(accessor="pk", verbose_name="Tags", order_by=("_first_tag",))

    class Meta:
        model = Customer
        fields = ()
        template_name = "customers/partials/table.html"
        attrs = {"class": "table table-sm table-hover align-middle text-nowrap"}
        empty_text = "No customers match."
        order_by_field = "sort"
        order_by = ("external_id",)  # the first view says how it is sorted
        default = EMPTY

    def __init__(self, *args: Any, merchant: Merchant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.merchant = merchant
        self.tz = merchant.tzinfo
        # The currency goes in the money headers, so exported numbers stay plain numbers.
        for name, label in (("net_spend", "Net spend"), ("avg_order_value", "Avg order")):
            if name in self.columns:  # (not when hidden)
                self.columns[name].column.verbose_name = f"{label} ({merchant.currency})"

    def paginate(self, *args: Any, per_page: Any = None, **kwargs: Any) -> None:
        # Only the offered page sizes: `?per_page=1000000` must not load the whole list.
        if per_page not in PAGE_SIZES:
            per_page = DEFAULT_PAGE_SIZE
        super().paginate(*args, per_page=per_page, **kwargs)

    # Display -------------------------------------------------------------------------------

    def render_name(self, record: Customer) -> str:
        # A full page load: the table container boosts its (sort and page) links with htmx.
        return format_html(
            '<a href="{}" hx-boost="false">{}</a>',
            reverse("customers:detail", args=[record.pk]),
            record.full_name or "(no name)",
        )

    def render_joined(self, value: dt.datetime) -> str:
        return timezone.localtime(value, self.tz).date().isoformat()

    def render_net_spend(self, value: Decimal) -> str:
        return format_money(value, self.merchant.currency)

    def render_avg_order_value(self, value: Decimal) -> str:
        return format_money(value, self.merchant.currency)

    def render_last_purchase(self, value: dt.datetime) -> str:
        return timezone.localtime(value, self.tz).strftime("%Y-%m-%d %H:%M")

    def render_lifecycle_stage(self, value: str) -> str:
        return STAGE_LABELS.get(value, value)

    def render_rfm_score(self, record: Customer) -> str:
        metrics = record.metrics
        return f"{metrics.rfm_recency}-{metrics.rfm_frequency}-{metrics.rfm_monetary}"

    def render_rfm_group(self, value: str) -> str:
        return RFM_GROUP_LABELS.get(value, value)

    def render_opt_ins(self, record: Customer) -> str:
        channels = _opt_ins(record)
        if not channels:
            return format_html('<span class="text-muted">{}</span>', "none")
        return format_html_join(
            " ", '<span class="badge text-bg-success">{}</span>', ((c,) for c in channels)
        )

    def render_tags(self, record: Customer) -> str:
        names = [tag.name for tag in record.tags.all()]
        if not names:
            return EMPTY
        return format_html_join(
            " ", '<span class="badge text-bg-secondary">{}</span>', ((n,) for n in names)
        )

    # Export --------------------------------------------------------------------------------

    def value_name(self, record: Customer) -> str:
        return record.full_name

    def value_joined(self, value: dt.datetime) -> dt.date:
        return timezone.localtime(value, self.tz).date()

    def value_net_spend(self, value: Decimal) -> Decimal:
        return value

    def value_avg_order_value(self, value: Decimal) -> Decimal:
        return value

    def value_last_purchase(self, value: dt.datetime) -> dt.datetime:
        # Spreadsheets have no time zones: the merchant-local wall time, naive.
        return timezone.localtime(value, self.tz).replace(tzinfo=None)

    def value_opt_ins(self, record: Customer) -> str:
        return ", ".join(_opt_ins(record))

    def value_tags(self, record: Customer) -> str:
        return ", ".join(tag.name for tag in record.tags.all())


def _opt_ins(customer: Customer) -> list[str]:
    return [
        label
        for label, on in (
            ("Email", customer.email_opt_in),
            ("SMS", customer.sms_opt_in),
            ("Push", customer.push_opt_in),
        )
        if on
    ]
