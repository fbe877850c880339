"""The criterion registry and the building blocks every criterion shares.

A criterion is one field of the rule contract (`docs/segment-rules.md`), and the one place
that field lives: adding a field is one class in one module (and its tests). It knows
- which operators it accepts and which extra keys (`window_days`, ...) a condition may carry,
- how to clean a condition's JSON value into a typed value (raising `CleanError`),
- how to compile a cleaned condition into a `Q` over the merchant's `CustomerMetrics` rows
  (one per customer, primary key = the customer's id),
- how to evaluate it in Python for one customer's own rows (`evaluate`, what incremental
  updates use; written from the contract, not from the SQL, so the two check each other),
- how the builder shows it: its field group, the value widget of each operator, and the
  merchant's own names its multi-selects offer (`group`, `widget()`, `options()`).

A system check (`segments.checks`) refuses to start when a registered criterion lacks any of
these, the way django-filter's `Filter` declares its form field.

Compiled `Q`s test the outer per-customer row's own columns or its id against an
uncorrelated subquery (`customers_in()`, `customer_set()`), never join many-valued
relations, so they compose under AND/OR/NOT without duplicate rows.
Every compiled `Q` is two-valued: it never evaluates to SQL NULL, so the negation of a
group is the exact complement of the group. Nullable values are guarded with an explicit
`IS NOT NULL` conjunct (`FALSE AND NULL` is `FALSE`); a customer without rows to count or
sum has 0, selected as the complement of the customers whose rows fail.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django.db import connection
from django.db.models import F, Func, Lookup, Q, QuerySet
from django.db.models.expressions import Combinable
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
)

from customers.fields import IdListField
from segments.rule_tree import shown, text_problem

if TYPE_CHECKING:
    from customers.models import Merchant
    from segments.evaluate import Evaluator, Person
    from segments.models import Segment
    from segments.rule_tree import Condition

#: Matches every customer / no customer. Explicit, because `Q()` is neither: it vanishes
#: when combined (`Q() | x == x`), which silently turns "match none" into "match all".
MATCH_ALL = Q(pk__isnull=False)
MATCH_NONE = Q(pk__isnull=True)

NUMBER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
TIME_OPS = ("within_days", "before_days", "never", "exists", "before", "after", "between")
CHOICE_OPS = ("in", "not_in")
TAG_OPS = ("has_any", "has_all", "has_none")
BIRTHDAY_OPS = ("today", "this_week", "this_month", "next_days")
KNOWN_OPS = frozenset((*NUMBER_OPS, *TIME_OPS, *CHOICE_OPS, *TAG_OPS, *BIRTHDAY_OPS, "is"))
#: Extra keys a condition may carry, besides field/op/value, when its criterion allows them.
KNOWN_EXTRAS = frozenset({"window_days", "products", "last_within_days"})

#: Upper bound for day counts: a century is more than any rule needs and keeps dates valid.
MAX_DAYS = 36_500

#: The value widgets the builder can show (`templates/segments/partials/node.html`): "none"
#: (the operator takes no value), "names" (a multi-select of names), "number", "money",
#: "days", "date", "number_pair", "money_pair", "date_pair", "bool".
WIDGET_KINDS = frozenset(
    {"none", "names", "number", "money", "days", "date", "number_pair", "money_pair", "date_pair"}
    | {"bool"}
)
#: The builder's field groups, in the order the field select shows them.
FIELD_GROUPS = ("Profile", "Purchases", "Scores", "Segments")
#: How many of a merchant's names a multi-select offers at most.
MAX_OPTIONS = 1000

OP_SYMBOLS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


class CleanError(Exception):
    """A value that does not fit; `key` is the condition key it concerns ("value", ...)."""

    def __init__(self, message: str, key: str = "value") -> None:
        super().__init__(message)
        self.message = message
        self.key = key


@dataclass(frozen=True)
class CompileContext:
    """What a criterion may know while compiling: never the clock, always `as_of`.

    The outer queryset is over the merchant's `CustomerMetrics` rows, whose primary key is
    the customer's id (`OuterRef("pk")` is the customer) and which carry the profile columns
    under the customer's names. `today` is the merchant-local date of `as_of`. `fast` allows
    reading the per-customer aggregates (metrics, product stats: exact as of now) instead of
    transactions and line items. `customer_ids`, when set, are the only customers the query
    evaluates: uncorrelated per-customer aggregates (`customer_set()`) are then computed for
    them alone instead of for the whole merchant. `segment_stack` holds the slugs being
    compiled, to stop runaway recursion through segments whose stored rules were edited into
    a cycle behind validation's back; `compile_rules` compiles another segment's rules.
    """

    merchant: Merchant
    as_of: dt.datetime
    today: dt.date
    fast: bool
    customer_ids: tuple[int, ...] | None = None
    segment_stack: tuple[str, ...] = ()
    #: How the engine compiles another segment's stored rules (for the `segment` field):
    #: handed in by `segments.engine`, so no criterion imports the engine.
    compile_rules: Callable[[Any, CompileContext], Q] | None = None

    @property
    def tz(self) -> dt.tzinfo:
        return self.merchant.tzinfo

    def local_midnight(self, day: dt.date) -> dt.datetime:
        """The instant the merchant-local `day` starts (a local date bound as an instant)."""
        return dt.datetime.combine(day, dt.time(0), tzinfo=self.tz).astimezone(dt.UTC)


@dataclass(frozen=True)
class ValidationContext:
    """What merchant-level checks need (`segment`: the segment being edited, if any)."""

    merchant: Merchant
    segment: Segment | None = None
    errors: list[str] = field(default_factory=list)
    #: Conditions of the other segments the tree uses, once per use (`segment` criterion).
    expanded_conditions: list[int] = field(default_factory=list)


class Criterion:
    """One field of the rule contract. Subclass, set the class attributes, register.

    Subclasses implement `compile()`; most inherit it from a family base class
    (`NumberCriterion`, `TimeCriterion`, `ChoiceCriterion`) and only supply the expression
    or column they compare.
    """

    key: ClassVar[str]
    label: ClassVar[str]
    ops: ClassVar[tuple[str, ...]]
    extras: ClassVar[frozenset[str]] = frozenset()
    #: The customer columns a bulk change may announce alone (`customers_changed`'s
    #: `fields`, e.g. `last_contacted_at`) that this criterion reads: such a change refreshes
    #: only the segments with a criterion that reads one (a test keeps this exact).
    reads: ClassVar[frozenset[str]] = frozenset()
    #: The builder's field group (one of `FIELD_GROUPS`).
    group: ClassVar[str] = ""
    #: What a number of this field counts, shown after its input ("units", "years"); money
    #: fields show the merchant's currency, day counts "days".
    unit: ClassVar[str] = ""
    #: The step of the builder's number inputs for this field ("0.01" for a probability);
    #: money inputs step by cents whatever this says.
    step: ClassVar[str] = "1"

    # -- cleaning -------------------------------------------------------------------------

    def clean_value(self, op: str, value: Any) -> Any:
        """Return the typed value for `op`, or raise `CleanError`."""
        raise NotImplementedError

    def clean_extras(self, op: str, extras: Mapping[str, Any]) -> dict[str, Any]:
        """Return the typed extra keys; default: `window_days` as optional days."""
        cleaned: dict[str, Any] = {}
        for key, raw in extras.items():
            if key in ("window_days", "last_within_days"):
                cleaned[key] = None if raw is None else clean_days(raw, key=key)
            else:  # pragma: no cover - registry checks every declared extra is handled
                raise CleanError(f'"{key}" is not handled by {self.key}', key=key)
        return cleaned

    def check(self, condition: Condition, path: str, ctx: ValidationContext) -> None:
        """Merchant-level checks (e.g. referenced segments exist); append to `ctx.errors`."""

    # -- compiling ------------------------------------------------------------------------

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        raise NotImplementedError

    def standalone(self, condition: Condition, ctx: CompileContext) -> QuerySet[Any] | None:
        """The matching customers' ids as a query of their own (each id once), when that is
        cheaper than filtering the merchant's rows: a segment of this one condition is then
        counted without reading the per-customer rows at all. None (the default) when the
        condition has no such form. Must be scoped to `ctx.merchant` by the rows it reads."""
        return None

    # -- evaluating in Python ------------------------------------------------------------

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        """Whether `person` (one customer's profile and history) matches at `ev.as_of`.

        The contract read literally over the customer's own rows, for incremental updates;
        `ev` has the instant, the merchant's "today" and the shared readings of the
        contract (time operators, windows, numbers, other segments)."""
        raise NotImplementedError

    # -- the builder ----------------------------------------------------------------------

    def widget(self, op: str) -> str:
        """The value widget `op` needs (one of `WIDGET_KINDS`); by operator here, the
        families refine it (numbers and money, date pairs)."""
        if op in ("never", "exists", "today", "this_week", "this_month"):
            return "none"
        if op in ("within_days", "before_days", "next_days"):
            return "days"
        if op in ("before", "after"):
            return "date"
        if op == "is":
            return "bool"
        if op in ("in", "not_in", "has_any", "has_all", "has_none"):
            return "names"
        return "number"

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        """The merchant's own names the builder offers in this field's multi-selects: under
        "value" for the value, "products.<list>" for the `purchased` sub-form. `segment` is
        the segment being edited (it is not offered to itself). Default: none."""
        return {}

    # -- describing -----------------------------------------------------------------------

    def describe(self, condition: Condition) -> str:
        return f"{self.label} {describe_op(condition.op, condition.value)}"

    #: Columns of the customer's metrics row "why in, why out" reads to show the customer's
    #: own value next to the condition (`explain_value`); none by default.
    explain_columns: ClassVar[tuple[str, ...]] = ()

    def explain_expressions(self, ctx: CompileContext) -> Mapping[str, Any]:
        """Values beyond the row's own columns that `explain_value` reads, by name: query
        expressions over the merchant's rows (the merchant's score model, say), read in the
        explanation's one query, once however many conditions name them. Scoped to
        `ctx.merchant` by the rows they read. None by default."""
        return {}

    def explain_value(self, values: Mapping[str, Any], condition: Condition) -> str:
        """The customer's value, in words, from `explain_columns` and
        `explain_expressions` (shown by explain next to `condition`)."""
        return ""


def distinct_names(qs: QuerySet[Any], column: str) -> list[str]:
    """The distinct non-blank values of `column`, sorted, at most `MAX_OPTIONS` (for
    `Criterion.options`)."""
    values = qs.exclude(**{column: ""}).order_by(column).values_list(column, flat=True).distinct()
    return [str(v) for v in values[:MAX_OPTIONS]]


_C = TypeVar("_C", bound=type[Criterion])

REGISTRY: dict[str, Criterion] = {}
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register(key: str) -> Callable[[_C], _C]:
    """Class decorator: register a criterion under its contract key, checking it first.

    A misconfigured criterion fails at import time (like a system check), not when a
    merchant's rule happens to use it.
    """

    def decorate(cls: _C) -> _C:
        if not _KEY_RE.match(key):
            raise TypeError(f"criterion key {key!r} is not a snake_case name")
        if key in REGISTRY:
            raise TypeError(f"criterion {key!r} is registered twice")
        if not issubclass(cls, Criterion):
            raise TypeError(f"{cls.__name__} is not a Criterion")
        if not (cls.__doc__ or "").strip():
            raise TypeError(f"{cls.__name__} needs a docstring stating its NULL semantics")
        ops = getattr(cls, "ops", ())
        if not ops or not set(ops) <= KNOWN_OPS:
            raise TypeError(f"{cls.__name__}.ops {ops!r} must be a non-empty set of known ops")
        if not set(cls.extras) <= KNOWN_EXTRAS:
            raise TypeError(f"{cls.__name__}.extras {set(cls.extras)!r} has unknown keys")
        if not getattr(cls, "label", ""):
            raise TypeError(f"{cls.__name__} needs a label")
        if cls.compile is Criterion.compile or cls.clean_value is Criterion.clean_value:
            raise TypeError(f"{cls.__name__} must implement clean_value() and compile()")
        cls.key = key
        REGISTRY[key] = cls()
        return cls

    return decorate


# -- value cleaners ---------------------------------------------------------------------------
#
# Every cleaner refuses what a database column or a date computation cannot hold, so a rule
# that validates can always be evaluated (`docs/segment-rules.md`, "Limits").

#: Whole numbers are 64-bit (SQLite's INTEGER, PostgreSQL's bigint).
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
#: Money within the range of the money columns, numeric(14, 2), with the four decimal
#: places of the sums and averages compared with it (numeric(20, 4)).
MONEY_PLACES = 4
MONEY_MAX = Decimal("999999999999.99")
#: Dates whose merchant-local midnight, and the day after, are instants Python can hold in
#: every time zone (years 1 to 9999 with a day to spare at each end).
MIN_DATE = dt.date(1, 1, 2)
MAX_DATE = dt.date(9999, 12, 30)
#: Names in one list (tags, SKUs, branch codes, segment slugs, ...).
MAX_NAMES = 1000
#: Characters of one name (the longest name column, a product's, holds 200).
MAX_NAME_LENGTH = 200


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if value is None or isinstance(value, (bool, int, float, str)):
        return shown(value)
    return type(value).__name__


def clean_int(
    value: Any, *, minimum: int = 0, maximum: int | None = None, key: str = "value"
) -> int:
    """A JSON integer (bools are not numbers) within bounds (64-bit at most)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CleanError(f"expected a whole number, got {_type_name(value)}", key)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise CleanError(f"expected a whole number, got {_type_name(value)}", key)
        value = int(value)
    minimum = max(minimum, INT_MIN)
    maximum = INT_MAX if maximum is None else min(maximum, INT_MAX)
    if value < minimum:
        raise CleanError(f"must be at least {minimum}, got {shown(value)}", key)
    if value > maximum:
        raise CleanError(f"must be at most {maximum}, got {shown(value)}", key)
    return int(value)


