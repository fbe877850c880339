"""Segments: dynamic (a rule tree) or manual (members picked or uploaded), their
materialized memberships with entry/exit history, and their definition history.

A dynamic segment's `rules` follow the rule contract (`docs/segment-rules.md`); the engine
in `segments.engine` compiles them to one queryset over the merchant's customers. Every edit
of the definition bumps `definition_version`, so a refresh that started from older rules
notices and does not write its result (see `segments.services`).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from customers.models import Customer, Merchant

RULES_SCHEMA_VERSION = 1


class SegmentKind(models.TextChoices):
    DYNAMIC = "dynamic", "Dynamic (rules)"
    MANUAL = "manual", "Manual (picked or uploaded)"


class RefreshCadence(models.TextChoices):
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


#: The hour of a daily or weekly refresh, as a clock shows it.
REFRESH_HOURS = [(hour, f"{hour:02d}:00") for hour in range(24)]


class RefreshStatus(models.TextChoices):
    NEVER = "never", "Never refreshed"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Refreshing"
    OK = "ok", "Up to date"
    FAILED = "failed", "Failed"


class Segment(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=SegmentKind.choices, default=SegmentKind.DYNAMIC)
    #: The rule tree (dynamic segments); `{}` for manual segments.
    rules = models.JSONField(default=dict, blank=True)
    #: The version of the rule JSON schema the tree was written in.
    rules_schema_version = models.PositiveSmallIntegerField(default=RULES_SCHEMA_VERSION)
    #: Bumped by every edit of the definition; a refresh of an older version is discarded.
    definition_version = models.PositiveIntegerField(default=1)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    # Schedule: hourly, daily (default) or weekly on `refresh_weekday` (0 = Monday), at
    # `refresh_hour` merchant-local time for daily and weekly.
    refresh_cadence = models.CharField(
        max_length=16, choices=RefreshCadence.choices, default=RefreshCadence.DAILY
    )
    refresh_weekday = models.PositiveSmallIntegerField(
        default=Weekday.SUNDAY,
        choices=Weekday.choices,
        validators=[MaxValueValidator(6)],
        help_text="For a weekly refresh.",
    )
    refresh_hour = models.PositiveSmallIntegerField(
        default=3,
        choices=REFRESH_HOURS,
        validators=[MaxValueValidator(23)],
        help_text="In the merchant's time zone, for a daily or weekly refresh.",
    )

    # Freshness, written by the refresh service.
    refresh_status = models.CharField(
        max_length=16, choices=RefreshStatus.choices, default=RefreshStatus.NEVER
    )
    refresh_started_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_refresh_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_refresh_error = models.TextField(blank=True)
    next_refresh_at = models.DateTimeField(null=True, blank=True)
    member_count = models.PositiveIntegerField(default=0)

    # Statistics of the members' purchases, computed when the membership is written by a
    # full refresh or by hand (`services.segment_stats_refresh`; definitions in
    # docs/segment-list.md), stored so the list filters and sorts on them cheaply. NULL
    # until computed, and where undefined (no members, no orders).
    avg_transaction_value = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    avg_transactions = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    avg_spending = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    revenue_share = models.DecimalField(
        max_digits=7, decimal_places=4, null=True, blank=True, help_text="0 to 1"
    )
    # Predictions (`CustomerMetrics.predicted_clv`, `churn_risk`, `p_order_30d`): means over
    # the members that have one (NULL predictions, no order or no fit, are left out), NULL
    # when none has.
    #: Mean predicted customer lifetime value (the page's LTV), in the merchant's currency.
    avg_clv = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    #: Mean churn risk (the page's risk rate).
    avg_churn_risk = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="0 to 1"
    )
    #: Mean probability of at least one order in the next 30 days.
    avg_p_order_30d = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="0 to 1"
    )
    #: How many members had a prediction (churn risk) when these were computed.
    predicted_count = models.PositiveIntegerField(null=True, blank=True)
    #: The share of members with an order in the 30 days up to the computation.
    activity_ratio = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="0 to 1"
    )
    #: The members' revenue (orders minus refunds) in the 30 merchant-local days up to the
    #: day of the last statistics, and how many of them ordered then: the dashboard's
    #: "segments with the most revenue" read these instead of joining every membership.
    revenue_30d = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    buyers_30d = models.PositiveIntegerField(null=True, blank=True)
    # Reachability, counts of members (definitions in docs/segment-list.md; the channels are
    # the downloads' `exports.REACHABLE`). `stats_member_count` is the member count they were
    # taken from, the denominator of their shares: incremental updates change
    # `member_count` between full refreshes, not these.
    stats_member_count = models.PositiveIntegerField(null=True, blank=True)
    registered_count = models.PositiveIntegerField(null=True, blank=True)
    purchasers_count = models.PositiveIntegerField(null=True, blank=True)
    email_reachable_count = models.PositiveIntegerField(null=True, blank=True)
    sms_reachable_count = models.PositiveIntegerField(null=True, blank=True)
    push_reachable_count = models.PositiveIntegerField(null=True, blank=True)
    stats_computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "slug"], name="uniq_segment_slug"),
            models.CheckConstraint(
                condition=models.Q(kind__in=SegmentKind.values), name="segment_kind_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["merchant", "is_active", "next_refresh_at"], name="segment_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_dynamic(self) -> bool:
        return self.kind == SegmentKind.DYNAMIC

    @property
    def schedule_text(self) -> str:
        """The refresh schedule in words: "Hourly", "Daily at 03:00", "Weekly on Sunday at
        03:00" (merchant-local), "Manual: changed by hand" for a manual segment."""
        if not self.is_dynamic:
            return "Manual: changed by hand"
        if self.refresh_cadence == RefreshCadence.HOURLY:
            return "Hourly"
        at = f"at {self.refresh_hour:02d}:00"
        if self.refresh_cadence == RefreshCadence.WEEKLY:
            return f"Weekly on {Weekday(self.refresh_weekday).label} {at}"
        return f"Daily {at}"


