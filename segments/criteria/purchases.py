"""Purchase criteria: derived from transactions (orders are kind `purchase`, refunds kind
`refund`) and redemptions, ignoring everything after `as_of`.

Two sources, one answer. The exact path aggregates transactions/redemptions up to `as_of`
in correlated subqueries. The fast path (`ctx.fast`, only for un-windowed fields) reads the
per-customer metrics row, which is exact as of now; the caller only allows it when `as_of`
is now. `customer.metrics` is one-to-one, so reading it joins at most one row per customer
(no duplicates), and every customer has that row (`Customer.save()` / bulk writers create
it), so the join drops nobody.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce, Lower
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, LessThanOrEqual

from customers.models import LineItem, Redemption, Transaction, TransactionKind
from segments.criteria.base import (
    NUMBER_OPS,
    CleanError,
    CompileContext,
    Criterion,
    NumberCriterion,
    TimeCriterion,
    clean_names,
    compare,
    describe_list,
    describe_op,
    register,
)
from segments.rules import Condition

MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=20, decimal_places=4)
SINGULAR = {
    "product_types": "product type",
    "brands": "brand",
    "categories": "category",
    "skus": "SKU",
}
#: (op, value) pairs that mean "bought at least one unit" / "bought no unit".
SOME_UNITS = frozenset({("gte", 1), ("gt", 0), ("ne", 0)})
NO_UNITS = frozenset({("eq", 0), ("lt", 1), ("lte", 0)})
PRODUCT_LISTS = {
    "product_types": "product__product_type",
    "brands": "product__brand",
    "categories": "product__category",
    "skus": "product__sku",
}


def transactions(
    ctx: CompileContext, *, window_days: int | None, kind: str | None = TransactionKind.PURCHASE
) -> QuerySet[Transaction]:
    """The outer customer's transactions up to `as_of` (of `kind`, within the window)."""
    qs = Transaction.objects.filter(customer=OuterRef("pk"), occurred_at__lte=ctx.as_of)
    if kind is not None:
        qs = qs.filter(kind=kind)
    if window_days is not None:
        qs = qs.filter(occurred_at__gte=ctx.as_of - dt.timedelta(days=window_days))
    return qs


def per_customer(qs: QuerySet[Any], aggregate: Any, output_field: Any) -> Subquery:
    """One aggregate of the outer customer's rows (NULL when there are none)."""
    grouped = qs.order_by().values("customer").annotate(v=aggregate).values("v")[:1]
    return Subquery(grouped, output_field=output_field)


def zero_if_none(expr: Combinable, output_field: Any) -> Coalesce:
    zero = Value(Decimal("0") if isinstance(output_field, DecimalField) else 0)
    return Coalesce(expr, zero, output_field=output_field)


class WindowedNumber(NumberCriterion):
    extras = frozenset({"window_days"})

    def use_fast(self, condition: Condition, ctx: CompileContext) -> bool:
        return ctx.fast and condition.option("window_days") is None

    def describe(self, condition: Condition) -> str:
        text = super().describe(condition)
        window = condition.option("window_days")
        return text if window is None else f"{text} in the last {window} days"


@register("orders_count")
class OrdersCountCriterion(WindowedNumber):
    """Number of orders (kind purchase) up to `as_of`, within `window_days` when set.

    No orders is 0 (coalesced), so it matches `eq 0`, `lt 1` and so on.
    """

    label = "orders"

    def value_expression(self, condition: Condition, ctx: CompileContext) -> Combinable:
        if self.use_fast(condition, ctx):
            return zero_if_none(F("metrics__orders_count"), IntegerField())
        orders = transactions(ctx, window_days=condition.option("window_days"))
        return zero_if_none(per_customer(orders, Count("pk"), IntegerField()), IntegerField())


@register("total_spend")
class TotalSpendCriterion(WindowedNumber):
    """Sum of order totals minus sum of refund totals up to `as_of` (the window applies to
    both). No transactions is 0; it can be negative when refunds exceed orders.
    """

    label = "total spend"
    money = True
    allow_negative = True

    def value_expression(self, condition: Condition, ctx: CompileContext) -> Combinable:
        if self.use_fast(condition, ctx):
            return zero_if_none(F("metrics__net_spend"), MONEY)
        both = transactions(ctx, window_days=condition.option("window_days"), kind=None)
        signed = Case(
            When(kind=TransactionKind.REFUND, then=-F("total")),
            default=F("total"),
            output_field=MONEY,
        )
        return zero_if_none(per_customer(both, Sum(signed), MONEY), MONEY)


