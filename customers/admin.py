"""The Django admin for support staff: every model, across all merchants.

Support staff search and filter across merchants, so every list here names the merchant,
joins what it shows (`list_select_related`), uses autocomplete for foreign keys (thousands
of customers and products would not fit a select box), and skips the full-table count on
the big tables. Derived metrics are read-only: they are recomputed from transactions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from customers.api_tokens import api_token_revoke
from customers.metrics import METRIC_COLUMNS
from customers.models import (
    ApiToken,
    Branch,
    Customer,
    CustomerMetrics,
    CustomerSales,
    CustomerTag,
    LineItem,
    Merchant,
    Product,
    Redemption,
    ScoreChange,
    ScoreSettings,
    ScoreSettingsChange,
    StaffMembership,
    Tag,
    Tier,
    TierRule,
    Transaction,
)
from customers.portal.formatting import format_money
from customers.portal.permissions import Action, support_may
from customers.portal.security import unlock_sign_in
from customers.scores.settings import describe_change, scores_recompute_request
from customers.services import (
    customer_metrics_refresh,
    merchant_metrics_refresh,
    merchant_update,
)

METRIC_FIELDS = (*METRIC_COLUMNS, "updated_at")
#: The score columns of the metrics rows (written by the score service only).
SCORE_FIELDS = (
    "lifecycle_stage",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_group",
    "tier_below_since",
    "smart_segment",
    "p_alive",
    "churn_risk",
    "expected_orders_90d",
    "p_order_30d",
    "predicted_clv",
    "churn_cutoff_on",
)


class StaffMembershipForm(forms.ModelForm):
    """A membership's branches (the reports' limit) must be the merchant's own."""

    class Meta:
        model = StaffMembership
        fields = ["user", "merchant", "role", "branches"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        merchant = cleaned.get("merchant") or (
            self.instance.merchant if self.instance.merchant_id else None
        )
        if merchant is None:
            return cleaned
        others = [b for b in cleaned.get("branches") or [] if b.merchant_id != merchant.pk]
        if others:
            names = ", ".join(str(b) for b in others)
            self.add_error("branches", f"Not branches of {merchant}: {names}.")
        return cleaned


class StaffMembershipInline(admin.TabularInline):
    model = StaffMembership
    form = StaffMembershipForm
    extra = 0
    autocomplete_fields = ["user"]

    def formfield_for_manytomany(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField | None:
        # Offer the merchant's own branches only (the merchant being edited).
        match = request.resolver_match
        if db_field.name == "branches" and match and match.kwargs.get("object_id"):
            kwargs["queryset"] = Branch.objects.filter(merchant_id=match.kwargs["object_id"])
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "time_zone", "currency", "customer_count", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["currency", "time_zone"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [StaffMembershipInline]
    actions = ["recompute_metrics", "recompute_scores"]

    def save_model(self, request: HttpRequest, obj: Merchant, form: Any, change: bool) -> None:
        if change and "time_zone" in form.changed_data:
            # A new zone moves every local day: the service recomputes what holds them.
            new_zone = obj.time_zone
            obj.time_zone = form.initial["time_zone"]
            merchant_update(merchant=obj, time_zone=new_zone)
            return
        super().save_model(request, obj, form, change)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Merchant]:
        return super().get_queryset(request).annotate(_customers=Count("customers"))

    @admin.display(description="Customers", ordering="_customers")
    def customer_count(self, obj: Merchant) -> int:
        return getattr(obj, "_customers", 0)

    def has_recompute_metrics_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.RECOMPUTE_METRICS)

    @admin.action(
        description="Recompute customer metrics of the selected merchants",
        permissions=["recompute_metrics"],
    )
    def recompute_metrics(self, request: HttpRequest, queryset: QuerySet[Merchant]) -> None:
        for merchant in queryset:
            merchant_metrics_refresh(merchant_id=merchant.pk)
        self.message_user(request, f"Recomputed metrics of {queryset.count()} merchant(s).")

    def has_recompute_scores_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.MANAGE_SCORES)

    @admin.action(
        description="Recompute customer scores of the selected merchants (queued)",
        permissions=["recompute_scores"],
    )
    def recompute_scores(self, request: HttpRequest, queryset: QuerySet[Merchant]) -> None:
        for merchant in queryset:
            scores_recompute_request(merchant=merchant)
        self.message_user(
            request, f"Queued a score computation for {queryset.count()} merchant(s)."
        )


