"""Outbound use of segments. So far: offers (rewards, discounts, coupons with a shared code or
a pool of unique codes) and content blocks for the merchant's app or site, each shown only to
the members of chosen segments (`campaigns.selectors.visible_to`). Campaigns and deliveries
come with the rest of the issue "Campaigns and offers".

Targeting: an offer or block is visible to a customer who is a current member of at least
one of its included segments and of none of its excluded ones (exclusion wins), while it is
active and today (the merchant's) is within its validity dates.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
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

    def target(self) -> Targeted | None:
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
