"""Outbound use of segments: offers (rewards, discounts, coupons with a shared code or a pool
of unique codes) and content blocks for the merchant's app or site, each shown only to the
members of chosen segments (`campaigns.selectors.visible_offers`); and campaigns (email, SMS,
push) sent to segments, one `Delivery` row per campaign and customer, under the merchant's
`ContactRules` (frequency cap, quiet hours).

Targeting: an offer or block is visible to a customer who is a current member of at least
one of its included segments and of none of its excluded ones (exclusion wins), while it is
active and today (the merchant's) is within its validity dates.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from customers.models import Customer, Merchant, check_same_merchant
from segments.models import Segment

INACTIVE_TARGET_ERROR = (
    '"{segment}" is inactive (not refreshed): activate it before aiming anything at it.'
)


class OfferKind(models.TextChoices):
    REWARD = "reward", "Reward"
    DISCOUNT = "discount", "Discount"
    COUPON = "coupon", "Coupon"


class CodeMode(models.TextChoices):
    NONE = "none", "No code"
    SHARED = "shared", "One code for everyone"
    UNIQUE = "unique", "A unique code per customer"


class Targeted(models.Model):
    """What offers and content blocks share: the merchant, a name, validity and activity."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    is_active = models.BooleanField(default=True)
    #: Merchant-local dates, both included; empty: from always / until further notice.
    valid_from = models.DateField(null=True, blank=True)
    valid_until = models.DateField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Offer(Targeted):
    """A reward, discount or coupon that only some segments see."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=OfferKind.choices, default=OfferKind.REWARD)
    code_mode = models.CharField(max_length=8, choices=CodeMode.choices, default=CodeMode.NONE)
    #: The code everyone gets (`code_mode` shared).
    shared_code = models.CharField(max_length=64, blank=True)
    segments: models.ManyToManyField[Segment, OfferSegment] = models.ManyToManyField(
        Segment, through="OfferSegment", related_name="+"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "name"], name="uniq_offer_name"),
            models.CheckConstraint(
                condition=models.Q(valid_until__isnull=True)
                | models.Q(valid_from__isnull=True)
                | models.Q(valid_until__gte=models.F("valid_from")),
                name="offer_valid_dates_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ContentBlock(Targeted):
    """A piece of content (title, body, image, link) for the merchant's app or site."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    image_url = models.URLField(max_length=500, blank=True)
    link = models.URLField(max_length=500, blank=True)
    segments: models.ManyToManyField[Segment, ContentSegment] = models.ManyToManyField(
        Segment, through="ContentSegment", related_name="+"
    )

    class Meta:
        ordering = ["title"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(valid_until__isnull=True)
                | models.Q(valid_from__isnull=True)
                | models.Q(valid_until__gte=models.F("valid_from")),
                name="content_valid_dates_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class Targeting(models.Model):
    """One segment an offer or block is aimed at (`exclude`: kept away from)."""

    # RESTRICT: a segment in use cannot be deleted on its own (the removal plan names its
    # users first); it still goes with its merchant, whose offers go too.
    segment = models.ForeignKey(Segment, on_delete=models.RESTRICT, related_name="+")
    exclude = models.BooleanField(default=False)

    class Meta:
        abstract = True

    def target(self) -> Targeted | Campaign | None:
        raise NotImplementedError

    def clean(self) -> None:
        """The segment is the offer's (or block's) merchant's; an included one is active (an
        inactive segment is not refreshed: its members would be stale)."""
        target = self.target()
        if target is None or not self.segment_id:
            return
        check_same_merchant(target.merchant_id, segment=self.segment)
        if not self.exclude and not self.segment.is_active:
            raise ValidationError(
                {"segment": INACTIVE_TARGET_ERROR.format(segment=self.segment.name)}
            )


class OfferSegment(Targeting):
    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="targeting")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["offer", "segment"], name="uniq_offer_segment"),
        ]

    def __str__(self) -> str:
        return f"{self.offer_id} {'excludes' if self.exclude else 'includes'} {self.segment_id}"

    def target(self) -> Targeted | None:
        return self.offer if self.offer_id else None


class ContentSegment(Targeting):
    block = models.ForeignKey(ContentBlock, on_delete=models.CASCADE, related_name="targeting")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["block", "segment"], name="uniq_content_segment"),
        ]

    def __str__(self) -> str:
        return f"{self.block_id} {'excludes' if self.exclude else 'includes'} {self.segment_id}"

    def target(self) -> Targeted | None:
        return self.block if self.block_id else None


