"""Support staff's view of offers and content blocks across merchants."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from campaigns.models import ContentBlock, ContentSegment, CouponCode, Offer, OfferSegment


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