@admin.register(StaffMembership)
class StaffMembershipAdmin(admin.ModelAdmin):
    form = StaffMembershipForm
    list_display = ["user", "merchant", "role", "branch_limit", "created_at"]
    list_filter = ["role", "merchant", ("branches", admin.EmptyFieldListFilter)]
    filter_horizontal = ["branches"]
    search_fields = ["user__username", "user__email", "merchant__name", "merchant__slug"]
    list_select_related = ["user", "merchant"]
    autocomplete_fields = ["user", "merchant"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[StaffMembership]:
        return super().get_queryset(request).prefetch_related("branches")

    @admin.display(description="Reports limited to")
    def branch_limit(self, obj: StaffMembership) -> str:
        return ", ".join(b.name for b in obj.branches.all()) or "All branches"


class MerchantScopedAdmin(admin.ModelAdmin):
    """Shared setup of the per-merchant models: filter and autocomplete by merchant."""

    list_filter = ["merchant"]
    list_select_related = ["merchant"]
    autocomplete_fields = ["merchant"]


@admin.register(Branch)
class BranchAdmin(MerchantScopedAdmin):
    list_display = ["code", "name", "merchant"]
    search_fields = ["code", "name", "merchant__slug"]


@admin.register(Tag)
class TagAdmin(MerchantScopedAdmin):
    list_display = ["name", "merchant", "customer_count"]
    search_fields = ["name", "merchant__slug"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        return super().get_queryset(request).annotate(_customers=Count("customers"))

    @admin.display(description="Customers", ordering="_customers")
    def customer_count(self, obj: Tag) -> int:
        return getattr(obj, "_customers", 0)


@admin.register(Tier)
class TierAdmin(MerchantScopedAdmin):
    list_display = ["name", "rank", "merchant"]
    search_fields = ["name", "merchant__slug"]


class CustomerTagInline(admin.TabularInline):
    model = CustomerTag
    extra = 0
    autocomplete_fields = ["tag"]
    verbose_name = "tag"


class CustomerMetricsInline(admin.StackedInline):
    model = CustomerMetrics
    fields = (*METRIC_FIELDS, *SCORE_FIELDS)
    readonly_fields = (*METRIC_FIELDS, *SCORE_FIELDS)
    can_delete = False
    verbose_name = verbose_name_plural = "metrics (read-only, recomputed from transactions)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(MerchantScopedAdmin):
    list_display = [
        "external_id",
        "full_name",
        "email",
        "merchant",
        "tier",
        "orders_count",
        "net_spend",
        "last_purchase_at",
        "joined_at",
    ]
    list_filter = [
        "merchant",
        ("tier", admin.RelatedOnlyFieldListFilter),
        "gender",
        "email_opt_in",
        "sms_opt_in",
        "push_opt_in",
        "joined_at",
    ]
    search_fields = ["external_id", "first_name", "last_name", "email", "phone"]
    list_select_related = ["merchant", "tier", "metrics"]
    autocomplete_fields = ["merchant", "tier", "home_branch"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [CustomerTagInline, CustomerMetricsInline]
    show_full_result_count = False
    date_hierarchy = "joined_at"
    actions = ["recompute_metrics"]
    fieldsets = [
        (None, {"fields": ["merchant", "external_id", "customer_type", "tier", "home_branch"]}),
        (
            "Profile",
            {"fields": ["first_name", "last_name", "email", "phone", "gender", "birth_date"]},
        ),
        ("Consent", {"fields": ["email_opt_in", "sms_opt_in", "push_opt_in"]}),
        (
            "Loyalty",
            {"fields": ["points_balance", "lifetime_points", "joined_at", "last_contacted_at"]},
        ),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Orders", ordering="metrics__orders_count")
    def orders_count(self, obj: Customer) -> int:
        return obj.metrics.orders_count

    @admin.display(description="Net spend", ordering="metrics__net_spend")
    def net_spend(self, obj: Customer) -> Any:
        return obj.metrics.net_spend

    @admin.display(description="Last purchase", ordering="metrics__last_purchase_at")
    def last_purchase_at(self, obj: Customer) -> Any:
        return obj.metrics.last_purchase_at

    def has_recompute_metrics_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.RECOMPUTE_METRICS)

    @admin.action(
        description="Recompute metrics of the selected customers",
        permissions=["recompute_metrics"],
    )
    def recompute_metrics(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        customer_metrics_refresh(customer_ids=ids)
        self.message_user(request, f"Recomputed metrics of {len(ids)} customer(s).")


@admin.register(CustomerTag)
class CustomerTagAdmin(admin.ModelAdmin):
    list_display = ["customer", "tag"]
    search_fields = ["customer__external_id", "tag__name"]
    list_select_related = ["customer", "tag"]
    autocomplete_fields = ["customer", "tag"]
    list_filter = ["tag__merchant"]


@admin.register(CustomerMetrics)
class CustomerMetricsAdmin(admin.ModelAdmin):
    list_display = [
        "customer",
        "merchant",
        *METRIC_FIELDS,
        "lifecycle_stage",
        "rfm_group",
        "smart_segment",
        "p_alive",
        "predicted_clv",
    ]
    list_filter = ["merchant", "lifecycle_stage", "rfm_group", "smart_segment"]
    search_fields = ["customer__external_id", "customer__email", "customer__last_name"]
    list_select_related = ["customer", "merchant"]
    readonly_fields = ["customer", "merchant", *METRIC_FIELDS, *SCORE_FIELDS]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CustomerSales)
class CustomerSalesAdmin(admin.ModelAdmin):
    """The reports' summary, read-only: derived from the transactions by every write (the
    merchants' "Recompute metrics" action rebuilds it with the metrics)."""

    list_display = [
        "customer",
        "merchant",
        "branch",
        "span",
        "starts_on",
        "orders",
        "refunds",
        "order_total",
        "refund_total",
    ]
    list_filter = ["span", "merchant"]
    search_fields = ["customer__external_id", "customer__email", "customer__last_name"]
    list_select_related = ["customer", "merchant", "branch"]
    readonly_fields = [f.name for f in CustomerSales._meta.fields if f.name != "id"]
    show_full_result_count = False
    ordering = ["-starts_on"]

    @admin.display(description="Order total")
    def order_total(self, obj: CustomerSales) -> str:
        return format_money(Decimal(obj.gross_cents) / 100)

    @admin.display(description="Refund total")
    def refund_total(self, obj: CustomerSales) -> str:
        return format_money(Decimal(obj.refund_cents) / 100)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Product)
class ProductAdmin(MerchantScopedAdmin):
    list_display = ["sku", "name", "product_type", "brand", "category", "price", "merchant"]
    list_filter = ["merchant", "product_type", "category"]
    search_fields = ["sku", "name", "brand", "product_type", "category"]


class LineItemInline(admin.TabularInline):
    model = LineItem
    extra = 0
    autocomplete_fields = ["product"]


@admin.register(Transaction)
class TransactionAdmin(MerchantScopedAdmin):
    list_display = ["external_id", "kind", "occurred_at", "total", "customer", "branch", "merchant"]
    list_filter = ["merchant", "kind", ("branch", admin.RelatedOnlyFieldListFilter), "occurred_at"]
    search_fields = ["external_id", "customer__external_id", "customer__email"]
    list_select_related = ["merchant", "customer", "branch"]
    autocomplete_fields = ["merchant", "customer", "branch"]
    date_hierarchy = "occurred_at"
    inlines = [LineItemInline]
    show_full_result_count = False


@admin.register(LineItem)
class LineItemAdmin(admin.ModelAdmin):
    list_display = ["transaction", "product", "quantity", "amount"]
    list_filter = ["transaction__merchant"]
    search_fields = ["transaction__external_id", "product__sku", "product__name"]
    list_select_related = ["transaction", "product"]
    autocomplete_fields = ["transaction", "product"]
    show_full_result_count = False


@admin.register(Redemption)
class RedemptionAdmin(MerchantScopedAdmin):
    list_display = ["external_id", "reward", "points", "redeemed_at", "customer", "merchant"]
    list_filter = ["merchant", "redeemed_at"]
    search_fields = ["external_id", "reward", "customer__external_id"]
    list_select_related = ["merchant", "customer"]
    autocomplete_fields = ["merchant", "customer"]
    date_hierarchy = "redeemed_at"


# --- users: support unlocks sign-ins locked by failed attempts ---------------------------------


class PortalUserAdmin(UserAdmin):
    """Django's user admin, plus "Unlock sign-in" (see `customers.portal.security`)."""

    actions = ["unlock_sign_in"]

    def has_unlock_sign_in_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.UNLOCK_SIGN_IN)

    @admin.action(
        description="Unlock sign-in (forget failed sign-ins)", permissions=["unlock_sign_in"]
    )
    def unlock_sign_in(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        usernames = list(queryset.values_list("username", flat=True))
        removed = unlock_sign_in(usernames=usernames)
        self.message_user(
            request,
            f"Unlocked {len(usernames)} user(s); {removed} failed sign-in record(s) removed.",
        )


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)


# -- customer scores --------------------------------------------------------------------------


@admin.register(ScoreSettings)
class ScoreSettingsAdmin(admin.ModelAdmin):
    """A merchant's score thresholds and cadence, and the state of its last computation.
    Support edits the thresholds here on a merchant's request; the portal's settings page
    validates them as a whole and records who changed what (prefer it)."""

    list_display = ["merchant", "cadence", "status", "computed_as_of", "seconds", "finished_at"]
    list_filter = ["status", "cadence"]
    search_fields = ["merchant__name", "merchant__slug"]
    list_select_related = ["merchant"]
    autocomplete_fields = ["merchant"]
    readonly_fields = [
        "status",
        "queued_at",
        "started_at",
        "finished_at",
        "computed_as_of",
        "scheduled_on",
        "seconds",
        "error",
        "summary",
        "model",
    ]
    actions = ["recompute_scores"]

    def has_recompute_scores_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.MANAGE_SCORES)

    @admin.action(description="Recompute scores now (queued)", permissions=["recompute_scores"])
    def recompute_scores(self, request: HttpRequest, queryset: QuerySet[ScoreSettings]) -> None:
        for settings_row in queryset.select_related("merchant"):
            scores_recompute_request(merchant=settings_row.merchant)
        self.message_user(request, f"Queued {queryset.count()} score computation(s).")