class CouponCode(models.Model):
    """One code of an offer's pool (`code_mode` unique), given to at most one customer."""

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(max_length=64)
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["offer", "code"], name="uniq_coupon_code"),
            # A customer holds at most one code of an offer: the database says so too.
            models.UniqueConstraint(
                fields=["offer", "customer"],
                condition=models.Q(customer__isnull=False),
                name="uniq_coupon_customer",
            ),
        ]
        indexes = [
            models.Index(
                fields=["offer"],
                condition=models.Q(customer__isnull=True),
                name="coupon_free_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.code


# --- campaigns ----------------------------------------------------------------------------


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "Push"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"


def _holdout_seed() -> int:
    return secrets.randbelow(2**31)


class Campaign(models.Model):
    """A message (email, SMS or push) to the members of chosen segments.

    Drafted, then sent now or scheduled for a merchant-local time. Sending snapshots the
    audience as one `Delivery` per member (queued, or skipped with the reason); from then on
    the campaign is `sending`, then `sent`, and cannot be edited or removed (duplicate it).
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.EMAIL)
    #: The email's subject, the push notification's title (unused for SMS).
    subject = models.CharField(max_length=200, blank=True)
    #: The email's text, the SMS text, the push notification's body; with placeholders
    #: (`campaigns.content`).
    body = models.TextField(blank=True)
    #: A random, stable control group: this share of the eligible audience receives nothing.
    holdout_percent = models.PositiveSmallIntegerField(
        default=10, validators=[MaxValueValidator(50)], help_text="0 to 50 % of the eligible."
    )
    #: Decides who is in the holdout (`campaigns.audience`); a duplicate draws its own.
    holdout_seed = models.PositiveIntegerField(default=_holdout_seed, editable=False)
    #: Orders within this many days after the send count as conversions.
    attribution_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(90)]
    )
    status = models.CharField(
        max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    #: When a scheduled campaign starts (aware; chosen as a merchant-local time).
    send_at = models.DateTimeField(null=True, blank=True)
    #: When the audience was snapshotted (the send started), and when the last delivery ended.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Why a scheduled send did not start (it went back to draft); cleared by a start.
    send_error = models.TextField(blank=True)
    #: Members when the send started (every delivery row, skipped ones included).
    audience_size = models.PositiveIntegerField(null=True, blank=True)
    duplicated_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    segments: models.ManyToManyField[Segment, CampaignSegment] = models.ManyToManyField(
        Segment, through="CampaignSegment", related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(channel__in=Channel.values), name="campaign_channel_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(holdout_percent__lte=50), name="campaign_holdout_max"
            ),
        ]
        indexes = [
            models.Index(fields=["merchant", "status"], name="campaign_status_idx"),
            models.Index(
                fields=["send_at"],
                condition=models.Q(status="scheduled"),
                name="campaign_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_editable(self) -> bool:
        """Drafts and scheduled campaigns (not started) can be changed and removed."""
        return self.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)


class CampaignSegment(Targeting):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="targeting")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "segment"], name="uniq_campaign_segment"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {'excludes' if self.exclude else 'includes'} {self.segment_id}"

    def target(self) -> Campaign | None:
        return self.campaign if self.campaign_id else None


class ContactRules(models.Model):
    """A merchant's limits on messages, across campaigns: the frequency cap per channel and
    the quiet hours of SMS and push (merchant-local; a window may cross midnight). Without a
    row the defaults apply (`campaigns.audience.contact_rules_of`)."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    #: At most this many messages per customer and channel in `cap_days` days (0: no cap).
    cap_messages = models.PositiveSmallIntegerField(
        default=3, validators=[MaxValueValidator(100)], help_text="0: no cap."
    )
    cap_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(90)]
    )
    #: SMS and push wait while the merchant-local time is in [quiet_start, quiet_end);
    #: equal times: no quiet hours.
    quiet_start = models.TimeField(default=dt.time(21, 0))
    quiet_end = models.TimeField(default=dt.time(9, 0))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "contact rules"

    def __str__(self) -> str:
        return f"contact rules of {self.merchant_id}"


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class SkipReason(models.TextChoices):
    NO_CONSENT = "no_consent", "No consent for the channel"
    NO_ADDRESS = "no_address", "No email address or phone number"
    FREQUENCY_CAP = "frequency_cap", "Frequency cap reached"
    HOLDOUT = "holdout", "Holdout (control group)"


