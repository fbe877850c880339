"""The tables of the campaign list, a campaign's deliveries and a webhook endpoint's delivery
log: display (`render_*`),
export (`value_*`) and sorting (stored fields, empty values last, the primary key last)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_tables2 as tables
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from campaigns.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    SkipReason,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from customers.models import Merchant
from customers.portal.formatting import EMPTY, format_count
from customers.portal.tables import (
    DEFAULT_PAGE_SIZE,
    PAGE_SIZES,
    ClippedColumn,
    NumColumn,
    SortColumn,
)

#: Bootstrap badge classes of a campaign's status.
STATUS_BADGES = {
    CampaignStatus.DRAFT: "text-bg-secondary",
    CampaignStatus.SCHEDULED: "text-bg-info",
    CampaignStatus.SENDING: "text-bg-warning",
    CampaignStatus.SENT: "text-bg-success",
}
#: The same for a delivery's status.
DELIVERY_BADGES = {
    "queued": "text-bg-light border",
    "sending": "text-bg-warning",
    "sent": "text-bg-success",
    "failed": "text-bg-danger",
    "skipped": "text-bg-secondary",
}


#: How much of a failed delivery's error its row shows (the whole is its title, and exported).
ERROR_SHOWN = 60


def _local(value: dt.datetime, tz: dt.tzinfo) -> str:
    return timezone.localtime(value, tz).strftime("%Y-%m-%d %H:%M")


def _naive_local(value: dt.datetime | None, tz: dt.tzinfo) -> dt.datetime | None:
    """The merchant's wall-clock time, for a spreadsheet (which has no time zones)."""
    return timezone.localtime(value, tz).replace(tzinfo=None) if value else None


class PagedTable(tables.Table):
    """Only the offered page sizes: `?per_page=1000000` must not load the whole list."""

    def paginate(self, *args: Any, per_page: Any = None, **kwargs: Any) -> None:
        if per_page not in PAGE_SIZES:
            per_page = DEFAULT_PAGE_SIZE
        super().paginate(*args, per_page=per_page, **kwargs)