def clean_float(
    value: Any, *, minimum: float = 0.0, maximum: float = 1e12, key: str = "value"
) -> float:
    """A JSON number (bools are not numbers), finite, within bounds, as a float: what a
    model output (a probability, an expected number of orders) is compared with. Floats
    both sides, so SQL (double precision) and Python compare the same numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CleanError(f"expected a number, got {_type_name(value)}", key)
    if isinstance(value, int) and value.bit_length() > 64:
        raise CleanError(f"must be at most {maximum:g}, got {shown(value)}", key)
    number = float(value)
    if not math.isfinite(number):
        raise CleanError(f"expected a number, got {_type_name(value)}", key)
    if number < minimum:
        raise CleanError(f"must be at least {minimum:g}, got {shown(value)}", key)
    if number > maximum:
        raise CleanError(f"must be at most {maximum:g}, got {shown(value)}", key)
    return number


def clean_days(value: Any, *, key: str = "value") -> int:
    return clean_int(value, minimum=0, maximum=MAX_DAYS, key=key)


def clean_decimal(value: Any, *, allow_negative: bool = False, key: str = "value") -> Decimal:
    """Money: a JSON number or a numeric string, as a finite Decimal within the money
    columns' range (at most 999,999,999,999.99) with at most four decimal places."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise CleanError(f"expected a number, got {_type_name(value)}", key)
    if isinstance(value, int) and value.bit_length() > 64:
        raise CleanError(f"must be at most {MONEY_MAX}, got {shown(value)}", key)
    if isinstance(value, str) and len(value) > 64:
        raise CleanError(f"expected a number, got {shown(value)}", key)
    try:
        # str() first: Decimal(0.1) would carry the binary float's noise.
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise CleanError(f"expected a number, got {_type_name(value)}", key) from None
    if not number.is_finite():
        raise CleanError(f"expected a number, got {_type_name(value)}", key)
    if number < 0 and not allow_negative:
        raise CleanError(f"must be at least 0, got {shown(value)}", key)
    if abs(number) > MONEY_MAX:
        low = "-" if allow_negative else ""
        raise CleanError(
            f"must be between {low}{MONEY_MAX} and {MONEY_MAX}, got {shown(value)}", key
        )
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_PLACES:
        raise CleanError(
            f"money has at most {MONEY_PLACES} decimal places, got {shown(value)}", key
        )
    return number