@register("avg_order_value")
class AvgOrderValueCriterion(WindowedNumber):
    """Sum of order totals / number of orders (refunds not deducted), up to `as_of` and
    within `window_days` when set.

    Undefined without orders, so such customers match no op (`ne` included); the negation
    of the condition matches them. Compared exactly as `sum <op> value * count` (count > 0),
    which needs no division (no rounding, no integer division on SQLite).
    """

    label = "average order value"
    money = True

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        count: Combinable
        total: Combinable
        if self.use_fast(condition, ctx):
            count = zero_if_none(F("metrics__orders_count"), IntegerField())
            total = zero_if_none(F("metrics__gross_spend"), MONEY)
        else:
            orders = transactions(ctx, window_days=condition.option("window_days"))
            count = zero_if_none(per_customer(orders, Count("pk"), IntegerField()), IntegerField())
            total = zero_if_none(per_customer(orders, Sum("total"), MONEY), MONEY)

        def times_count(value: Decimal) -> ExpressionWrapper:
            return ExpressionWrapper(Value(value, output_field=MONEY) * count, output_field=MONEY)

        op, value = condition.op, condition.value
        has_orders = Q(GreaterThan(count, 0))
        if op == "between":
            return (
                has_orders
                & Q(GreaterThanOrEqual(total, times_count(value[0])))
                & Q(LessThanOrEqual(total, times_count(value[1])))
            )
        if op == "ne":
            return has_orders & ~Q(Exact(total, times_count(value)))
        return has_orders & compare(total, op, times_count(value))


class PurchaseInstant(TimeCriterion):
    aggregate: Any = Max
    metrics_column = ""

    def instant_expression(self, condition: Condition, ctx: CompileContext) -> Combinable:
        if ctx.fast:
            return F(self.metrics_column)
        orders = transactions(ctx, window_days=None)
        return per_customer(
            orders, self.aggregate("occurred_at"), orders.model._meta.get_field("occurred_at")
        )


@register("last_purchase")
class LastPurchaseCriterion(PurchaseInstant):
    """The latest order up to `as_of`. No orders matches `never` only."""

    label = "last purchase"
    aggregate = Max
    metrics_column = "metrics__last_purchase_at"


@register("first_purchase")
class FirstPurchaseCriterion(PurchaseInstant):
    """The earliest order up to `as_of`. No orders matches `never` only."""

    label = "first purchase"
    aggregate = Min
    metrics_column = "metrics__first_purchase_at"


@register("visited_branch")
class VisitedBranchCriterion(Criterion):
    """Has an order up to `as_of` (within `window_days` when set) at one of the branch codes.

    Orders without a branch never match; no orders never matches (an `Exists`, never NULL).
    """

    label = "visited branch"
    ops: ClassVar[tuple[str, ...]] = ("in",)
    extras = frozenset({"window_days"})

    def clean_value(self, op: str, value: Any) -> Any:
        return clean_names(value)

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        orders = transactions(ctx, window_days=condition.option("window_days"))
        return Q(Exists(orders.filter(branch__code__in=condition.value)))

    def describe(self, condition: Condition) -> str:
        text = f"visited branch {describe_list(condition.value)}"
        window = condition.option("window_days")
        return text if window is None else f"{text} in the last {window} days"


@register("rewards_redeemed")
class RewardsRedeemedCriterion(WindowedNumber):
    """Number of redemptions up to `as_of` (within `window_days` when set); none is 0."""

    label = "rewards redeemed"

    def value_expression(self, condition: Condition, ctx: CompileContext) -> Combinable:
        if self.use_fast(condition, ctx):
            return zero_if_none(F("metrics__redemptions_count"), IntegerField())
        qs = Redemption.objects.filter(customer=OuterRef("pk"), redeemed_at__lte=ctx.as_of)
        window = condition.option("window_days")
        if window is not None:
            qs = qs.filter(redeemed_at__gte=ctx.as_of - dt.timedelta(days=window))
        return zero_if_none(per_customer(qs, Count("pk"), IntegerField()), IntegerField())