class CampaignTable(PagedTable):
    """The merchant's campaigns (`campaigns.selectors.campaign_list`: the counts annotated,
    the segments prefetched). Pass `merchant=` (its time zone)."""

    name = SortColumn(verbose_name="Name", attrs={"td": {"class": "cell-wrap"}})
    channel = SortColumn(verbose_name="Channel")
    status = SortColumn(verbose_name="Status")
    segments = tables.Column(
        accessor="pk",
        verbose_name="Segments",
        orderable=False,
        attrs={"td": {"class": "cell-wrap"}},
    )
    when = SortColumn(
        accessor="created_at",
        verbose_name="Sent / scheduled",
        order_by=("started_at", "send_at"),
        empty_values=(),
        attrs={"td": {"class": "text-nowrap"}},
    )
    sent = NumColumn(accessor="sent_count", verbose_name="Sent")
    failed = NumColumn(accessor="failed_count", verbose_name="Failed")
    skipped = NumColumn(accessor="skipped_count", verbose_name="Skipped")
    created = SortColumn(
        accessor="created_at", verbose_name="Created", attrs={"td": {"class": "text-nowrap"}}
    )

    class Meta:
        model = Campaign
        fields = ()
        template_name = "customers/partials/table.html"
        attrs = {"class": "table table-sm table-hover align-middle", "id": "campaigns"}
        row_attrs = {"data-campaign": lambda record: record.pk}
        empty_text = "No campaigns match."
        order_by_field = "sort"
        default = EMPTY

    def __init__(self, *args: Any, merchant: Merchant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz = merchant.tzinfo

    def render_name(self, record: Campaign) -> str:
        return format_html(
            '<a href="{}" hx-boost="false">{}</a>',
            reverse("campaigns:detail", args=[record.pk]),
            record.name,
        )

    def render_channel(self, record: Campaign) -> str:
        return record.get_channel_display()

    def render_status(self, record: Campaign) -> str:
        return format_html(
            '<span class="badge {}">{}</span>',
            STATUS_BADGES.get(CampaignStatus(record.status), "text-bg-secondary"),
            record.get_status_display(),
        )

    def render_segments(self, record: Campaign) -> str:
        links = list(record.targeting.all())
        if not links:
            return EMPTY
        included = format_html_join(
            ", ", "{}", ((link.segment.name,) for link in links if not link.exclude)
        )
        excluded = [link.segment.name for link in links if link.exclude]
        if not excluded:
            return included
        return format_html(
            '{} <span class="text-muted small">(not {})</span>', included, ", ".join(excluded)
        )

    def render_when(self, record: Campaign) -> str:
        if record.started_at is not None:
            return _local(record.started_at, self.tz)
        if record.status == CampaignStatus.SCHEDULED and record.send_at is not None:
            return format_html(
                "{} <span class='text-muted small'>(scheduled)</span>",
                _local(record.send_at, self.tz),
            )
        return EMPTY

    def render_sent(self, record: Campaign) -> str:
        if record.started_at is None:
            return EMPTY  # nothing sent or skipped before the send starts
        pending = getattr(record, "pending_count", 0)
        sent = format_count(getattr(record, "sent_count", 0))
        if pending:
            return format_html(
                '{} <span class="text-muted small">({} to go)</span>', sent, format_count(pending)
            )
        return sent

    def render_failed(self, record: Campaign, value: int) -> str:
        return format_count(value) if record.started_at is not None else EMPTY

    def render_skipped(self, record: Campaign, value: int) -> str:
        return format_count(value) if record.started_at is not None else EMPTY

    def render_created(self, value: dt.datetime) -> str:
        return _local(value, self.tz)

    # Export --------------------------------------------------------------------------------

    def value_status(self, record: Campaign) -> str:
        return str(record.get_status_display())

    def value_segments(self, record: Campaign) -> str:
        links = list(record.targeting.all())
        included = ", ".join(link.segment.name for link in links if not link.exclude)
        excluded = ", ".join(link.segment.name for link in links if link.exclude)
        return f"{included} (not {excluded})" if excluded else included

    def value_when(self, record: Campaign) -> dt.datetime | None:
        return _naive_local(record.started_at or record.send_at, self.tz)

    def value_sent(self, record: Campaign) -> int:
        return int(getattr(record, "sent_count", 0))

    def value_created(self, value: dt.datetime) -> dt.datetime | None:
        return _naive_local(value, self.tz)


class DeliveryTable(PagedTable):
    """One campaign's deliveries, each linking its customer's page. Pass `merchant=`.

    On screen the status cell says why (the skip reason, the error) and the time cell when
    (sent, or waiting until); the export has each of those in a column of its own (the
    invisible columns)."""

    customer = SortColumn(
        accessor="customer__last_name",
        verbose_name="Customer",
        order_by=("customer__last_name", "customer__first_name"),
        attrs={"td": {"class": "cell-wrap"}},
        empty_values=(),
    )
    external_id = tables.Column(
        accessor="customer__external_id", verbose_name="External id", visible=False
    )
    address = ClippedColumn(accessor="pk", verbose_name="Sent to", orderable=False)
    status = SortColumn(
        verbose_name="Status",
        order_by=("status", "skip_reason"),
        attrs={"td": {"class": "cell-wrap"}},
    )
    attempts = NumColumn(verbose_name="Attempts")
    sent_at = SortColumn(
        verbose_name="Sent at", empty_values=(), order_by=("sent_at", "not_before")
    )
    skip_reason = tables.Column(verbose_name="Skip reason", visible=False)
    error = tables.Column(verbose_name="Error", visible=False)
    not_before = tables.Column(verbose_name="Not before", visible=False)

    class Meta:
        model = Delivery
        fields = ()
        template_name = "customers/partials/table.html"
        attrs = {"class": "table table-sm table-hover align-middle", "id": "deliveries"}
        empty_text = "No deliveries match."
        order_by_field = "sort"
        default = EMPTY

    def __init__(self, *args: Any, merchant: Merchant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz = merchant.tzinfo

    def _address(self, record: Delivery) -> str:
        customer = record.customer
        return {"email": customer.email, "sms": customer.phone}.get(
            record.channel, customer.external_id
        )

    def render_customer(self, record: Delivery) -> str:
        return format_html(
            '<a href="{}" hx-boost="false">{}</a> <span class="small text-muted text-nowrap">{}'
            "</span>",
            reverse("customers:detail", args=[record.customer_id]),
            record.customer.full_name or "(no name)",
            record.customer.external_id,
        )

    def render_address(self, record: Delivery) -> str:
        address = self._address(record)
        return format_html('<span title="{}">{}</span>', address, address) if address else EMPTY

    def render_status(self, record: Delivery) -> str:
        badge = format_html(
            '<span class="badge {}">{}</span>',
            DELIVERY_BADGES.get(record.status, "text-bg-secondary"),
            record.get_status_display(),
        )
        if record.skip_reason:
            why = str(SkipReason(record.skip_reason).label)
            return format_html('{} <span class="small">{}</span>', badge, why)
        if record.error:
            short = Truncator(record.error).chars(ERROR_SHOWN)
            return format_html(
                '{} <span class="small text-danger" title="{}">{}</span>',
                badge,
                record.error,
                short,
            )
        return badge

    def render_sent_at(self, record: Delivery) -> str:
        if record.sent_at is not None:
            return _local(record.sent_at, self.tz)
        if record.status == "queued" and record.not_before is not None:
            return format_html(
                '<span class="small text-muted">waits until</span> {}',
                _local(record.not_before, self.tz),
            )
        return EMPTY

    # Export --------------------------------------------------------------------------------

    def value_customer(self, record: Delivery) -> str:
        return record.customer.full_name

    def value_address(self, record: Delivery) -> str:
        return self._address(record)

    def value_status(self, value: str) -> str:
        return value

    def value_sent_at(self, record: Delivery) -> dt.datetime | None:
        return _naive_local(record.sent_at, self.tz)

    def value_not_before(self, value: dt.datetime | None) -> dt.datetime | None:
        return _naive_local(value, self.tz)


#: Bootstrap badge classes of a webhook delivery's status.
WEBHOOK_BADGES = {
    WebhookDeliveryStatus.PENDING: "text-bg-light border",
    WebhookDeliveryStatus.SENDING: "text-bg-warning",
    WebhookDeliveryStatus.SUCCEEDED: "text-bg-success",
    WebhookDeliveryStatus.FAILED: "text-bg-danger",
}


class WebhookDeliveryTable(PagedTable):
    """One endpoint's delivery log, newest first: each message (linking its payload), how its
    attempts went, and a Resend button. Pass `endpoint=` (its merchant's time zone, and
    whether it is on: an endpoint switched off cannot resend)."""

    created_at = SortColumn(verbose_name="Made", attrs={"td": {"class": "text-nowrap"}})
    event = SortColumn(accessor="message__event", verbose_name="Event")
    key = SortColumn(
        accessor="message__key",
        verbose_name="Message",
        attrs={"td": {"class": "cell-clip cell-narrow text-nowrap"}},
    )
    size = NumColumn(accessor="message__size", verbose_name="Events")
    status = SortColumn(verbose_name="Status", empty_values=())
    attempts = NumColumn(verbose_name="Attempts")
    response_status = SortColumn(
        verbose_name="Answer",
        empty_values=(),
        order_by=("response_status", "duration_ms"),
        attrs={"td": {"class": "text-nowrap"}},
    )
    error = ClippedColumn(
        verbose_name="Last error", attrs={"td": {"class": "cell-clip cell-narrow text-nowrap"}}
    )
    resend = tables.Column(
        accessor="pk", verbose_name="", orderable=False, exclude_from_export=True
    )
    # On screen the status cell says when a pending one is tried next and the answer cell
    # how long the attempt took; the export has them in columns of their own.
    duration_ms = tables.Column(verbose_name="Took (ms)", visible=False)
    next_attempt_at = tables.Column(verbose_name="Next attempt", visible=False)

    class Meta:
        model = WebhookDelivery
        fields = ()
        template_name = "customers/partials/table.html"
        attrs = {"class": "table table-sm table-hover align-middle", "id": "webhook-deliveries"}
        row_attrs = {"data-delivery": lambda record: record.pk}
        empty_text = "No deliveries match."
        order_by_field = "sort"
        default = EMPTY

    def __init__(self, *args: Any, endpoint: WebhookEndpoint, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.endpoint = endpoint
        self.tz = endpoint.merchant.tzinfo

    def render_created_at(self, value: dt.datetime) -> str:
        return _local(value, self.tz)

    def render_event(self, record: WebhookDelivery) -> str:
        message = record.message
        return format_html('<code title="{}">{}</code>', message.get_event_display(), message.event)

    def value_event(self, record: WebhookDelivery) -> str:
        return record.message.event

    def render_key(self, record: WebhookDelivery) -> str:
        return format_html(
            '<a href="{}" hx-boost="false" class="font-monospace small" title="{}">{}</a>',
            reverse("webhooks:delivery", args=[self.endpoint.pk, record.pk]),
            f"{record.message.key}: see the payload",
            record.message.key,
        )

    def render_status(self, record: WebhookDelivery) -> str:
        badge = format_html(
            '<span class="badge {}">{}</span>',
            WEBHOOK_BADGES.get(WebhookDeliveryStatus(record.status), "text-bg-secondary"),
            record.get_status_display(),
        )
        if record.status != WebhookDeliveryStatus.PENDING:
            return badge
        return format_html(
            '{}<div class="small text-muted text-nowrap">next: {}</div>', badge, self._next(record)
        )

    def _next(self, record: WebhookDelivery) -> str:
        if not self.endpoint.is_active:
            return "when switched on"
        if record.next_attempt_at <= timezone.now():
            return "now"
        return _local(record.next_attempt_at, self.tz)

    def render_size(self, value: int) -> str:
        return format_count(value)

    def render_response_status(self, record: WebhookDelivery) -> str:
        if record.attempts == 0 or record.duration_ms is None:
            return EMPTY
        status = str(record.response_status) if record.response_status is not None else EMPTY
        return format_html(
            '{} <span class="small text-muted">{} ms</span>',
            status,
            format_count(record.duration_ms),
        )

    def render_resend(self, record: WebhookDelivery) -> str:
        if record.status == WebhookDeliveryStatus.SENDING:
            return EMPTY
        if not self.endpoint.is_active:
            return format_html(
                '<button type="button" class="btn btn-sm btn-outline-secondary" disabled '
                'title="{}">Resend</button>',
                "Switch the endpoint on to resend",
            )
        request = getattr(self, "request", None)
        return format_html(
            '<form method="post" action="{}" class="d-inline" hx-boost="false">'
            '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
            '<button type="submit" class="btn btn-sm btn-outline-primary" aria-label="{}">'
            "Resend</button></form>",
            reverse("webhooks:resend", args=[self.endpoint.pk, record.pk]),
            get_token(request) if request is not None else "",
            f"Resend {record.message.key}",
        )

    # Export --------------------------------------------------------------------------------

    def value_created_at(self, value: dt.datetime) -> dt.datetime | None:
        return _naive_local(value, self.tz)

    def value_status(self, record: WebhookDelivery) -> str:
        return str(record.get_status_display())

    def value_response_status(self, record: WebhookDelivery) -> int | None:
        return record.response_status

    def value_next_attempt_at(self, record: WebhookDelivery) -> dt.datetime | None:
        pending = record.status == WebhookDeliveryStatus.PENDING
        return _naive_local(record.next_attempt_at, self.tz) if pending else None