def clean_date(value: Any, *, key: str = "value") -> dt.date:
    """An ISO date (YYYY-MM-DD) between `MIN_DATE` and `MAX_DATE`."""
    if not isinstance(value, str):
        raise CleanError(f"expected an ISO date (YYYY-MM-DD), got {_type_name(value)}", key)
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise CleanError(
            f"expected an ISO date (YYYY-MM-DD), got {_type_name(value)}", key
        ) from None
    if not MIN_DATE <= day <= MAX_DATE:
        raise CleanError(
            f"must lie between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}, "
            f"got {shown(value)}",
            key,
        )
    return day


def clean_names(value: Any, *, key: str = "value", allow_empty: bool = False) -> tuple[str, ...]:
    """A list of non-blank strings, stripped, duplicates dropped, order kept; at most
    `MAX_NAMES` of them, each at most `MAX_NAME_LENGTH` characters that can be stored."""
    if not isinstance(value, list):
        raise CleanError(f"expected a list of names, got {_type_name(value)}", key)
    if not value and not allow_empty:
        raise CleanError("expected a non-empty list of names", key)
    if len(value) > MAX_NAMES:
        raise CleanError(f"a list holds at most {MAX_NAMES:,} names, got {len(value):,}", key)
    names: dict[str, None] = {}  # ordered, and a linear pass: no quadratic `in list`
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise CleanError(f"expected a list of names, got {_type_name(item)} in it", key)
        problem = text_problem(item)
        if problem:
            raise CleanError(problem, f"{key}[{index}]")
        name = item.strip()
        if len(name) > MAX_NAME_LENGTH:
            raise CleanError(
                f"a name has at most {MAX_NAME_LENGTH} characters, got {len(name):,}",
                f"{key}[{index}]",
            )
        names[name] = None
    return tuple(names)