@register("purchased")
class PurchasedCriterion(NumberCriterion):
    """Units of matching products bought in orders up to `as_of` (within `window_days`).

    A line item matches when its product satisfies every non-empty list of `products`
    (each any-of, case-insensitive). No matching line item (or no orders) is 0 units, so
    `eq 0` means "never bought it". With `last_within_days K`, the latest order with a
    matching line item (regardless of the window) must also lie within K days of `as_of`.
    Always computed from line items (the metrics table has no per-product data).
    """

    label = "purchased"
    ops: ClassVar[tuple[str, ...]] = NUMBER_OPS
    extras = frozenset({"window_days", "products", "last_within_days"})

    def clean_extras(self, op: str, extras: Mapping[str, Any]) -> dict[str, Any]:
        cleaned = super().clean_extras(op, {k: v for k, v in extras.items() if k != "products"})
        if "products" not in extras:
            raise CleanError("missing; name the products (product_types, brands, ...)", "products")
        products = extras["products"]
        if not isinstance(products, dict):
            raise CleanError("expected an object of product lists", "products")
        lists: list[tuple[str, tuple[str, ...]]] = []
        for key, raw in products.items():
            if key not in PRODUCT_LISTS:
                raise CleanError(f'"{key}" is not a product list', f"products.{key}")
            names = clean_names(raw, key=f"products.{key}", allow_empty=True)
            if names:
                lists.append((key, names))
        if not lists:
            raise CleanError("at least one product list must be non-empty", "products")
        cleaned["products"] = tuple(sorted(lists))
        return cleaned

    @staticmethod
    def line_items(condition: Condition, ctx: CompileContext) -> QuerySet[LineItem]:
        # The merchant filter is implied (a transaction belongs to its customer's merchant)
        # but lets PostgreSQL start from the (merchant, occurred_at) index of transactions.
        qs = LineItem.objects.filter(
            transaction__customer=OuterRef("pk"),
            transaction__merchant=ctx.merchant,
            transaction__kind=TransactionKind.PURCHASE,
            transaction__occurred_at__lte=ctx.as_of,
        )
        for key, names in condition.option("products"):
            alias = f"lower_{key}"
            qs = qs.alias(**{alias: Lower(PRODUCT_LISTS[key])}).filter(
                **{f"{alias}__in": sorted({n.lower() for n in names})}
            )
        return qs

    def windowed_items(self, condition: Condition, ctx: CompileContext) -> QuerySet[LineItem]:
        items = self.line_items(condition, ctx)
        window = condition.option("window_days")
        if window is not None:
            items = items.filter(
                transaction__occurred_at__gte=ctx.as_of - dt.timedelta(days=window)
            )
        return items

    def value_expression(self, condition: Condition, ctx: CompileContext) -> Expression:
        units = (
            self.windowed_items(condition, ctx)
            .order_by()
            .values("transaction__customer")
            .annotate(v=Sum("quantity"))
        )
        return zero_if_none(
            Subquery(units.values("v")[:1], output_field=IntegerField()), IntegerField()
        )

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        op, value = condition.op, condition.value
        if (op, value) in SOME_UNITS or (op, value) in NO_UNITS:
            # Units are whole numbers >= 0, so "at least one unit" is "a line item with a
            # positive quantity exists": an EXISTS that PostgreSQL runs as a semi-join from
            # the indexes, instead of a per-customer SUM. Its negation is exact (two-valued).
            some = Q(Exists(self.windowed_items(condition, ctx).filter(quantity__gt=0)))
            q = some if (op, value) in SOME_UNITS else ~some
        else:
            q = super().compile(condition, ctx)
        recent = condition.option("last_within_days")
        if recent is not None:
            items = self.line_items(condition, ctx).filter(
                transaction__occurred_at__gte=ctx.as_of - dt.timedelta(days=recent)
            )
            q &= Q(Exists(items))
        return q

    def describe(self, condition: Condition) -> str:
        what = " ".join(
            f"{SINGULAR[key]} {' or '.join(names)}" for key, names in condition.option("products")
        )
        text = f"purchased {what} units {describe_op(condition.op, condition.value)}"
        window = condition.option("window_days")
        if window is not None:
            text += f" in the last {window} days"
        recent = condition.option("last_within_days")
        if recent is not None:
            text += f", last within {recent} days"
        return text