@admin.register(TierRule)
class TierRuleAdmin(MerchantScopedAdmin):
    list_display = ["tier", "merchant", "metric", "period", "threshold"]
    list_filter = ["merchant", "metric", "period"]
    search_fields = ["tier__name", "merchant__slug"]
    list_select_related = ["tier", "merchant"]
    autocomplete_fields = ["merchant", "tier"]


@admin.register(ScoreSettingsChange)
class ScoreSettingsChangeAdmin(admin.ModelAdmin):
    """Who changed a merchant's score settings, when, and what (read-only)."""

    list_display = ["changed_at", "merchant", "changed_by", "summary"]
    list_filter = ["merchant"]
    search_fields = ["merchant__slug", "changed_by__username"]
    list_select_related = ["merchant", "changed_by"]
    readonly_fields = ["merchant", "changed_by", "changed_at", "old", "new", "summary"]

    @admin.display(description="What changed")
    def summary(self, obj: ScoreSettingsChange) -> str:
        return "; ".join(describe_change(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ScoreChange)
class ScoreChangeAdmin(admin.ModelAdmin):
    """Every change of a customer's lifecycle stage or tier (read-only history)."""

    list_display = [
        "changed_at",
        "customer",
        "merchant",
        "kind",
        "from_value",
        "to_value",
        "reason",
    ]
    list_filter = ["kind", "merchant"]
    search_fields = ["customer__external_id", "customer__email", "to_value", "from_value"]
    list_select_related = ["customer", "merchant"]
    readonly_fields = [
        "merchant",
        "customer",
        "kind",
        "from_value",
        "to_value",
        "changed_at",
        "reason",
    ]
    date_hierarchy = "changed_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens, read-only but for "Revoke": the token itself is shown once when it is
    made (`manage.py api_token_create`), and only its hash is stored, so the admin cannot add
    one (it would have nowhere to show it) and never shows the hash."""

    list_display = [
        "merchant",
        "name",
        "prefix",
        "scope",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["merchant", "scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "merchant__slug", "merchant__name"]
    list_select_related = ["merchant"]
    readonly_fields = fields = (
        "merchant",
        "name",
        "prefix",
        "scope",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    actions = ["revoke"]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra_context = {
            **(extra_context or {}),
            "subtitle": (
                "Tokens are created with manage.py api_token_create (or, later, by owners "
                "in the portal), which shows the token once; they cannot be added here."
            ),
        }
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return support_may(request.user, Action.MANAGE_API_TOKENS)

    @admin.action(description="Revoke the selected API tokens", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API token(s).")