def clean_pair(value: Any, cleaner: Callable[[Any], Any]) -> tuple[Any, Any]:
    """`between`: [lo, hi] with lo <= hi, each cleaned by `cleaner`."""
    if not isinstance(value, list) or len(value) != 2:
        raise CleanError(f"expected [low, high], got {_type_name(value)}")
    lo, hi = cleaner(value[0]), cleaner(value[1])
    if lo > hi:
        raise CleanError(f"expected low <= high, got [{shown(value[0])}, {shown(value[1])}]")
    return (lo, hi)


def clean_null(value: Any, op: str) -> None:
    if value is not None:
        raise CleanError(f"{op} takes no value (null), got {_type_name(value)}")


# -- comparisons ------------------------------------------------------------------------------


def compare(expr: Combinable, op: str, value: Any) -> Q:
    """`expr <op> value` as a Q; `expr` must never be NULL (coalesce it first)."""
    if op == "between":
        lo, hi = value
        return Q(GreaterThanOrEqual(expr, lo)) & Q(LessThanOrEqual(expr, hi))
    if op == "ne":
        return ~Q(Exact(expr, value))
    lookup = {
        "eq": Exact,
        "gt": GreaterThan,
        "gte": GreaterThanOrEqual,
        "lt": LessThan,
        "lte": LessThanOrEqual,
    }[op]
    return Q(lookup(expr, value))


