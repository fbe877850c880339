"""Profile criteria: current values of the customer row (not historical, `as_of` only
decides "today" for age and birthdays and the reference instant of time operators).

Every class here is in the builder's "Profile" group."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from django.db import connection
from django.db.models import Count, F, Func, IntegerField, Q, QuerySet
from django.db.models.functions import Lower
from django.db.models.lookups import Exact, In

from customers.models import Branch, Customer, CustomerTag, Gender, Tag, Tier
from segments.criteria.base import (
    BIRTHDAY_OPS,
    MATCH_NONE,
    TAG_OPS,
    ChoiceCriterion,
    CleanError,
    CompileContext,
    Criterion,
    IdArray,
    NumberCriterion,
    TimeCriterion,
    clean_int,
    clean_names,
    clean_null,
    customer_set,
    customers_in,
    distinct_names,
    register,
)
from segments.rule_tree import Condition

if TYPE_CHECKING:
    from customers.models import Merchant
    from segments.evaluate import Evaluator, Person
    from segments.models import Segment

GROUP = "Profile"


class Cardinality(Func):
    """`cardinality(array)`: the number of elements of a PostgreSQL array."""

    function = "cardinality"
    output_field = IntegerField()


def _lowered(names: tuple[str, ...]) -> list[str]:
    return sorted({name.lower() for name in names})


@register("gender")
class GenderCriterion(ChoiceCriterion):
    """Gender is one of the listed values. Never missing (`unspecified` is a value)."""

    label = "gender"
    group = GROUP
    choices = tuple(Gender.values)

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        return Q(gender__in=names)

    def person_value(self, person: Person) -> str | None:
        return person.gender


@register("customer_type")
class CustomerTypeCriterion(ChoiceCriterion):
    """Customer type is one of the names, compared case-insensitively.

    No type (blank) never matches `in` and always matches `not_in`: the names are
    non-blank, and the column is NOT NULL, so `NOT (type IN ...)` is exact.
    """

    label = "customer type"
    group = GROUP
    any_case = True

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        return Q(In(Lower("customer_type"), _lowered(names)))

    def person_value(self, person: Person) -> str | None:
        return person.customer_type

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {
            "value": distinct_names(Customer.objects.filter(merchant=merchant), "customer_type")
        }


@register("tier")
class TierCriterion(ChoiceCriterion):
    """Tier name is one of the names (case-insensitive, like the tier's uniqueness).

    No tier never matches `in` and always matches `not_in`: `tier IS NOT NULL AND tier IN
    (ids of the merchant's tiers so named)` is FALSE, never NULL, for a customer without one.
    """

    label = "tier"
    group = GROUP
    any_case = True

    def person_value(self, person: Person) -> str | None:
        return person.tier

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {"value": distinct_names(Tier.objects.filter(merchant=merchant), "name")}

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        tiers = Tier.objects.alias(lname=Lower("name")).filter(
            merchant=ctx.merchant, lname__in=_lowered(names)
        )
        return Q(tier__isnull=False) & Q(tier__in=tiers.order_by().values("pk"))


@register("home_branch")
class HomeBranchCriterion(ChoiceCriterion):
    """Home branch code is one of the codes (exact: codes are identifiers).

    No home branch never matches `in` and always matches `not_in` (guarded like `tier`).
    """

    label = "home branch"
    group = GROUP

    def person_value(self, person: Person) -> str | None:
        return person.home_branch

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {"value": distinct_names(Branch.objects.filter(merchant=merchant), "code")}

    def matches(self, names: tuple[str, ...], ctx: CompileContext) -> Q:
        branches = Branch.objects.filter(merchant=ctx.merchant, code__in=names)
        return Q(home_branch__isnull=False) & Q(home_branch__in=branches.values("pk"))


@register("tags")
class TagsCriterion(Criterion):
    """Tags: `has_any` / `has_all` / `has_none` of the names, case-insensitively.

    A customer without tags matches `has_none` only. `has_none` is the negation of
    `has_any`; `has_all` holds when the customer has as many of the named tags as there are
    distinct names (a name that is no tag of the merchant matches nobody), one test however
    many names (SQLite refuses an expression nested 1,000 deep, which one test per name made
    of a long list). On PostgreSQL the tests are on the row's own tag ids (`tag_ids &&
    ARRAY(ids of the names)`, `tag_ids @> ARRAY(...)` with the array's length, never NULL:
    the column is NOT NULL and ARRAY() of nothing is an empty array); on SQLite on the
    customer's tag rows (`customers_in`, `customer_set`).
    """

    label = "tags"
    group = GROUP
    ops: ClassVar[tuple[str, ...]] = TAG_OPS

    def clean_value(self, op: str, value: Any) -> Any:
        return clean_names(value)

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        names = {name.lower() for name in condition.value}
        if condition.op == "has_any":
            return bool(person.tags & names)
        if condition.op == "has_all":
            return names <= person.tags
        return not (person.tags & names)

    def options(
        self, *, merchant: Merchant, segment: Segment | None = None
    ) -> dict[str, list[str]]:
        return {"value": distinct_names(Tag.objects.filter(merchant=merchant), "name")}

    @staticmethod
    def _tag_ids(names: list[str], ctx: CompileContext) -> IdArray:
        ids = Tag.objects.alias(lname=Lower("name")).filter(merchant=ctx.merchant, lname__in=names)
        return IdArray(ids.values("pk"))

    @staticmethod
    def _tag_rows(names: list[str], ctx: CompileContext) -> QuerySet[CustomerTag]:
        return CustomerTag.objects.alias(lname=Lower("tag__name")).filter(
            tag__merchant=ctx.merchant, lname__in=names
        )

    @classmethod
    def _has(cls, names: list[str], ctx: CompileContext) -> Q:
        if connection.vendor == "postgresql":
            return Q(tag_ids__overlaps=cls._tag_ids(names, ctx))
        return customers_in(cls._tag_rows(names, ctx), "customer", ctx)

    @classmethod
    def _has_all(cls, names: list[str], ctx: CompileContext) -> Q:
        if len(names) == 1:
            return cls._has(names, ctx)
        if connection.vendor == "postgresql":
            ids = cls._tag_ids(names, ctx)
            return Q(tag_ids__contains_all=ids) & Q(Exact(Cardinality(ids), len(names)))
        # Tags are unique per customer, and names per merchant (any case): n rows are n names.
        return customer_set(
            cls._tag_rows(names, ctx),
            "customer",
            ctx,
            annotations={"named": Count("pk")},
            test=Q(named=len(names)),
            empty_matches=False,
        )

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        names = _lowered(condition.value)
        if condition.op == "has_all":
            return self._has_all(names, ctx)
        q = self._has(names, ctx)
        return q if condition.op == "has_any" else ~q


def shift_years(day: dt.date, years: int) -> dt.date:
    """`day` moved by whole years; 29 February becomes 28 February in other years."""
    year = day.year + years
    if day.month == 2 and day.day == 29 and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return day.replace(year=year)


@register("age")
class AgeCriterion(NumberCriterion):
    """Age in completed years on "today" (merchant-local date of `as_of`).

    Compiled as birth-date bounds (`age >= n` is `birth_date <= today - n years`), so the
    birth-date index applies. No birth date never matches any op, `ne` included (guarded
    with IS NOT NULL); the negation of an age condition does match it.
    """

    label = "age"
    group = GROUP
    unit = "years"
    maximum = 150

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        if person.birth_date is None:
            return False
        born, today = person.birth_date, ev.today
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        return ev.number(age, condition.op, condition.value)

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        today = ctx.today

        def at_least(years: int) -> Q:
            return Q(birth_date__lte=shift_years(today, -years))

        def below(years: int) -> Q:
            return Q(birth_date__gt=shift_years(today, -years))

        op, value = condition.op, condition.value
        q = {
            "gte": lambda: at_least(value),
            "gt": lambda: at_least(value + 1),
            "lt": lambda: below(value),
            "lte": lambda: below(value + 1),
            "eq": lambda: at_least(value) & below(value + 1),
            "ne": lambda: below(value) | at_least(value + 1),
            "between": lambda: at_least(value[0]) & below(value[1] + 1),
        }[op]()
        return Q(birth_date__isnull=False) & q


def birthday_days(op: str, value: int | None, today: dt.date) -> list[dt.date]:
    """The calendar days a birthday must fall on for `op` (merchant-local `today`)."""
    if op == "today":
        return [today]
    if op == "this_week":
        monday = today - dt.timedelta(days=today.weekday())
        return [monday + dt.timedelta(days=i) for i in range(7)]
    if op == "this_month":
        last = calendar.monthrange(today.year, today.month)[1]
        return [today.replace(day=d) for d in range(1, last + 1)]
    assert value is not None
    return [today + dt.timedelta(days=i) for i in range(value)]


def _birthday_on(birth: dt.date, day: dt.date) -> bool:
    """Is `day` the birthday of someone born on `birth`? (29 February: 28 in other years.)"""
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(day.year):
        return (day.month, day.day) == (2, 28)
    return (day.month, day.day) == (birth.month, birth.day)


def birthday_month_days(days: list[dt.date]) -> dict[int, set[int]]:
    """(month -> days of month) a birth date may have; 29 Feb joins 28 Feb in other years."""
    wanted: dict[int, set[int]] = {}
    for day in days:
        wanted.setdefault(day.month, set()).add(day.day)
        if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
            wanted[2].add(29)
    return wanted


@register("birthday")
class BirthdayCriterion(Criterion):
    """Birthday falls `today`, `this_week` (Monday to Sunday), `this_month`, or within
    `next_days N` (today and the N-1 days after it), on the merchant-local date of `as_of`.

    People born on 29 February celebrate on 28 February in non-leap years. No birth date
    never matches.
    """

    label = "birthday"
    group = GROUP
    ops: ClassVar[tuple[str, ...]] = BIRTHDAY_OPS

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        if person.birth_date is None:
            return False
        today, op = ev.today, condition.op
        if op == "this_month":
            return person.birth_date.month == today.month
        if op == "today":
            days = [today]
        elif op == "this_week":
            monday = today - dt.timedelta(days=today.weekday())
            days = [monday + dt.timedelta(days=i) for i in range(7)]
        else:
            days = [today + dt.timedelta(days=i) for i in range(condition.value)]
        return any(_birthday_on(person.birth_date, day) for day in days)

    def clean_value(self, op: str, value: Any) -> Any:
        if op == "next_days":
            return clean_int(value, minimum=1, maximum=366)
        return clean_null(value, op)

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        wanted = birthday_month_days(birthday_days(condition.op, condition.value, ctx.today))
        # No MATCH_NONE seed: `pk IS NULL OR month = m` would hide the birth-month index.
        parts = [
            Q(birth_date__month=month)
            if len(days) >= 29 and days >= set(range(1, 30))
            else Q(birth_date__month=month, birth_date__day__in=sorted(days))
            for month, days in sorted(wanted.items())
        ]
        q = parts[0] if parts else MATCH_NONE
        for part in parts[1:]:
            q |= part
        return Q(birth_date__isnull=False) & q

    def describe(self, condition: Condition) -> str:
        if condition.op == "next_days":
            return f"birthday within the next {condition.value} days"
        return f"birthday {condition.op.replace('_', ' ')}"


@register("member_since")
class MemberSinceCriterion(TimeCriterion):
    """When the customer joined (`joined_at`, never missing): time ops but never/exists."""

    label = "member since"
    group = GROUP
    ops: ClassVar[tuple[str, ...]] = ("within_days", "before_days", "before", "after", "between")

    def person_instant(self, person: Person, ev: Evaluator) -> dt.datetime | None:
        return person.joined_at

    def instant_expression(self, condition: Condition, ctx: CompileContext) -> F:
        return F("joined_at")


@register("last_contacted")
class LastContactedCriterion(TimeCriterion):
    """Last time a campaign reached the customer (`last_contacted_at`).

    Never contacted (NULL) matches `never` only.
    """

    label = "last contacted"
    group = GROUP
    reads = frozenset({"last_contacted_at"})

    def person_instant(self, person: Person, ev: Evaluator) -> dt.datetime | None:
        return person.last_contacted_at

    def instant_expression(self, condition: Condition, ctx: CompileContext) -> F:
        return F("last_contacted_at")


class OptInCriterion(Criterion):
    """Consent flag `is` true/false (NOT NULL column, so always two-valued)."""

    label = ""
    group = GROUP
    ops: ClassVar[tuple[str, ...]] = ("is",)
    column = ""

    def evaluate(self, condition: Condition, person: Person, ev: Evaluator) -> bool:
        return person.opt_in[self.column] is condition.value

    def clean_value(self, op: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise CleanError("expected true or false")
        return value

    def compile(self, condition: Condition, ctx: CompileContext) -> Q:
        return Q(**{self.column: condition.value})

    def describe(self, condition: Condition) -> str:
        return f"{self.label} is {'yes' if condition.value else 'no'}"


@register("email_opt_in")
class EmailOptInCriterion(OptInCriterion):
    """Email consent is true/false. Never missing."""

    label = "email opt-in"
    column = "email_opt_in"


@register("sms_opt_in")
class SmsOptInCriterion(OptInCriterion):
    """SMS consent is true/false. Never missing."""

    label = "SMS opt-in"
    column = "sms_opt_in"


@register("push_opt_in")
class PushOptInCriterion(OptInCriterion):
    """Push consent is true/false. Never missing."""

    label = "push opt-in"
    column = "push_opt_in"


@register("points_balance")
class PointsBalanceCriterion(NumberCriterion):
    """Spendable points (NOT NULL, 0 when none)."""

    label = "points balance"
    group = GROUP
    unit = "points"

    def person_number(self, condition: Condition, person: Person, ev: Evaluator) -> Any:
        return person.points_balance

    def value_expression(self, condition: Condition, ctx: CompileContext) -> F:
        return F("points_balance")


@register("lifetime_points")
class LifetimePointsCriterion(NumberCriterion):
    """Points ever earned (NOT NULL, 0 when none)."""

    label = "lifetime points"
    group = GROUP
    unit = "points"

    def person_number(self, condition: Condition, person: Person, ev: Evaluator) -> Any:
        return person.lifetime_points

    def value_expression(self, condition: Condition, ctx: CompileContext) -> F:
        return F("lifetime_points")
