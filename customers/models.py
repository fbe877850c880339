"""The merchant data model: tenants, their staff, customers and everything they buy.

Every row below `Merchant` belongs to exactly one merchant, directly or through its parent,
and every portal query starts from the current merchant's rows (see `customers.portal.tenancy`).

Invariant kept by this module: a customer's `CustomerMetrics` row is exact after every write
of transactions or redemptions. Single-object writes (`save()`/`delete()`, which the admin and
ad-hoc code use) recompute the customer's metrics in the same database transaction; bulk
writes (the import, the dataset generator, campaigns) call the write chain's services
(`customers.services.customer_metrics_refresh()`, `merchant_metrics_refresh()`,
`customers_update()`) before their transaction commits, which also announce the change.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, transaction
from django.db.models.functions import ExtractMonth, Lower
from django.utils import timezone

from customers.fields import IdListField
from customers.scores.definitions import DEFAULT_RFM_GRID, TIER_METRICS, TIER_PERIODS


def check_same_merchant(merchant_id: int | None, **related: models.Model | None) -> None:
    """Raise a ValidationError naming each related row that belongs to another merchant.

    The admin edits across merchants, so a form could pair one merchant's transaction with
    another merchant's customer; the database cannot express that, `clean()` can.
    """
    errors = {
        name: f"This {name.replace('_', ' ')} belongs to another merchant."
        for name, obj in related.items()
        if obj is not None and getattr(obj, "merchant_id", merchant_id) != merchant_id
    }
    if errors:
        raise ValidationError(errors)


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f'"{value}" is not a known time zone (e.g. "America/Toronto").')


class Merchant(models.Model):
    """A tenant: one loyalty or retail program, with its own time zone and currency."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    currency = models.CharField(
        max_length=3,
        default="USD",
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code, e.g. USD.")],
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def today(self, as_of: datetime | None = None) -> date:
        """The merchant-local date of `as_of` (default: now)."""
        return timezone.localtime(as_of or timezone.now(), self.tzinfo).date()


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MANAGER = "manager", "Manager"
    STAFF = "staff", "Staff"


class StaffMembership(models.Model):
    """Links a user to a merchant with a role; a user may belong to several merchants."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.STAFF)
    #: Limits the member's reports to the sales of these branches (a store manager); none:
    #: every branch. Segment lists, customers and counts stay merchant-wide.
    branches: models.ManyToManyField[Branch, Any] = models.ManyToManyField(
        "Branch",
        blank=True,
        related_name="limited_memberships",
        help_text="Reports show only the sales of these branches; leave empty for all branches.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "merchant"], name="uniq_membership_user_merchant"
            )
        ]
        ordering = ["merchant__name"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant} ({self.role})"


class Branch(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="branches")
    code = models.CharField(max_length=64)
    name = models.CharField(max_length=200)

    class Meta:
        verbose_name_plural = "branches"
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "code"], name="uniq_branch_code"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Tag(models.Model):
    """A customer tag; names are unique per merchant regardless of case."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "merchant", name="uniq_tag_name_ci"),
        ]

    def __str__(self) -> str:
        return self.name