def holds(op: str, value: Any, number: Any) -> bool:
    """`number <op> value` in Python (what `compare` says in SQL)."""
    if op == "between":
        lo, hi = value
        return bool(lo <= number <= hi)
    return {
        "eq": number == value,
        "ne": number != value,
        "gt": number > value,
        "gte": number >= value,
        "lt": number < value,
        "lte": number <= value,
    }[op]


class IdArray(Func):
    """`ARRAY(subquery)::bigint[]`: the ids a subquery yields as one PostgreSQL array,
    computed once per query (an InitPlan)."""

    template = "ARRAY(%(expressions)s)::bigint[]"
    output_field = IdListField()


class EqualsAny(Lookup):
    """`column = ANY(array expression)` (PostgreSQL)."""

    lookup_name = "equals_any"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = compiler.compile(self.rhs)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


def id_in(field: str, ids: QuerySet[Any]) -> Q:
    """`field IN (ids)`. On PostgreSQL `field = ANY(ARRAY(ids))` instead: the few ids (a
    merchant's products of a brand, say) are computed once, and the planner filters by them
    rather than joining them, which made it enumerate every (customer, product) pair."""
    if connection.vendor == "postgresql":
        return Q(EqualsAny(F(field), IdArray(ids)))
    return Q(**{f"{field}__in": ids})


def restricted(rows: QuerySet[Any], customer_field: str, ctx: CompileContext) -> QuerySet[Any]:
    """`rows` without ordering, restricted to `ctx.customer_ids` when those are set."""
    rows = rows.order_by()
    if ctx.customer_ids is not None:
        rows = rows.filter(**{f"{customer_field}__in": ctx.customer_ids})
    return rows


