"""Purchase criteria: derived from transactions (orders are kind `purchase`, refunds kind
`refund`), their line items and redemptions, ignoring everything after `as_of`.

Two sources, one answer:
- The fast path (`ctx.fast`) reads the per-customer aggregates, exact as of now: the
  metrics row (orders, spend, first/last purchase, redemptions: the outer row's own
  columns) and `CustomerProductStats` (units and latest order per customer and product).
  The caller only allows it when `as_of` is now (or vouches that nothing came after).
- The exact path reads transactions, line items and redemptions up to `as_of`, and so does
  the fast path for what the aggregates cannot answer (counts and sums within a window).

Per-customer aggregates compared with a number compile to `customer_set()`: `pk IN
(SELECT customer ... GROUP BY customer HAVING ...)`, computed once per query instead of once
per customer. "At least one" tests compile to `customers_in()`: `pk IN (SELECT customer
...)`, a semi-join, or a hashed set under OR and NOT.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Lower
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, LessThanOrEqual

from customers.models import (
    Branch,
    CustomerProductStats,
    LineItem,
    Product,
    Redemption,
    Transaction,
    TransactionKind,
)
from segments.criteria.base import (
    NUMBER_OPS,
    CleanError,
    CompileContext,
    Criterion,
    NumberCriterion,
    TimeCriterion,
    clean_names,
    compare,
    compare_instant,
    customer_set,
    customers_in,
    describe_list,
    describe_op,
    distinct_names,
    holds,
    id_in,
    register,
    restricted,
)
from segments.rule_tree import Condition, shown

if TYPE_CHECKING:
    from customers.models import Merchant
    from segments.evaluate import Evaluator, Item, Person, Txn
    from segments.models import Segment

GROUP = "Purchases"

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
#: The customer of a line item.
ITEM_CUSTOMER = "transaction__customer"
#: The product column each list of `products` matches.
PRODUCT_LISTS = {
    "product_types": "product_type",
    "brands": "brand",
    "categories": "category",
    "skus": "sku",
}


def transactions(
    ctx: CompileContext, *, window_days: int | None, kind: str | None = TransactionKind.PURCHASE
) -> QuerySet[Transaction]:
    """The merchant's transactions up to `as_of` (of `kind`, within the window)."""
    qs = Transaction.objects.filter(merchant=ctx.merchant, occurred_at__lte=ctx.as_of)
    if kind is not None:
        qs = qs.filter(kind=kind)
    if window_days is not None:
        qs = qs.filter(occurred_at__gte=ctx.as_of - dt.timedelta(days=window_days))
    return qs


def count_compared(
    rows: QuerySet[Any],
    customer_field: str,
    op: str,
    value: Any,
    ctx: CompileContext,
    aggregate: Any,
) -> Q:
    """Customers whose `aggregate` of their `rows` compares `op value`; none is 0."""
    return customer_set(
        rows,
        customer_field,
        ctx,
        annotations={"agg": aggregate},
        test=compare(F("agg"), op, value),
        empty_matches=holds(op, value, 0),
    )


class WindowedNumber(NumberCriterion):
    extras = frozenset({"window_days"})
    group = GROUP

    def use_fast(self, condition: Condition, ctx: CompileContext) -> bool:
        return ctx.fast and condition.option("window_days") is None

    def describe(self, condition: Condition) -> str:
        text = super().describe(condition)
        window = condition.option("window_days")
        return text if window is None else f"{text} in the last {window} days"


@register("orders_count")
class OrdersCountCriterion(WindowedNumber):
    """Number of orders (kind purchase) up to `as_of`, within `window_days` when set.

    No orders is 0 (the column is NOT NULL; the exact path selects customers without
    orders as the complement), so it matches `eq 0`, `lt 1` and so on.
    """

    label = "orders"
    unit = "orders"

    def person_number(self, condition: Condition, person: Person, ev: Evaluator) -> Any:
        return len(ev.orders(person, condition.option("window_days")))

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        op, value = condition.op, condition.value
        if self.use_fast(condition, ctx):
            return compare(F("orders_count"), op, value)
        orders = transactions(ctx, window_days=condition.option("window_days"))
        return count_compared(orders, "customer", op, value, ctx, Count("pk"))