class Delivery(models.Model):
    """One customer of a campaign's audience: at most one per campaign and customer (the
    database says so), so a retried task or two overlapping ticks never send twice.

    Written when the send starts (the audience snapshot): `queued`, or `skipped` with the
    reason. A sender claims queued rows (`sending`), sends, and records `sent` or `failed`
    (with the error) one row at a time; a channel error puts the row back in the queue with
    `not_before` later (backoff) until the attempts run out.
    """

    # Every status change rewrites each index (the status is indexed, so no update is HOT):
    # no index on the campaign alone, the unique (campaign, customer) one leads with it.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    #: The campaign's, copied so the frequency cap reads one index.
    channel = models.CharField(max_length=8, choices=Channel.choices)
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices)
    skip_reason = models.CharField(max_length=16, choices=SkipReason.choices, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    #: Not sent before this time (quiet hours, backoff after a channel error).
    not_before = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "customer"], name="uniq_delivery"),
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "status"], name="delivery_status_idx"),
            # The frequency cap: a customer's messages on a channel since a time.
            models.Index(
                fields=["customer", "channel", "created_at"],
                condition=models.Q(status__in=["queued", "sending", "sent"]),
                name="delivery_cap_idx",
            ),
            # The senders' queue.
            models.Index(
                fields=["campaign", "not_before"],
                condition=models.Q(status="queued"),
                name="delivery_queue_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.customer_id} {self.status}"


# --- webhooks -----------------------------------------------------------------------------


class WebhookEvent(models.TextChoices):
    """What an endpoint can subscribe to (the `type` of each message)."""

    SEGMENT_ENTERED = "segment.entered", "A customer entered a segment"
    SEGMENT_EXITED = "segment.exited", "A customer left a segment"
    LIFECYCLE_CHANGED = "customer.lifecycle_changed", "A customer's lifecycle stage changed"
    TIER_CHANGED = "customer.tier_changed", "A customer's tier changed"
    CAMPAIGN_COMPLETED = "campaign.completed", "A campaign finished sending"
    IMPORT_COMPLETED = "import.completed", "A CSV import was written"


def _webhook_secret() -> str:
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


class WebhookEndpoint(models.Model):
    """A merchant's URL that hears the events it subscribes to, signed with its own secret
    (Standard Webhooks). `failing_since`: the first failed attempt after the last success;
    failing for `WEBHOOK_DISABLE_AFTER_HOURS` switches the endpoint off (`disabled_at`,
    `disabled_reason`) and tells the merchant's owners."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    #: The `WebhookEvent` values subscribed to.
    events = models.JSONField(default=list)
    #: "whsec_" + base64 of 24 random bytes; the HMAC key. Shown once when made.
    secret = models.CharField(max_length=100, default=_webhook_secret)
    is_active = models.BooleanField(default=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["merchant", "url", "pk"]
        indexes = [models.Index(fields=["merchant", "is_active"], name="webhook_merchant_idx")]

    def __str__(self) -> str:
        return self.url


class WebhookMessage(models.Model):
    """One signed request body: an event, or up to `WEBHOOK_BATCH_SIZE` events of one type
    and one segment (a refresh that moves 100,000 members makes 100 messages, not 100,000).
    `key` is the `webhook-id`: the same on every attempt and resend, so receivers can drop
    repeats. `payload` is fixed when the message is made."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=40, unique=True)
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    payload = models.JSONField()
    #: How many events the payload carries (1 for a campaign or an import).
    size = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["merchant", "created_at"], name="webhook_msg_time_idx")]

    def __str__(self) -> str:
        return f"{self.key} {self.event}"


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One message to one endpoint, and how its attempts went: the endpoint's delivery log.
    Attempts follow `campaigns.webhooks.retry_delay` until one succeeds (2xx) or
    `WEBHOOK_RETRY_HOURS` have passed since the message was made."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(
        max_length=10,
        choices=WebhookDeliveryStatus.choices,
        default=WebhookDeliveryStatus.PENDING,
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    #: The last attempt's HTTP status (None: no answer), duration and error or answer.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "message"], name="uniq_webhook_delivery"),
        ]
        indexes = [
            models.Index(fields=["endpoint", "created_at"], name="webhook_log_idx"),
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="webhook_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} to {self.endpoint_id}: {self.status}"