def customers_in(rows: QuerySet[Any], customer_field: str, ctx: CompileContext) -> Q:
    """Customers with at least one of `rows`, as `pk IN (uncorrelated subquery)`.

    Why not `Exists(... OuterRef)`: both become a semi-join when the condition is a plain
    conjunct, but under OR, NOT or a FILTER (the funnel) a correlated `EXISTS` runs once per
    customer, while an uncorrelated `IN` is computed once and hashed. Two-valued: the
    subquery never yields NULL ids.
    """
    return Q(pk__in=restricted(rows, customer_field, ctx).values(customer_field))


def customer_set(
    rows: QuerySet[Any],
    customer_field: str,
    ctx: CompileContext,
    *,
    annotations: Mapping[str, Any],
    test: Q,
    empty_matches: bool,
) -> Q:
    """Customers whose aggregate over `rows` passes `test`, as `pk IN (uncorrelated
    subquery)`: the subquery groups `rows` by `customer_field` with `annotations` and keeps
    the groups passing `test` (a HAVING). `empty_matches` says whether a customer with no
    rows passes (a sum or count of nothing is 0 and may pass; an average of nothing never
    does); such customers are then selected as the complement of the groups that fail.

    Uncorrelated, so a count over a million customers aggregates the rows once (a hash join
    or hashed SubPlan) instead of once per customer; restricted to `ctx.customer_ids` when
    those are set. Two-valued: the subquery never yields NULL ids.
    """
    grouped = restricted(rows, customer_field, ctx).values(customer_field).annotate(**annotations)
    if empty_matches:
        return ~Q(pk__in=grouped.filter(~test).values(customer_field))
    return Q(pk__in=grouped.filter(test).values(customer_field))


def not_null(expr: Combinable) -> Q:
    return Q(IsNull(expr, False))


def is_null(expr: Combinable) -> Q:
    return Q(IsNull(expr, True))


def describe_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a probability of 1, not "1.0"
    return str(value)


def describe_list(names: tuple[str, ...]) -> str:
    return ", ".join(names)


def describe_op(op: str, value: Any) -> str:
    """The English for an operator and its value (shared by every family)."""
    if op in OP_SYMBOLS:
        return f"{OP_SYMBOLS[op]} {describe_number(value)}"
    if op == "between":
        lo, hi = value
        return f"between {describe_number(lo)} and {describe_number(hi)}"
    if op == "within_days":
        return f"within {value} days"
    if op == "before_days":
        return f"more than {value} days ago"
    if op == "never":
        return "never"
    if op == "exists":
        return "at any time"
    if op == "before":
        return f"before {value.isoformat()}"
    if op == "after":
        return f"on or after {value.isoformat()}"
    if op == "in":
        return f"is {value[0]}" if len(value) == 1 else f"is one of {describe_list(value)}"
    if op == "not_in":
        return f"is not {value[0]}" if len(value) == 1 else f"is none of {describe_list(value)}"
    if op == "has_any":
        return f"has any of {describe_list(value)}"
    if op == "has_all":
        return f"has all of {describe_list(value)}"
    if op == "has_none":
        return f"has none of {describe_list(value)}"
    if op == "is":
        return "is yes" if value else "is no"
    return f"{op} {value}"


# -- families ---------------------------------------------------------------------------------


class NumberCriterion(Criterion):
    """A number compared with `eq ne gt gte lt lte between`; subclasses give the expression.

    `value_expression()` must never be NULL (coalesce counts and sums to 0), so `ne` and
    negation stay exact complements.
    """

    ops: ClassVar[tuple[str, ...]] = NUMBER_OPS
    #: Whole numbers (counts, points, years) or decimals (money).
    money: ClassVar[bool] = False
    allow_negative: ClassVar[bool] = False
    maximum: ClassVar[int | None] = None

    def clean_scalar(self, value: Any) -> Any:
        if self.money:
            return clean_decimal(value, allow_negative=self.allow_negative)
        return clean_int(
            value, minimum=-(10**12) if self.allow_negative else 0, maximum=self.maximum
        )

    def clean_value(self, op: str, value: Any) -> Any:
        if op == "between":
            return clean_pair(value, self.clean_scalar)
        return self.clean_scalar(value)

    def value_expression(self, condition: Condition, ctx: CompileContext) -> Combinable:
        raise NotImplementedError

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        return compare(self.value_expression(condition, ctx), condition.op, condition.value)

    def widget(self, op: str) -> str:
        kind = "money" if self.money else "number"
        return f"{kind}_pair" if op == "between" else kind

    def person_number(self, condition: Condition, person: Person, ev: Evaluator) -> Any:
        """The customer's number, for the default `evaluate`."""
        raise NotImplementedError

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        return ev.number(self.person_number(condition, person, ev), condition.op, condition.value)