class SegmentSizeSnapshot(models.Model):
    """A segment's member count on a merchant-local day: the size-over-time chart.

    Written once a day for every segment (the beat task `snapshot_segment_sizes`) and after
    every full refresh (the day's row is updated), so a new segment has a point at once.
    """

    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="snapshots", db_index=False
    )
    day = models.DateField()
    member_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["day"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "day"], name="uniq_segment_snapshot_day"),
        ]

    def __str__(self) -> str:
        return f"{self.segment_id} on {self.day}: {self.member_count}"


class SegmentMembership(models.Model):
    """A customer currently in a segment, since when."""

    # Written a few hundred thousand at a time by a refresh, so: no single-column indexes
    # ((segment, customer) and (customer, segment) below lead with each), and no database
    # constraints, whose checks locked and rewrote each member's customer row (5 s of a
    # 100,000-member refresh). Only `segments.services` writes these rows, from the
    # segment's own merchant's customers, and Django cascades deletes itself.
    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        related_name="memberships",
        db_index=False,
        db_constraint=False,
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="segment_memberships",
        db_index=False,
        db_constraint=False,
    )
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "customer"], name="uniq_segment_member"),
        ]
        indexes = [models.Index(fields=["customer", "segment"], name="membership_customer_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.segment_id}"


class MembershipReason(models.TextChoices):
    RULE = "rule", "Rules"
    MANUAL = "manual", "Added or removed by hand"
    UPLOAD = "upload", "Uploaded list"
    API = "api", "Through the API"


class MembershipEventKind(models.TextChoices):
    ENTRY = "entry", "Entered"
    EXIT = "exit", "Left"


class MembershipEvent(models.Model):
    """One entry into or exit from a segment; the history behind `SegmentMembership`."""

    # Indexed by (segment, time) and (customer, time) below, not alone; no database
    # constraints, as for memberships.
    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="segment_events",
        db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(max_length=8, choices=MembershipEventKind.choices)
    reason = models.CharField(max_length=16, choices=MembershipReason.choices)
    occurred_at = models.DateTimeField(default=timezone.now)
    definition_version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["segment", "occurred_at"], name="event_segment_time_idx"),
            models.Index(fields=["customer", "occurred_at"], name="event_customer_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.kind} {self.segment_id}"


class SegmentVersion(models.Model):
    """A saved version of a segment's definition, for history, diff and restore."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "version"], name="uniq_segment_version"),
        ]

    def __str__(self) -> str:
        return f"{self.segment_id} v{self.version}"