class Tier(models.Model):
    """A loyalty tier (Bronze, Silver, Gold...); names are unique per merchant, any case."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="tiers")
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(default=0, help_text="Higher ranks are better tiers.")

    class Meta:
        ordering = ["rank", "name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "merchant", name="uniq_tier_name_ci"),
        ]

    def __str__(self) -> str:
        return self.name


class Gender(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNSPECIFIED = "unspecified", "Unspecified"


class CustomerQuerySet(models.QuerySet["Customer"]):
    def update(self, **kwargs: Any) -> int:
        """`QuerySet.update()` that keeps the copy of the profile on the metrics rows exact
        when it changes a copied column (see `CustomerMetrics`), through the write chain's
        service (`customers.services.customer_metrics_refresh`: one announcement, merchant-
        level when many). Bulk writers should prefer `customers.services.customers_update`."""
        from customers.metrics import PROFILE_COLUMNS
        from customers.services import customer_metrics_refresh

        copied = {name.removesuffix("_id") for name in PROFILE_COLUMNS}
        if not copied & {name.removesuffix("_id") for name in kwargs}:
            return super().update(**kwargs)
        with transaction.atomic():
            ids = list(self.values_list("pk", flat=True))
            count = super().update(**kwargs)
            customer_metrics_refresh(customer_ids=ids)
        return count


class Customer(models.Model):
    """A merchant's customer, with every column of the import contract."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="customers")
    external_id = models.CharField(max_length=100)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    gender = models.CharField(max_length=16, choices=Gender.choices, default=Gender.UNSPECIFIED)
    birth_date = models.DateField(null=True, blank=True)
    customer_type = models.CharField(max_length=100, blank=True)
    tags: models.ManyToManyField[Tag, CustomerTag] = models.ManyToManyField(
        Tag, through="CustomerTag", related_name="customers", blank=True
    )
    tier = models.ForeignKey(
        Tier, on_delete=models.SET_NULL, null=True, blank=True, related_name="customers"
    )
    joined_at = models.DateTimeField()
    home_branch = models.ForeignKey(
        Branch, on_delete=models.SET_NULL, null=True, blank=True, related_name="home_customers"
    )
    email_opt_in = models.BooleanField(default=False)
    sms_opt_in = models.BooleanField(default=False)
    push_opt_in = models.BooleanField(default=False)
    points_balance = models.PositiveIntegerField(default=0)
    lifetime_points = models.PositiveIntegerField(default=0)
    last_contacted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "external_id"], name="uniq_customer_ext_id"
            ),
        ]
        indexes = [
            models.Index(fields=["merchant", "joined_at"], name="customer_joined_idx"),
            models.Index(fields=["merchant", "customer_type"], name="customer_type_idx"),
            models.Index(fields=["merchant", "birth_date"], name="customer_birth_idx"),
            models.Index(fields=["merchant", "last_name", "first_name"], name="customer_name_idx"),
            models.Index(fields=["merchant", "email"], name="customer_email_idx"),
            # Segment rules read the copy of the profile on CustomerMetrics, indexed there.
        ]

    def __str__(self) -> str:
        return self.full_name or self.external_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every customer has a metrics row (zeros until the first order) that carries a copy
        # of the profile, so the segment engine reads one narrow row per customer. Bulk
        # writers refresh the rows themselves.
        from customers.services import customer_metrics_refresh

        with transaction.atomic():
            super().save(*args, **kwargs)
            customer_metrics_refresh(customer_ids={self.pk})

    def clean(self) -> None:
        check_same_merchant(self.merchant_id, tier=self.tier, home_branch=self.home_branch)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class CustomerTag(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "tag"], name="uniq_customer_tag"),
        ]
        indexes = [models.Index(fields=["tag", "customer"], name="customertag_tag_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.tag_id}"

    # The customer's tag ids are copied to its metrics row (`CustomerMetrics.tag_ids`);
    # `customer.tags.add()/remove()/set()` are covered by an m2m_changed receiver
    # (`customers.apps`), single rows (the admin's inline) here.
    def save(self, *args: Any, **kwargs: Any) -> None:
        from customers.services import customer_metrics_refresh

        with transaction.atomic():
            super().save(*args, **kwargs)
            customer_metrics_refresh(customer_ids={self.customer_id})

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        from customers.services import customer_metrics_refresh

        with transaction.atomic():
            result = super().delete(*args, **kwargs)
            customer_metrics_refresh(customer_ids={self.customer_id})
            return result

    def clean(self) -> None:
        if self.customer_id and self.tag_id:
            check_same_merchant(self.customer.merchant_id, tag=self.tag)


class Product(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    product_type = models.CharField(max_length=100, blank=True)
    brand = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=100, blank=True)
    price = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
    )

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "sku"], name="uniq_product_sku"),
            models.CheckConstraint(
                condition=models.Q(price__isnull=True) | models.Q(price__gte=0),
                name="product_price_non_negative",
            ),
        ]
        indexes = [
            models.Index(Lower("brand"), "merchant", name="product_brand_ci_idx"),
            models.Index(Lower("product_type"), "merchant", name="product_type_ci_idx"),
            models.Index(Lower("category"), "merchant", name="product_category_ci_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class TransactionKind(models.TextChoices):
    PURCHASE = "purchase", "Purchase"
    REFUND = "refund", "Refund"


class MetricsKeepingModel(models.Model):
    """A row whose writes change its customer's metrics (or product stats).

    `save()` and `delete()` recompute the metrics of the customer(s) concerned in the same
    database transaction, so the admin and any code that writes one object keep the
    invariant without remembering to; both go through the write chain's service
    (`customers.services.customer_metrics_refresh`). Queryset-level writes (`bulk_create`,
    `update`, `delete`) bypass this and must call that service themselves.
    """

    #: The lookup from this row to its customer's id (through a relation for line items).
    customer_lookup: ClassVar[str] = "customer_id"

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        from customers.services import customer_metrics_refresh

        with transaction.atomic():
            previous = None
            if self.pk is not None:
                manager: models.Manager[Any] = type(self)._default_manager
                previous = (
                    manager.filter(pk=self.pk).values_list(self.customer_lookup, flat=True).first()
                )
            super().save(*args, **kwargs)
            # A row with its own merchant (a transaction, a redemption) names it: its
            # customers are that merchant's (`clean()` refuses another merchant's).
            customer_metrics_refresh(
                customer_ids={self.owner_id()} | ({previous} if previous else set()),
                merchant_id=getattr(self, "merchant_id", None),
            )

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        from customers.services import customer_metrics_refresh

        with transaction.atomic():
            customer_id = self.owner_id()
            result = super().delete(*args, **kwargs)
            customer_metrics_refresh(customer_ids={customer_id})
            return result

    def owner_id(self) -> int:
        """The id of the customer this row belongs to, as it is in memory."""
        return int(getattr(self, "customer_id"))  # noqa: B009 - declared by subclasses


class Transaction(MetricsKeepingModel):
    """An order (kind `purchase`) or a refund, with its line items."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="transactions")
    external_id = models.CharField(max_length=100)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="transactions")
    occurred_at = models.DateTimeField()
    kind = models.CharField(
        max_length=16, choices=TransactionKind.choices, default=TransactionKind.PURCHASE
    )
    total = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    branch = models.ForeignKey(
        Branch, on_delete=models.SET_NULL, null=True, blank=True, related_name="transactions"
    )
    points_earned = models.PositiveIntegerField(default=0)
    points_redeemed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "external_id"], name="uniq_transaction_ext_id"
            ),
            models.CheckConstraint(
                condition=models.Q(total__gte=0), name="transaction_total_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=TransactionKind.values), name="transaction_kind_valid"
            ),
        ]
        indexes = [
            # "Orders of this customer within N days / before D": the purchase criteria.
            models.Index(fields=["customer", "occurred_at"], name="txn_customer_time_idx"),
            models.Index(fields=["merchant", "occurred_at"], name="txn_merchant_time_idx"),
            models.Index(fields=["branch", "occurred_at"], name="txn_branch_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.external_id}"

    def clean(self) -> None:
        check_same_merchant(
            self.merchant_id,
            customer=self.customer if self.customer_id else None,
            branch=self.branch,
        )


class LineItem(MetricsKeepingModel):
    """One line of a transaction. `amount` is the line total. Its writes change the
    customer's product stats (`CustomerProductStats`)."""

    customer_lookup = "transaction__customer_id"

    transaction = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="items")
    # RESTRICT, not PROTECT: a product with sales cannot be deleted on its own, but deleting
    # the whole merchant (which cascades to its transactions and their lines) still works.
    product = models.ForeignKey(Product, on_delete=models.RESTRICT, related_name="line_items")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="lineitem_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(amount__gte=0), name="lineitem_amount_non_negative"
            ),
        ]
        indexes = [
            # "Bought product X": from the product to its line items, then to the transaction.
            models.Index(fields=["product", "transaction"], name="lineitem_product_txn_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"

    @property
    def unit_amount(self) -> Decimal:
        """The price of one unit: the line total over the quantity, to the cent."""
        return (self.amount / self.quantity).quantize(Decimal("0.01"))

    def clean(self) -> None:
        if self.transaction_id and self.product_id:
            check_same_merchant(self.transaction.merchant_id, product=self.product)

    def owner_id(self) -> int:
        return self.transaction.customer_id


class Redemption(MetricsKeepingModel):
    """A reward redeemed by a customer."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="redemptions")
    external_id = models.CharField(max_length=100)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="redemptions")
    reward = models.CharField(max_length=200)
    points = models.PositiveIntegerField(default=0)
    redeemed_at = models.DateTimeField()

    class Meta:
        ordering = ["-redeemed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "external_id"], name="uniq_redemption_ext_id"
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "redeemed_at"], name="redemption_customer_time_idx"),
            # A report's redemptions in a period.
            models.Index(fields=["merchant", "redeemed_at"], name="redemption_merchant_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.reward} ({self.external_id})"

    def clean(self) -> None:
        check_same_merchant(self.merchant_id, customer=self.customer if self.customer_id else None)


class CustomerMetrics(models.Model):
    """The lean per-customer row the segment engine counts over.

    Two kinds of columns, both kept exact by `customers.metrics.refresh_metrics()` in the
    transaction of every write that changes them:

    Purchase aggregates, recomputed from transactions and redemptions:
    - `orders_count`: transactions of kind purchase; `gross_spend`: the sum of their totals.
    - `refunds_count` / `refunds_total`: transactions of kind refund and the sum of their totals.
    - `net_spend` = gross_spend - refunds_total (the rule contract's `total_spend`).
    - `avg_order_value` = gross_spend / orders_count, NULL without orders.
    - `first_purchase_at` / `last_purchase_at`: earliest and latest purchase, NULL without orders.
    - `redemptions_count`: redemptions of the customer.
    - `line_items`, `units`, `items_amount`: the line items of orders, their quantities and
      amounts.

    Profile attributes, copied from the customer (`PROFILE_COLUMNS`) with its tag ids: the
    rules read current profile values, and reading them here instead of the wide customer
    row (names, e-mail, phone...) keeps a count over a million customers to one narrow
    table. `tier` and `home_branch` are nulled with the customer's when the row is deleted.
    """

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="metrics"
    )
    # Not indexed alone: every index below leads with the merchant.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    orders_count = models.PositiveIntegerField(default=0)
    gross_spend = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    refunds_count = models.PositiveIntegerField(default=0)
    refunds_total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    net_spend = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    avg_order_value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    first_purchase_at = models.DateTimeField(null=True, blank=True)
    last_purchase_at = models.DateTimeField(null=True, blank=True)
    redemptions_count = models.PositiveIntegerField(default=0)
    # The line items of orders: how many, their units and amounts (the smart segments'
    # price per unit and units per line item).
    line_items = models.PositiveIntegerField(default=0)
    units = models.PositiveIntegerField(default=0)
    items_amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    # The orders by merchant-local day (the predictions' inputs): distinct days with an
    # order, the first day's order totals, days from the first order to the second (0 when
    # the first day had two; NULL with one order), orders that redeemed points.
    purchase_days = models.PositiveIntegerField(default=0)
    first_day_total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    first_gap_days = models.PositiveIntegerField(null=True, blank=True)
    redeemed_orders = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    # Copies of the customer's profile (see the class docstring).
    gender = models.CharField(max_length=16, default=Gender.UNSPECIFIED)
    customer_type = models.CharField(max_length=100, blank=True, default="")
    # Derived copies: no database constraint to check on every recomputation (Django still
    # applies SET_NULL when the tier or branch is deleted); the tier is indexed below.
    tier = models.ForeignKey(
        Tier,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    home_branch = models.ForeignKey(
        Branch,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    birth_date = models.DateField(null=True, blank=True)
    joined_at = models.DateTimeField(null=True, blank=True)
    email_opt_in = models.BooleanField(default=False)
    sms_opt_in = models.BooleanField(default=False)
    push_opt_in = models.BooleanField(default=False)
    points_balance = models.PositiveIntegerField(default=0)
    lifetime_points = models.PositiveIntegerField(default=0)
    last_contacted_at = models.DateTimeField(null=True, blank=True)
    tag_ids = IdListField(default=list, blank=True)

    # Scores (`customers.scores`): written by the score service only, never by the metrics
    # upsert, which leaves these columns alone. The lifecycle stage follows every purchase;
    # RFM moves with each scheduled computation. NULL: no order (no stage, no RFM scores).
    lifecycle_stage = models.CharField(max_length=16, null=True, blank=True)
    rfm_recency = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_frequency = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_monetary = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_group = models.CharField(max_length=20, default="prospects", db_default="prospects")
    #: The merchant-local day the tier rules first gave a lower tier (the grace period).
    tier_below_since = models.DateField(null=True, blank=True)
    # Predictions (BG/NBD and Gamma-Gamma) and the smart segment: set by each computation
    # and, from the stored fit, by every purchase. NULL: no order, or no fit (the merchant
    # has too little data; the reason is on the score settings' `model`).
    p_alive = models.FloatField(null=True, blank=True)
    churn_risk = models.FloatField(null=True, blank=True)
    expected_orders_90d = models.FloatField(null=True, blank=True)
    #: P(at least one order in the next 30 days) (the segment page's "next order" figure).
    p_order_30d = models.FloatField(null=True, blank=True)
    predicted_clv = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    smart_segment = models.CharField(
        max_length=24, default="waiting_first_order", db_default="waiting_first_order"
    )
    #: The merchant-local day from which the customer counts as lost without a new order.
    churn_cutoff_on = models.DateField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "customer metrics"
        # Every index here is written on every purchase (the row's aggregates change, so the
        # update cannot be HOT): only conditions that select a small share of a merchant's
        # customers, or that a count answers from the index alone, have one.
        indexes = [
            # Recency plus spend, and spend: the commonest leading conditions.
            models.Index(
                fields=["merchant", "last_purchase_at", "net_spend"], name="metrics_recency_idx"
            ),
            models.Index(fields=["merchant", "net_spend"], name="metrics_spend_idx"),
            # Profile rules: type (case-insensitive), tier, age (birth date), birthdays
            # (birth month; birth_date in the key so a count reads the index alone), "not
            # contacted in N days". Tags: a GIN index on PostgreSQL (migration 0005), which
            # Django cannot declare for both databases.
            models.Index(Lower("customer_type"), "merchant", name="metrics_type_idx"),
            models.Index(fields=["tier", "merchant"], name="metrics_tier_idx"),
            models.Index(fields=["merchant", "birth_date"], name="metrics_birth_idx"),
            models.Index(
                "merchant", ExtractMonth("birth_date"), "birth_date", name="metrics_birthday_idx"
            ),
            models.Index(fields=["merchant", "last_contacted_at"], name="metrics_contacted_idx"),
            # New customers in a report's period (first order ever inside it).
            models.Index(fields=["merchant", "first_purchase_at"], name="metrics_first_idx"),
            # The reports' groups: sizes per stage, RFM group or smart segment, and each
            # customer's group to join sales to, read from this index alone.
            models.Index(
                fields=["merchant"],
                include=["customer", "lifecycle_stage", "rfm_group", "smart_segment"],
                name="metrics_groups_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"metrics of {self.customer_id}"


class CustomerProductStats(models.Model):
    """What one customer bought of one product: units over all orders, and the latest order.

    Kept exact by `customers.metrics.refresh_metrics()` from the line items of orders (kind
    purchase; refunds do not take units back, as the rule contract says). A row exists only
    for products the customer bought. The segment engine answers "bought products X" from
    here instead of the line items: about 10 rows per customer instead of 25, and the index
    on (product, latest order) finds "bought X within N days" without touching a line item.
    """

    pk = models.CompositePrimaryKey("customer_id", "product_id")
    # No index of their own: the primary key leads with the customer, the recent-purchase
    # index with the product. No database constraint either: the rows are derived from
    # checked line items and recomputed in bulk (Django still cascades deletes).
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    # The customer's merchant, copied so that every read is scoped to the merchant by the
    # row itself (and by the index below) without a join.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    units = models.PositiveIntegerField()
    last_purchased_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "customer product stats"
        indexes = [
            models.Index(
                fields=["product", "last_purchased_at"],
                include=["customer", "merchant", "units"],
                name="productstats_recent_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} bought {self.units} of {self.product_id}"


class SalesSpan(models.TextChoices):
    DAY = "d", "Day"
    MONTH = "m", "Month"
    QUARTER = "q", "Quarter"


class CustomerSales(models.Model):
    """A customer's sales at one branch in one merchant-local day, month or quarter: the
    reports' summary (`analytics`), kept exact from the transactions by the metrics refresh
    (`customers.metrics`), in the transaction that writes them.

    Three spans: a row per day the customer bought or was refunded (`span` d), per month
    (`span` m, `starts_on` the 1st) and per calendar quarter (`span` q, `starts_on` 1
    January, April, July or October). A report reads the whole quarters of a period from the
    quarter rows, the other whole months from the month rows and the days at its edges from
    the day rows: a year is about a third of the rows of its transactions. Money in integer
    cents (exact sums on both databases, and faster than numeric). The day is the
    merchant's local date, so a report's merchant-local period is a plain date range.
    """

    # No database constraints, like the other derived rows (Django still cascades deletes);
    # the branch becomes NULL with its transactions' when a branch is removed.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    branch = models.ForeignKey(
        Branch,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    span = models.CharField(max_length=1, choices=SalesSpan.choices)
    starts_on = models.DateField()
    orders = models.PositiveIntegerField()
    refunds = models.PositiveIntegerField()
    gross_cents = models.BigIntegerField()
    refund_cents = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "customer sales"
        indexes = [
            # A period's rows read from the index alone (PostgreSQL; SQLite ignores include).
            models.Index(
                fields=["merchant", "span", "starts_on"],
                include=["customer", "branch", "orders", "gross_cents", "refund_cents"],
                name="sales_period_idx",
            ),
            models.Index(fields=["customer", "span", "starts_on"], name="sales_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.get_span_display().lower()} of {self.starts_on}"


# -- customer scores (`customers.scores`, `shared/spec/customer-scores.md`) -------------------


class ScoreCadence(models.TextChoices):
    DAILY = "daily", "Every night"
    WEEKLY = "weekly", "Once a week"


class ScoreRunStatus(models.TextChoices):
    NEVER = "never", "Never computed"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    OK = "ok", "Up to date"
    FAILED = "failed", "Failed"


def default_rfm_grid() -> list[list[str]]:
    return [list(row) for row in DEFAULT_RFM_GRID]


class ScoreSettings(models.Model):
    """A merchant's score definitions (the contract's thresholds, the RFM grid, the tier
    grace period and the cadence) and the state of its last computation.

    Created with the contract's defaults the first time anything reads it
    (`customers.scores.service.score_settings_for`)."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="score_settings"
    )
    dormant_days = models.PositiveIntegerField(default=180)
    at_risk_days = models.PositiveIntegerField(default=90)
    window_days = models.PositiveIntegerField(default=365)
    loyal_orders = models.PositiveIntegerField(default=8)
    regular_orders = models.PositiveIntegerField(default=4)
    rfm_grid = models.JSONField(default=default_rfm_grid)
    tier_grace_days = models.PositiveIntegerField(default=30)
    cadence = models.CharField(max_length=8, choices=ScoreCadence.choices, default="daily")
    #: For a weekly cadence: Monday = 0 ... Sunday = 6 (Python's `weekday()`).
    weekday = models.PositiveSmallIntegerField(default=6)

    status = models.CharField(max_length=8, choices=ScoreRunStatus.choices, default="never")
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: The `as_of` of the last successful computation.
    computed_as_of = models.DateTimeField(null=True, blank=True)
    #: The merchant-local day of the last successful scheduled computation (a recomputation
    #: asked for in the portal does not stand in for the schedule).
    scheduled_on = models.DateField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    #: The last successful computation's summary (what `compute_scores --json` prints).
    summary = models.JSONField(default=dict, blank=True)
    #: The last fit (`customers.scores.predictions.ModelState.as_json`): the BG/NBD and
    #: Gamma-Gamma parameters or why there are none, the smart segments' merchant cut-offs
    #: and the calibration/holdout check. A purchase scores its customer from these.
    model = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "score settings"

    def __str__(self) -> str:
        return f"score settings of {self.merchant_id}"


class TierRule(models.Model):
    """Hold `tier` from `threshold` of `metric` counted over `period` (the tier's rank
    orders the rules). A merchant without rules keeps the imported tiers."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="tier_rules")
    tier = models.OneToOneField(Tier, on_delete=models.CASCADE, related_name="rule")
    metric = models.CharField(max_length=8, choices=TIER_METRICS)
    period = models.CharField(max_length=16, choices=TIER_PERIODS, default="lifetime")
    threshold = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )

    class Meta:
        ordering = ["merchant", "tier__rank"]

    def __str__(self) -> str:
        return f"{self.tier} from {self.threshold} {self.metric} ({self.period})"

    def describe(self) -> str:
        """The rule in words: "from 1,000.00 spend, this calendar year"."""
        amount = f"{self.threshold:,.2f}" if self.metric == "spend" else f"{self.threshold:,.0f}"
        what = dict(TIER_METRICS)[self.metric].lower()
        period = "" if self.period == "lifetime" else f", {self.get_period_display().lower()}"
        return f"from {amount} {what}{period}"

    def clean(self) -> None:
        if self.tier_id and self.merchant_id and self.tier.merchant_id != self.merchant_id:
            raise ValidationError({"tier": "This tier belongs to another merchant."})


class ScoreSettingsChange(models.Model):
    """One saved change of a merchant's score settings: who, when, old and new values."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="score_settings_changes"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    changed_at = models.DateTimeField(default=timezone.now)
    old = models.JSONField(default=dict)
    new = models.JSONField(default=dict)

    class Meta:
        ordering = ["-changed_at", "-pk"]
        indexes = [models.Index(fields=["merchant", "-changed_at"], name="score_change_log_idx")]

    def __str__(self) -> str:
        return f"score settings of {self.merchant_id} changed at {self.changed_at:%Y-%m-%d %H:%M}"

    @property
    def changed_keys(self) -> list[str]:
        return sorted(k for k in {*self.old, *self.new} if self.old.get(k) != self.new.get(k))


class ScoreChangeKind(models.TextChoices):
    LIFECYCLE = "lifecycle", "Lifecycle stage"
    TIER = "tier", "Tier"


class ScoreChange(models.Model):
    """A customer's lifecycle stage or tier changed: from, to, when and why. Written by
    the score service only (a computation, or a purchase that moved the customer)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="score_changes")
    kind = models.CharField(max_length=12, choices=ScoreChangeKind.choices)
    #: Stage names, or tier names as they were; blank for none.
    from_value = models.CharField(max_length=100, blank=True)
    to_value = models.CharField(max_length=100, blank=True)
    changed_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-changed_at", "-pk"]
        indexes = [
            models.Index(fields=["merchant", "kind", "changed_at"], name="score_change_time_idx"),
            models.Index(fields=["customer", "changed_at"], name="score_change_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_value or '-'} -> {self.to_value or '-'}"


class ApiTokenScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Read and write"


class ApiToken(models.Model):
    """A merchant's key to the JSON API (`config/api.py`). Only the SHA-256 of the token is
    stored: the plaintext is shown once, when `customers.api_tokens.api_token_create` makes
    it. `prefix` (its first 8 characters) lets people tell tokens apart. A write token may
    also read."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8)
    token_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(
        max_length=8, choices=ApiTokenScope.choices, default=ApiTokenScope.READ
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["merchant", "-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