class TimeCriterion(Criterion):
    """An instant compared with the time operators of the contract.

    `within_days N`: in [as_of - N days, as_of]; `before_days N`: exists and before
    as_of - N days; `never` / `exists`; `before D` / `after D` / `between [D1, D2]` on the
    merchant-local date of the instant, compiled as instants at merchant-local midnight
    (so an index on the column still applies). A missing (NULL) instant matches `never`
    only; every other op guards with IS NOT NULL.
    """

    ops: ClassVar[tuple[str, ...]] = TIME_OPS

    def clean_value(self, op: str, value: Any) -> Any:
        if op in ("within_days", "before_days"):
            return clean_days(value)
        if op in ("never", "exists"):
            return clean_null(value, op)
        if op == "between":
            return clean_pair(value, clean_date)
        return clean_date(value)

    def instant_expression(self, condition: Condition, ctx: CompileContext) -> Combinable:
        raise NotImplementedError

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        return compare_instant(
            self.instant_expression(condition, ctx), condition.op, condition.value, ctx
        )

    def widget(self, op: str) -> str:
        return "date_pair" if op == "between" else super().widget(op)

    def person_instant(self, person: Person, ev: Evaluator) -> dt.datetime | None:
        """The customer's instant (None: missing), for the default `evaluate`."""
        raise NotImplementedError

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        return ev.time(self.person_instant(person, ev), condition.op, condition.value)


def compare_instant(expr: Combinable, op: str, value: Any, ctx: CompileContext) -> Q:
    """A time operator of the contract on the instant `expr` (see `TimeCriterion`)."""
    if op == "never":
        return is_null(expr)
    guard = not_null(expr)
    if op == "exists":
        return guard
    if op == "within_days":
        since = ctx.as_of - dt.timedelta(days=value)
        return guard & Q(GreaterThanOrEqual(expr, since)) & Q(LessThanOrEqual(expr, ctx.as_of))
    if op == "before_days":
        return guard & Q(LessThan(expr, ctx.as_of - dt.timedelta(days=value)))
    if op == "before":
        return guard & Q(LessThan(expr, ctx.local_midnight(value)))
    if op == "after":
        return guard & Q(GreaterThanOrEqual(expr, ctx.local_midnight(value)))
    lo, hi = value
    return (
        guard
        & Q(GreaterThanOrEqual(expr, ctx.local_midnight(lo)))
        & Q(LessThan(expr, ctx.local_midnight(hi + dt.timedelta(days=1))))
    )


class ChoiceCriterion(Criterion):
    """Membership in a list of names: `in` / `not_in`.

    `matches()` must be two-valued; `not_in` is its negation, so a customer with no value
    never matches `in` and always matches `not_in`.
    """

    ops: ClassVar[tuple[str, ...]] = CHOICE_OPS
    #: If set, the names a value may hold (e.g. the genders).
    choices: ClassVar[tuple[str, ...] | None] = None

    def clean_value(self, op: str, value: Any) -> Any:
        names = clean_names(value)
        if self.choices is not None:
            for name in names:
                if name not in self.choices:
                    raise CleanError(f"{shown(name)} is not one of {', '.join(self.choices)}")
        return names

    #: Whether names compare case-insensitively (in Python as in SQL).
    any_case: ClassVar[bool] = False

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        raise NotImplementedError

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        q = self.matches(condition.value, ctx)
        return q if condition.op == "in" else ~q

    def person_value(self, person: Person) -> str | None:
        """The customer's value (None or "": none), for `evaluate`."""
        raise NotImplementedError

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        actual = self.person_value(person) or None
        names = set(condition.value)
        if self.any_case:
            actual = actual.lower() if actual is not None else None
            names = {name.lower() for name in names}
        inside = actual is not None and actual in names
        return inside if condition.op == "in" else not inside

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {"value": list(self.choices)} if self.choices else {}
