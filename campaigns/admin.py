"""Support staff's view of offers, content blocks, codes, campaigns, deliveries, contact
rules and webhooks across merchants."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from campaigns.models import (
    Campaign,
    CampaignSegment,
    ContactRules,
    ContentBlock,
    ContentSegment,
    CouponCode,
    Delivery,
    DeliveryStatus,
    Offer,
    OfferSegment,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)
from campaigns.services.campaigns import campaign_delete, campaign_duplicate
from campaigns.services.sending import campaign_resume
from campaigns.services.webhooks import (
    delivery_resend,
    endpoint_delete,
    endpoint_disable,
    endpoint_enable,
)
from customers.portal.permissions import Action, support_may
from segments.admin import ReadOnlyAdmin


class OfferSegmentInline(admin.TabularInline):
    model = OfferSegment
    extra = 0
    autocomplete_fields = ["segment"]


class ContentSegmentInline(admin.TabularInline):
    model = ContentSegment
    extra = 0
    autocomplete_fields = ["segment"]


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "merchant",
        "kind",
        "code_mode",
        "is_active",
        "valid_from",
        "valid_until",
        "codes_given",
    ]
    list_filter = ["kind", "code_mode", "is_active", "merchant"]
    search_fields = ["name", "description", "merchant__name", "merchant__slug"]
    list_select_related = ["merchant"]
    autocomplete_fields = ["merchant"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [OfferSegmentInline]

    @admin.display(description="Codes given")
    def codes_given(self, obj: Offer) -> int:
        return obj.codes.filter(customer__isnull=False).count()


@admin.register(ContentBlock)
class ContentBlockAdmin(admin.ModelAdmin):
    list_display = ["title", "merchant", "is_active", "valid_from", "valid_until"]
    list_filter = ["is_active", "merchant"]
    search_fields = ["title", "body", "merchant__name", "merchant__slug"]
    list_select_related = ["merchant"]
    autocomplete_fields = ["merchant"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [ContentSegmentInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(CouponCode)
class CouponCodeAdmin(admin.ModelAdmin):
    """Codes are added here; who holds one is decided by `offer_code_assign` only."""

    list_display = ["code", "offer", "customer", "assigned_at"]
    list_filter = [("customer", admin.EmptyFieldListFilter), "offer__merchant"]
    search_fields = ["code", "offer__name", "customer__external_id", "customer__email"]
    list_select_related = ["offer", "customer"]
    autocomplete_fields = ["offer"]
    readonly_fields = ["customer", "assigned_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A code once given keeps its text (the customer may have it printed).
        fixed = ["offer", "code"] if obj is not None and obj.customer_id else []
        return [*fixed, *self.readonly_fields]


# --- campaigns ----------------------------------------------------------------------------


class CampaignSegmentInline(admin.TabularInline):
    model = CampaignSegment
    extra = 0
    fields = ["segment", "exclude"]
    readonly_fields = ["segment", "exclude"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    """Campaigns are written in the portal (where content and segments are validated);
    support staff read them, duplicate them and resume an interrupted send."""

    list_display = [
        "name",
        "merchant",
        "channel",
        "status",
        "audience_size",
        "sent_count",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "channel", "merchant"]
    search_fields = ["name", "subject", "merchant__name", "merchant__slug"]
    list_select_related = ["merchant"]
    date_hierarchy = "created_at"
    inlines = [CampaignSegmentInline]
    actions = ["duplicate", "resume"]
    fieldsets = [
        (None, {"fields": ["merchant", "name", "channel", "status", "send_error"]}),
        ("Content", {"fields": ["subject", "body"]}),
        ("Audience", {"fields": ["holdout_percent", "holdout_seed", "attribution_days"]}),
        (
            "Send",
            {"fields": ["send_at", "started_at", "finished_at", "audience_size", "sent_by"]},
        ),
        ("Record", {"fields": ["duplicated_from", "created_by", "created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        sent = Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.SENT))
        return super().get_queryset(request).annotate(sent=sent)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Every field: content and segments are changed in the portal, where they are checked.
        return [str(f) for _, options in self.fieldsets for f in options["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A started campaign is kept with its deliveries (its results read them).
        allowed = support_may(request.user, Action.SEND_CAMPAIGNS)
        return allowed and (obj is None or obj.is_editable)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            campaign_delete(campaign=campaign)

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        campaign_delete(campaign=obj)

    @admin.display(description="Sent", ordering="sent")
    def sent_count(self, obj: Campaign) -> int:
        return getattr(obj, "sent", 0)

    def has_draft_campaigns_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.DRAFT_CAMPAIGNS)

    def has_send_campaigns_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.SEND_CAMPAIGNS)

    @admin.action(description="Duplicate as a new draft", permissions=["draft_campaigns"])
    def duplicate(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        copies = [campaign_duplicate(campaign=c, user=request.user) for c in queryset]
        self.message_user(
            request, f"{len(copies)} draft(s) made: " + ", ".join(c.name for c in copies)
        )

    @admin.action(
        description="Resume sending (requeue interrupted deliveries)",
        permissions=["send_campaigns"],
    )
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        resumed = [campaign_resume(campaign_id=c.pk) for c in queryset]
        self.message_user(
            request,
            f"{sum(resumed)} interrupted deliveries requeued; senders started for "
            f"{len(resumed)} campaign(s) that are sending.",
            messages.SUCCESS,
        )


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Deliveries are written by the send only: read-only here."""

    list_display = [
        "campaign",
        "customer",
        "channel",
        "status",
        "skip_reason",
        "attempts",
        "sent_at",
        "short_error",
    ]
    list_filter = ["status", "skip_reason", "channel", "campaign__merchant"]
    search_fields = ["customer__external_id", "customer__email", "campaign__name", "error"]
    list_select_related = ["campaign", "customer"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Error")
    def short_error(self, obj: Delivery) -> str:
        return obj.error[:80]


@admin.register(ContactRules)
class ContactRulesAdmin(admin.ModelAdmin):
    list_display = ["merchant", "cap_messages", "cap_days", "quiet_start", "quiet_end"]
    search_fields = ["merchant__name", "merchant__slug"]
    autocomplete_fields = ["merchant"]
    readonly_fields = ["updated_at"]


# --- webhooks -----------------------------------------------------------------------------

MSG_SUPPORT_REASON = "Switched off by support ({user})."


#: What the admin shows of an endpoint, read-only (never the secret).
ENDPOINT_FIELDS = (
    "merchant",
    "url",
    "description",
    "events",
    "is_active",
    "failing_since",
    "disabled_at",
    "disabled_reason",
    "created_at",
    "created_by",
)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Owners register and change endpoints in the portal (where the address is checked);
    support staff read them, switch them off and on, and remove them. The signing secret is
    never shown here: it is not a field of the form, and owners rotate it in the portal."""

    list_display = ["url", "merchant", "events_shown", "is_active", "failing_since", "created_at"]
    list_filter = ["is_active", "merchant"]
    search_fields = ["url", "description", "merchant__name", "merchant__slug"]
    list_select_related = ["merchant"]
    actions = ["switch_on", "switch_off"]
    fields = ENDPOINT_FIELDS
    readonly_fields = ENDPOINT_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        endpoint_delete(endpoint=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_delete(endpoint=endpoint)

    @admin.display(description="Events")
    def events_shown(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    def has_manage_webhooks_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.MANAGE_WEBHOOKS)

    @admin.action(description="Switch on", permissions=["manage_webhooks"])
    def switch_on(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        endpoints = list(queryset.filter(is_active=False))
        for endpoint in endpoints:
            endpoint_enable(endpoint=endpoint)
        self.message_user(
            request,
            f"{len(endpoints)} endpoint(s) switched on; what was waiting is sent now.",
            messages.SUCCESS,
        )

    @admin.action(description="Switch off", permissions=["manage_webhooks"])
    def switch_off(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        endpoints = list(queryset.filter(is_active=True))
        reason = MSG_SUPPORT_REASON.format(user=request.user.get_username())
        for endpoint in endpoints:
            endpoint_disable(endpoint=endpoint, reason=reason)
        self.message_user(request, f"{len(endpoints)} endpoint(s) switched off.", messages.SUCCESS)


@admin.register(WebhookMessage)
class WebhookMessageAdmin(ReadOnlyAdmin):
    """Messages are made by the events they report: read-only here."""

    list_display = ["key", "merchant", "event", "size", "created_at"]
    list_filter = ["event", "merchant"]
    search_fields = ["key"]
    list_select_related = ["merchant"]
    show_full_result_count = False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log, written by the senders: read-only here, but a delivery can be sent
    again ("Resend", refused while its endpoint is switched off)."""

    list_display = [
        "message",
        "endpoint",
        "status",
        "attempts",
        "response_status",
        "duration_ms",
        "next_attempt_at",
        "short_error",
        "created_at",
    ]
    list_filter = ["status", "message__event", "endpoint__merchant"]
    search_fields = ["message__key", "endpoint__url"]
    list_select_related = ["message", "endpoint"]
    show_full_result_count = False
    actions = ["resend"]

    def has_manage_webhooks_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.MANAGE_WEBHOOKS)

    @admin.display(description="Error")
    def short_error(self, obj: WebhookDelivery) -> str:
        return obj.error[:80]

    @admin.action(description="Resend", permissions=["manage_webhooks"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent, refused = 0, 0
        for delivery in queryset.select_related("endpoint"):
            try:
                delivery_resend(delivery=delivery)
            except ValidationError:
                refused += 1
            else:
                sent += 1
        self.message_user(request, f"{sent} delivery(ies) sent again.", messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                f"{refused} not sent: their endpoint is switched off (switch it on first).",
                messages.WARNING,
            )
