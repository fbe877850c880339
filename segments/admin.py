"""The Django admin for support staff: segments of every merchant, their freshness, and
their memberships and history (read-only: those rows are written by the refresh and the
membership services only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from customers.portal.permissions import Action, support_may
from segments.models import MembershipEvent, Segment, SegmentMembership, SegmentVersion
from segments.selectors import segment_removal_plan
from segments.services import (
    UPDATABLE_FIELDS,
    segment_update,
    segments_queue_refresh,
    segments_remove,
)

FRESHNESS_FIELDS = (
    "refresh_status",
    "refresh_started_at",
    "last_refreshed_at",
    "last_refresh_duration_ms",
    "last_refresh_error",
    "next_refresh_at",
    "member_count",
)
#: The statistics stored at refresh (`services.segment_stats_refresh`), shown read-only.
STATISTICS_FIELDS = (
    "stats_computed_at",
    "avg_transaction_value",
    "avg_transactions",
    "avg_spending",
    "revenue_share",
    "avg_clv",
    "avg_churn_risk",
    "avg_p_order_30d",
    "predicted_count",
    "activity_ratio",
    "revenue_30d",
    "buyers_30d",
    "stats_member_count",
    "registered_count",
    "purchasers_count",
    "email_reachable_count",
    "sms_reachable_count",
    "push_reachable_count",
)


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "merchant",
        "kind",
        "is_active",
        "member_count",
        "schedule",
        "refresh_status",
        "last_refreshed_at",
        "next_refresh_at",
    ]
    list_filter = ["merchant", "kind", "is_active", "refresh_cadence", "refresh_status"]
    search_fields = ["name", "slug", "merchant__name", "merchant__slug"]
    list_select_related = ["merchant"]
    autocomplete_fields = ["merchant", "created_by"]
    readonly_fields = [
        *FRESHNESS_FIELDS,
        *STATISTICS_FIELDS,
        "schedule",
        "definition_version",
        "created_at",
        "updated_at",
    ]
    actions = ["refresh_now"]
    #: The definition's rules are edited in the portal's builder, where they are validated.
    definition_readonly = [
        "merchant",
        "slug",
        "kind",
        "rules",
        "rules_schema_version",
        "created_by",
    ]
    fieldsets = [
        (None, {"fields": ["merchant", "name", "slug", "description", "kind", "is_active"]}),
        ("Rules", {"fields": ["rules", "rules_schema_version", "definition_version"]}),
        (
            "Schedule (in the merchant's time zone)",
            {"fields": ["schedule", "refresh_cadence", "refresh_weekday", "refresh_hour"]},
        ),
        ("Freshness (written by the refresh)", {"fields": FRESHNESS_FIELDS}),
        (
            "Statistics of the members (written by the refresh)",
            {"fields": STATISTICS_FIELDS, "classes": ["collapse"]},
        ),
        ("Record", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Segments are created in the portal's builder, which validates their rules.
        return False

    @admin.display(description="Schedule", ordering="refresh_cadence")
    def schedule(self, obj: Segment) -> str:
        """ "Weekly on Sunday at 03:00 (America/Toronto)": the hour is the merchant's."""
        if obj.is_dynamic and obj.refresh_cadence != "hourly":
            return f"{obj.schedule_text} ({obj.merchant.time_zone})"
        return obj.schedule_text

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return support_may(request.user, Action.REMOVE_SEGMENTS)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """The admin's "are you sure?" page, with the removal plan's refusals as protected
        objects: a segment that another segment uses cannot be deleted here either."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        segments = list(objs)
        by_merchant: dict[int, list[Segment]] = {}
        for segment in segments:
            by_merchant.setdefault(segment.merchant_id, []).append(segment)
        refusals = [
            message
            for group in by_merchant.values()
            for message in segment_removal_plan(segments=group).messages()
        ]
        return deleted, counts, perms_needed, [*protected, *refusals]

    def delete_model(self, request: HttpRequest, obj: Segment) -> None:
        segments_remove(segments=[obj], user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        by_merchant: dict[int, list[Segment]] = {}
        for segment in queryset:
            by_merchant.setdefault(segment.merchant_id, []).append(segment)
        for group in by_merchant.values():
            segments_remove(segments=group, user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*self.definition_readonly, *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        # Through the service, so an edit bumps the version, records it and requeues.
        changes = {f: form.cleaned_data[f] for f in form.changed_data if f in UPDATABLE_FIELDS}
        original = Segment.objects.get(pk=obj.pk)
        segment_update(segment=original, user=request.user, **changes)
        obj.refresh_from_db()

    def has_operate_segments_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.OPERATE_SEGMENTS)

    @admin.action(description="Refresh now", permissions=["operate_segments"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        segments = list(queryset)
        queued = segments_queue_refresh(segments=segments)
        skipped = len(segments) - len(queued)
        message = f"Queued a refresh of {len(queued)} segment(s)."
        if skipped:
            message += f" Skipped {skipped} manual or inactive segment(s)."
        self.message_user(request, message)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the services only: viewable, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(ReadOnlyAdmin):
    list_display = ["customer", "segment", "since"]
    list_filter = ["segment__merchant"]
    search_fields = ["customer__external_id", "segment__name", "segment__slug"]
    list_select_related = ["customer", "segment"]
    show_full_result_count = False


@admin.register(MembershipEvent)
class MembershipEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "customer", "segment", "kind", "reason", "definition_version"]
    list_filter = ["kind", "reason", "segment__merchant"]
    search_fields = ["customer__external_id", "segment__name", "segment__slug"]
    list_select_related = ["customer", "segment"]
    show_full_result_count = False


@admin.register(SegmentVersion)
class SegmentVersionAdmin(ReadOnlyAdmin):
    list_display = ["segment", "version", "name", "created_by", "created_at"]
    list_filter = ["segment__merchant"]
    search_fields = ["segment__name", "segment__slug", "name"]
    list_select_related = ["segment", "created_by"]
