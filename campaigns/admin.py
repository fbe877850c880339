"""Support staff's view of offers, content blocks, codes, campaigns, deliveries and contact
rules across merchants."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
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
)
from campaigns.services.campaigns import campaign_delete, campaign_duplicate
from campaigns.services.sending import campaign_resume
from customers.portal.permissions import Action, support_may


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