@register("total_spend")
class TotalSpendCriterion(WindowedNumber):
    """Sum of order totals minus sum of refund totals up to `as_of` (the window applies to
    both). No transactions is 0; it can be negative when refunds exceed orders.
    """

    label = "total spend"
    money = True
    allow_negative = True

    def person_number(self, condition: Condition, person: Person, ev: Evaluator) -> Any:
        window = condition.option("window_days")
        return sum(
            (
                t.total if t.kind == "purchase" else -t.total
                for t in person.transactions
                if ev.in_window(t.occurred_at, window)
            ),
            Decimal(0),
        )

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        op, value = condition.op, condition.value
        if self.use_fast(condition, ctx):
            return compare(F("net_spend"), op, value)
        both = transactions(ctx, window_days=condition.option("window_days"), kind=None)
        signed = Case(
            When(kind=TransactionKind.REFUND, then=-F("total")),
            default=F("total"),
            output_field=MONEY,
        )
        return count_compared(both, "customer", op, value, ctx, Sum(signed, output_field=MONEY))


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

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        orders = ev.orders(person, condition.option("window_days"))
        if not orders:
            return False
        average = Fraction(sum((t.total for t in orders), Decimal(0))) / len(orders)
        value = condition.value
        exact = (
            (Fraction(value[0]), Fraction(value[1]))
            if condition.op == "between"
            else Fraction(value)
        )
        return ev.number(average, condition.op, exact)

    @staticmethod
    def test(total: Combinable, count: Combinable, op: str, value: Any) -> Q:
        def times_count(number: Decimal) -> ExpressionWrapper:
            return ExpressionWrapper(Value(number, output_field=MONEY) * count, output_field=MONEY)

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

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        op, value = condition.op, condition.value
        if self.use_fast(condition, ctx):
            return self.test(F("gross_spend"), F("orders_count"), op, value)
        orders = transactions(ctx, window_days=condition.option("window_days"))
        return customer_set(
            orders,
            "customer",
            ctx,
            annotations={"n": Count("pk"), "total": Sum("total", output_field=MONEY)},
            test=self.test(F("total"), F("n"), op, value),
            empty_matches=False,
        )


class PurchaseInstant(TimeCriterion):
    aggregate: Any = Max
    column = ""
    group = GROUP

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        op, value = condition.op, condition.value
        if ctx.fast:
            return compare_instant(F(self.column), op, value, ctx)
        orders = transactions(ctx, window_days=None)
        if op == "never":
            return ~Q(pk__in=orders.values("customer"))
        return customer_set(
            orders,
            "customer",
            ctx,
            annotations={"at": self.aggregate("occurred_at")},
            test=compare_instant(F("at"), op, value, ctx),
            empty_matches=False,
        )


@register("last_purchase")
class LastPurchaseCriterion(PurchaseInstant):
    """The latest order up to `as_of`. No orders matches `never` only."""

    label = "last purchase"
    aggregate = Max
    column = "last_purchase_at"

    def person_instant(self, person: Person, ev: Evaluator) -> dt.datetime | None:
        return max((t.occurred_at for t in ev.orders(person, None)), default=None)


@register("first_purchase")
class FirstPurchaseCriterion(PurchaseInstant):
    """The earliest order up to `as_of`. No orders matches `never` only."""

    label = "first purchase"
    aggregate = Min
    column = "first_purchase_at"

    def person_instant(self, person: Person, ev: Evaluator) -> dt.datetime | None:
        return min((t.occurred_at for t in ev.orders(person, None)), default=None)


@register("visited_branch")
class VisitedBranchCriterion(Criterion):
    """Has an order up to `as_of` (within `window_days` when set) at one of the branch codes.

    Orders without a branch never match; no orders never matches (never NULL).
    """

    label = "visited branch"
    group = GROUP
    ops: ClassVar[tuple[str, ...]] = ("in",)
    extras = frozenset({"window_days"})

    def clean_value(self, op: str, value: Any) -> Any:
        return clean_names(value)

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        orders = ev.orders(person, condition.option("window_days"))
        return any(t.branch in condition.value for t in orders)

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {"value": distinct_names(Branch.objects.filter(merchant=merchant), "code")}

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        orders = transactions(ctx, window_days=condition.option("window_days"))
        return customers_in(orders.filter(branch__code__in=condition.value), "customer", ctx)

    def describe(self, condition: Condition) -> str:
        text = f"visited branch {describe_list(condition.value)}"
        window = condition.option("window_days")
        return text if window is None else f"{text} in the last {window} days"


@register("rewards_redeemed")
class RewardsRedeemedCriterion(WindowedNumber):
    """Number of redemptions up to `as_of` (within `window_days` when set); none is 0."""

    label = "rewards redeemed"
    unit = "redemptions"

    def person_number(self, condition: Condition, person: Person, ev: Evaluator) -> Any:
        window = condition.option("window_days")
        return sum(ev.in_window(redeemed, window) for redeemed in person.redemptions)

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        op, value = condition.op, condition.value
        if self.use_fast(condition, ctx):
            return compare(F("redemptions_count"), op, value)
        qs = Redemption.objects.filter(merchant=ctx.merchant, redeemed_at__lte=ctx.as_of)
        window = condition.option("window_days")
        if window is not None:
            qs = qs.filter(redeemed_at__gte=ctx.as_of - dt.timedelta(days=window))
        return count_compared(qs, "customer", op, value, ctx, Count("pk"))


#: The line item attribute each product list of `purchased` names.
_ITEM_ATTRIBUTES = {
    "product_types": "product_type",
    "brands": "brand",
    "categories": "category",
    "skus": "sku",
}


@register("purchased")
class PurchasedCriterion(NumberCriterion):
    """Units of matching products bought in orders up to `as_of` (within `window_days`).

    A line item matches when its product satisfies every non-empty list of `products`
    (each any-of, case-insensitive). No matching line item (or no orders) is 0 units, so
    `eq 0` means "never bought it". With `last_within_days K`, the latest order with a
    matching line item (regardless of the window) must also lie within K days of `as_of`.
    The fast path reads `CustomerProductStats`, except for unit counts within a window
    (other than "at least one" / "none"), which only the line items know.
    """

    label = "purchased"
    group = GROUP
    unit = "units"
    ops: ClassVar[tuple[str, ...]] = NUMBER_OPS
    extras = frozenset({"window_days", "products", "last_within_days"})

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        lists = [
            (_ITEM_ATTRIBUTES[key], {n.lower() for n in names})
            for key, names in condition.option("products")
        ]

        def matches(item: Item) -> bool:
            return all(getattr(item, attribute).lower() in names for attribute, names in lists)

        windowed: list[Txn] = ev.orders(person, condition.option("window_days"))
        units = sum(i.quantity for t in windowed for i in t.items if matches(i))
        if not ev.number(units, condition.op, condition.value):
            return False
        recent = condition.option("last_within_days")
        if recent is None:
            return True
        last = max(
            (t.occurred_at for t in ev.orders(person, None) if any(matches(i) for i in t.items)),
            default=None,
        )
        return last is not None and last >= ev.as_of - dt.timedelta(days=recent)

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        products = Product.objects.filter(merchant=merchant)
        return {
            f"products.{key}": distinct_names(products, column)
            for key, column in PRODUCT_LISTS.items()
        }

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
                raise CleanError(f"{shown(key)} is not a product list", f"products.{key}")
            names = clean_names(raw, key=f"products.{key}", allow_empty=True)
            if names:
                lists.append((key, names))
        if not lists:
            raise CleanError("at least one product list must be non-empty", "products")
        cleaned["products"] = tuple(sorted(lists))
        return cleaned

    @staticmethod
    def products(condition: Condition, ctx: CompileContext) -> QuerySet[Product]:
        """The merchant's products matching every non-empty list (each any-of, any case)."""
        qs = Product.objects.filter(merchant=ctx.merchant).order_by()
        for key, names in condition.option("products"):
            alias = f"lower_{key}"
            qs = qs.alias(**{alias: Lower(PRODUCT_LISTS[key])}).filter(
                **{f"{alias}__in": sorted({n.lower() for n in names})}
            )
        return qs

    def line_items(
        self, condition: Condition, ctx: CompileContext, window_days: int | None
    ) -> QuerySet[LineItem]:
        """Line items of matching products in the merchant's orders up to `as_of`."""
        qs = LineItem.objects.filter(
            id_in("product", self.products(condition, ctx).values("pk")),
            transaction__merchant=ctx.merchant,
            transaction__kind=TransactionKind.PURCHASE,
            transaction__occurred_at__lte=ctx.as_of,
        )
        if window_days is not None:
            qs = qs.filter(transaction__occurred_at__gte=ctx.as_of - dt.timedelta(days=window_days))
        return qs

    def buyers(
        self, condition: Condition, ctx: CompileContext, days: int | None
    ) -> tuple[QuerySet[Any], str]:
        """Rows of matching products in orders within `days` of `as_of` when set, and the
        name of their customer column: product stats on the fast path, else line items."""
        if ctx.fast:
            stats = CustomerProductStats.objects.filter(
                id_in("product", self.products(condition, ctx).values("pk")),
                merchant=ctx.merchant,
            )
            if days is not None:
                stats = stats.filter(last_purchased_at__gte=ctx.as_of - dt.timedelta(days=days))
            return stats, "customer"
        return self.line_items(condition, ctx, days), ITEM_CUSTOMER

    def bought(self, condition: Condition, ctx: CompileContext, days: int | None) -> Q:
        """Has bought a matching product (in an order within `days` of `as_of`, when set)."""
        rows, field = self.buyers(condition, ctx, days)
        return customers_in(rows, field, ctx)

    def units_set(self, condition: Condition, ctx: CompileContext, *, failing: bool) -> Any:
        """Customers with matching purchases whose units pass (or with `failing`, fail) the
        comparison. With `last_within_days`, only customers who also bought within those
        days are grouped, since no other customer can match: far fewer rows to sum."""
        window = condition.option("window_days")
        rows: QuerySet[Any]
        if ctx.fast and window is None:
            (rows, field), units = self.buyers(condition, ctx, None), Sum("units")
        else:
            rows, field = self.line_items(condition, ctx, window), ITEM_CUSTOMER
            units = Sum("quantity")
        recent = condition.option("last_within_days")
        if recent is not None:
            recent_rows, recent_field = self.buyers(condition, ctx, recent)
            recent_buyers = restricted(recent_rows, recent_field, ctx).values(recent_field)
            rows = rows.filter(**{f"{field}__in": recent_buyers})
        test = compare(F("units_sum"), condition.op, condition.value)
        grouped = restricted(rows, field, ctx).values(field).annotate(units_sum=units)
        return grouped.filter(~test if failing else test).values(field)

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        op, value = condition.op, condition.value
        if (op, value) in SOME_UNITS or (op, value) in NO_UNITS:
            # Units are whole numbers >= 0 (quantities are >= 1), so "at least one unit" is
            # "a matching line item exists": no per-customer SUM. Its negation is exact.
            some = self.bought(condition, ctx, condition.option("window_days"))
            q = some if (op, value) in SOME_UNITS else ~some
        elif holds(op, value, 0):
            # Customers without matching purchases (0 units) match: the complement of those
            # whose units fail.
            q = ~Q(pk__in=self.units_set(condition, ctx, failing=True))
        else:
            q = Q(pk__in=self.units_set(condition, ctx, failing=False))
        recent = condition.option("last_within_days")
        if recent is not None:
            q &= self.bought(condition, ctx, recent)
        return q

    def standalone(self, condition: Condition, ctx: CompileContext) -> QuerySet[Any] | None:
        """ "Bought at least once (within N days)" and "more than K units" (without a
        window) are sets of buyers, counted from the product stats alone (each id once)."""
        op, value = condition.op, condition.value
        window = condition.option("window_days")
        if not ctx.fast or holds(op, value, 0):
            return None
        if (op, value) in SOME_UNITS:
            # Bought within the window and within the last K days: the latest matching
            # order lies within the shorter of the two.
            limits = [d for d in (window, condition.option("last_within_days")) if d is not None]
            rows, field = self.buyers(condition, ctx, min(limits) if limits else None)
            return restricted(rows, field, ctx).values(field).distinct()
        if window is not None:
            return None
        return self.units_set(condition, ctx, failing=False)

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
