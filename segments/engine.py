"""The segment rule engine: the public interface over `segments.rules` and `segments.criteria`.

- `validate_rules()` parses a rule tree and runs the merchant-level checks.
- `matching_rows()` compiles it to one queryset of the merchant's per-customer rows
  (`CustomerMetrics`); `count_matching()`, `matching_ids()` and `matching_customers()` read
  it; `explain()` and `funnel()` evaluate its parts; `describe()` reads it out.

Every evaluation reads one narrow row per customer (`CustomerMetrics`: purchase aggregates
plus a copy of the profile), never the wide customer row. The compiler is recursive (groups
of groups) and each criterion returns a two-valued `Q` over that row, built from its columns,
`Exists`/`Subquery`, or `pk IN (uncorrelated subquery)` for per-customer aggregates, so any
tree compiles to a single `WHERE` without joins to many-valued relations (no duplicates, no
`.distinct()`), and `negate` is the exact complement.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone

from customers.as_of import AS_OF_MAX, AS_OF_MIN, AS_OF_RANGE_ERROR
from customers.models import Customer, CustomerMetrics, Merchant
from segments.criteria import REGISTRY, CompileContext, ValidationContext
from segments.criteria.segments import MAX_EXPANDED_CONDITIONS
from segments.graph import raw_segment_slugs
from segments.models import Segment
from segments.rules import (
    MAX_RULES_BYTES,
    ROOT_PATH,
    RULES_TOO_LARGE_ERROR,
    Condition,
    Group,
    Node,
    RuleTree,
    RuleValidationError,
    child_path,
    parse_rules,
)

__all__ = [
    "ConditionResult",
    "EvaluationTimeout",
    "FunnelStep",
    "RuleTree",
    "RuleValidationError",
    "count_matching",
    "count_queryset",
    "count_sql",
    "count_with_funnel",
    "describe",
    "evaluation_settings",
    "explain",
    "funnel",
    "matching_customers",
    "matching_ids",
    "matching_rows",
    "referenced_segment_slugs",
    "time_limit",
    "validate_rules",
]


def validate_rules(data: object, *, merchant: Merchant, segment: Segment | None = None) -> RuleTree:
    """Parse `data` and check it against the merchant (referenced segments, cycles).

    `segment` is the segment being edited, so a reference back to it is a cycle. Raises
    `RuleValidationError` with every problem, each prefixed with its path.
    """
    if not isinstance(data, RuleTree):
        try:
            text = json.dumps(data, default=str, ensure_ascii=False)
        except (ValueError, RecursionError) as exc:
            raise RuleValidationError([f"{ROOT_PATH}: not valid rule JSON ({exc})"]) from None
        if len(text.encode("utf-8", "replace")) > MAX_RULES_BYTES:
            raise RuleValidationError(
                [f"{ROOT_PATH}: {RULES_TOO_LARGE_ERROR.format(limit=MAX_RULES_BYTES)}"]
            )
    tree = data if isinstance(data, RuleTree) else parse_rules(data)
    ctx = ValidationContext(merchant=merchant, segment=segment)
    count = 0
    for path, condition in tree.conditions():
        REGISTRY[condition.field].check(condition, path, ctx)
        count += 1
    expanded = count + sum(ctx.expanded_conditions)
    if not ctx.errors and expanded > MAX_EXPANDED_CONDITIONS:
        ctx.errors.append(
            f"{ROOT_PATH}: with the segments they use, the rules hold {expanded:,} conditions, "
            f"at most {MAX_EXPANDED_CONDITIONS:,}"
        )
    if ctx.errors:
        raise RuleValidationError(ctx.errors)
    return tree


def _tree(rules: dict[str, Any] | RuleTree) -> RuleTree:
    return rules if isinstance(rules, RuleTree) else parse_rules(rules)


def make_context(
    merchant: Merchant,
    as_of: dt.datetime | None,
    exact: bool | None,
    customer_ids: Collection[int] | None = None,
) -> CompileContext:
    """`exact=None` picks the fast path exactly when `as_of` is None (now). `customer_ids`
    restricts the evaluation to those customers (see `CompileContext`)."""
    if as_of is not None and timezone.is_naive(as_of):
        raise ValueError("as_of must be an aware datetime")
    if as_of is not None and not AS_OF_MIN <= as_of <= AS_OF_MAX:
        raise ValueError(AS_OF_RANGE_ERROR)
    fast = as_of is None if exact is None else not exact
    instant = as_of or timezone.now()
    return CompileContext(
        compile_rules=_compile_stored,
        merchant=merchant,
        as_of=instant,
        today=timezone.localtime(instant, merchant.tzinfo).date(),
        fast=fast,
        customer_ids=None if customer_ids is None else tuple(sorted(customer_ids)),
    )


def compile_node(node: Node, ctx: CompileContext) -> Q:
    if isinstance(node, Condition):
        q = REGISTRY[node.field].compile(node, ctx)
        if not isinstance(q, Q):  # a loud failure, like django-filter's
            raise TypeError(f"criterion {node.field} compiled to {type(q).__name__}, not Q")
        return q
    parts = [compile_node(child, ctx) for child in node.children]
    q = parts[0]
    for part in parts[1:]:
        q = (q & part) if node.match == "all" else (q | part)
    return ~q if node.negate else q


def compile_tree(tree: RuleTree, ctx: CompileContext) -> Q:
    return compile_node(tree.root, ctx)


def _compile_stored(rules: Any, ctx: CompileContext) -> Q:
    """Another segment's stored rules, compiled in `ctx` (for the `segment` field)."""
    return compile_tree(parse_rules(rules), ctx)


def _merchant_rows(merchant: Merchant) -> QuerySet[CustomerMetrics]:
    # SECURITY INVARIANT: every evaluation starts from this merchant's per-customer rows
    # (one per customer, `merchant` copied from the customer). The compiled conditions only
    # ever narrow this queryset (they never add rows), and the only cross-row lookups they
    # make are correlated to the outer customer (OuterRef) or scoped to the merchant
    # (products, tags, tiers, segment slugs), so no other merchant's row can appear.
    return CustomerMetrics.objects.filter(merchant=merchant)


def matching_rows(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    as_of: dt.datetime | None = None,
    exact: bool | None = None,
) -> QuerySet[CustomerMetrics]:
    """The per-customer rows of the merchant's customers matching `rules` at `as_of`
    (default now); the row's primary key is the customer's id.

    Fast path (metrics and product stats, exact as of now) when `as_of` is None, unless
    `exact=True`; `exact=False` forces it (the caller vouches that nothing happened after
    `as_of`). The exact path reads transactions, line items and redemptions up to `as_of`.
    """
    ctx = make_context(merchant, as_of, exact)
    return _merchant_rows(merchant).filter(compile_tree(_tree(rules), ctx))


def matching_ids(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    as_of: dt.datetime | None = None,
    exact: bool | None = None,
) -> QuerySet[CustomerMetrics, int]:
    """The ids of the matching customers, as a queryset (usable as a subquery)."""
    rows = matching_rows(merchant=merchant, rules=rules, as_of=as_of, exact=exact)
    return rows.order_by().values_list("customer_id", flat=True)


def matching_customers(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    as_of: dt.datetime | None = None,
    exact: bool | None = None,
) -> QuerySet[Customer]:
    """The matching customers themselves (for pages and exports); see `matching_rows`."""
    ids = matching_ids(merchant=merchant, rules=rules, as_of=as_of, exact=exact)
    return Customer.objects.filter(merchant=merchant, pk__in=ids)


@contextmanager
def evaluation_settings() -> Iterator[None]:
    """PostgreSQL settings for one evaluation query, scoped to a transaction (SET LOCAL).

    TRICKY: a `pk IN (subquery)` under OR or NOT runs as a hashed SubPlan only when the
    hash fits in work_mem; otherwise PostgreSQL rescans the subquery's result for every
    row, which is quadratic (seconds turn into hours at a million customers). 64 MB holds
    a million ids. JIT compilation costs 100-300 ms to save milliseconds here.
    """
    if connection.vendor != "postgresql":
        yield
        return
    # Inside the caller's transaction when there is one (no savepoint needed), else in one
    # of its own, so SET LOCAL lasts exactly as long as the evaluation.
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
        yield


class EvaluationTimeout(Exception):
    """An evaluation ran past its `time_limit` and was stopped (nothing was written)."""


#: PostgreSQL's "query_canceled" (statement_timeout).
_QUERY_CANCELED = "57014"


@contextmanager
def time_limit(milliseconds: int) -> Iterator[None]:
    """Stop the queries run inside after `milliseconds` in all, raising `EvaluationTimeout`.

    For evaluations a request makes on a user's behalf (the builder's live count), so that no
    rule tree, however heavy, keeps the database busy for longer. PostgreSQL: a
    `statement_timeout` for a transaction (a savepoint inside the caller's). SQLite: a
    progress handler that interrupts the statement once the time is up.
    """
    if connection.vendor == "postgresql":
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {int(milliseconds)}")
                yield
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == _QUERY_CANCELED:
                raise EvaluationTimeout(milliseconds) from exc
            raise
        return
    connection.ensure_connection()
    raw = connection.connection
    deadline = time.monotonic() + milliseconds / 1000
    # Checked every 10,000 virtual machine instructions; non-zero interrupts the statement.
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        yield
    except OperationalError as exc:
        if "interrupted" in str(exc):
            raise EvaluationTimeout(milliseconds) from exc
        raise
    finally:
        raw.set_progress_handler(None, 10_000)


def _single_condition(node: Node) -> Condition | None:
    """The one condition a tree amounts to (through groups of one child, none negated)."""
    while isinstance(node, Group):
        if node.negate or len(node.children) != 1:
            return None
        node = node.children[0]
    return node


def count_queryset(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    as_of: dt.datetime | None = None,
    exact: bool | None = None,
) -> QuerySet[Any]:
    """The queryset `count_matching` counts: one row per matching customer. A tree of one
    condition whose criterion has a `standalone()` set ("bought edibles within 30 days") is
    that set alone, without visiting a per-customer row for each buyer."""
    tree = _tree(rules)
    ctx = make_context(merchant, as_of, exact)
    only = _single_condition(tree.root)
    ids = REGISTRY[only.field].standalone(only, ctx) if only is not None else None
    if ids is not None:
        return ids
    return _merchant_rows(merchant).filter(compile_tree(tree, ctx))


def count_matching(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    as_of: dt.datetime | None = None,
    exact: bool | None = None,
) -> int:
    """How many of the merchant's customers match (see `count_queryset`)."""
    rows = count_queryset(merchant=merchant, rules=rules, as_of=as_of, exact=exact)
    with evaluation_settings():
        return _count(rows)


def _count(rows: QuerySet[Any]) -> int:
    """`rows.count()`, but a set of ids (`values(field).distinct()`, a `standalone()` set)
    is counted as `count(DISTINCT field)`: PostgreSQL sorts the ids inside the aggregate,
    where counting a DISTINCT subquery hashes them into a table sized by an estimate it
    cannot make for `= ANY(ARRAY(...))` (82,000 rows of buyers: 60 ms against 31 ms)."""
    field = _id_set_field(rows)
    if field is None:
        return rows.count()
    return int(_without_distinct(rows).aggregate(n=Count(field, distinct=True))["n"])


def count_sql(rows: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    """The count `count_matching` makes of `rows` (from `count_queryset`), as SQL and its
    parameters, to run the same statement outside the ORM (the benchmarks)."""
    if _id_set_field(rows) is None:
        sql, params = rows.order_by().query.sql_with_params()
        return f"SELECT count(*) FROM ({sql}) AS matching", params
    ids = _without_distinct(rows).values(counted_id=F(_id_set_field(rows) or "pk"))
    sql, params = ids.query.sql_with_params()
    return f"SELECT count(DISTINCT counted_id) FROM ({sql}) AS ids", params


def _id_set_field(rows: QuerySet[Any]) -> str | None:
    query = rows.query
    if query.distinct and not query.distinct_fields and len(query.values_select) == 1:
        return str(query.values_select[0])
    return None


def _without_distinct(rows: QuerySet[Any]) -> QuerySet[Any]:
    plain = rows.order_by()  # a clone
    plain.query.distinct = False
    return plain


def referenced_segment_slugs(rules: dict[str, Any] | RuleTree) -> set[str]:
    """Slugs of the segments a tree refers to directly (for refresh ordering)."""
    if isinstance(rules, RuleTree):
        return {
            slug
            for _, condition in rules.conditions()
            if condition.field == "segment"
            for slug in condition.value
        }
    return raw_segment_slugs(rules)


# -- describe -------------------------------------------------------------------------------


def describe_node(node: Node, *, nested: bool) -> str:
    if isinstance(node, Condition):
        return REGISTRY[node.field].describe(node)
    joiner = " and " if node.match == "all" else " or "
    text = joiner.join(describe_node(child, nested=True) for child in node.children)
    if node.negate:
        return f"not ({text})"
    if nested and len(node.children) > 1:
        return f"({text})"
    return text


def describe(rules: dict[str, Any] | RuleTree) -> str:
    """The rules as one English sentence, e.g. "Total spend ≥ 500 and not (tags ...)"."""
    text = describe_node(_tree(rules).root, nested=False)
    return text[:1].upper() + text[1:]


# -- explain --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionResult:
    """One node's result for one customer. `path` is "" for the root group."""

    path: str
    label: str
    matched: bool
    is_group: bool
    depth: int
    #: The customer's own value, where the condition's field shows it ("this customer: 3").
    actual: str = ""


def _flatten(node: Node, path: str, depth: int) -> list[tuple[str, Node, int]]:
    nodes = [(path, node, depth)]
    if isinstance(node, Group):
        for index, child in enumerate(node.children):
            nodes += _flatten(child, child_path(path, index), depth + 1)
    return nodes


def _as_bool(q: Q) -> Case:
    return Case(When(q, then=Value(True)), default=Value(False), output_field=BooleanField())


def explain(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    customer: Customer,
    as_of: dt.datetime | None = None,
) -> list[ConditionResult]:
    """Every group and condition (depth first, root first) with its result for `customer`,
    in one query. Raises `Customer.DoesNotExist` for a customer of another merchant."""
    tree = _tree(rules)
    ctx = make_context(merchant, as_of, None, customer_ids=[customer.pk])
    nodes = _flatten(tree.root, "", 0)
    annotations = {
        f"n{i}": _as_bool(compile_node(node, ctx)) for i, (_, node, _) in enumerate(nodes)
    }
    criteria = [
        None if isinstance(node, Group) else REGISTRY.get(node.field) for _, node, _ in nodes
    ]
    columns = sorted({c for crit in criteria if crit for c in crit.explain_columns})
    # Named values the criteria share (the merchant's score model): one expression each.
    extras = {k: v for crit in criteria if crit for k, v in crit.explain_expressions(ctx).items()}
    rows = _merchant_rows(merchant).filter(pk=customer.pk).annotate(**annotations, **extras)
    with evaluation_settings():
        row = rows.values(*annotations, *extras, *columns).first()
    if row is None:
        raise Customer.DoesNotExist(f"customer {customer.pk} is not one of {merchant.slug}'s")
    return [
        ConditionResult(
            path=path,
            label=describe_node(node, nested=False),
            matched=bool(row[f"n{i}"]),
            is_group=isinstance(node, Group),
            depth=depth,
            actual=(
                criterion.explain_value(row, node)
                if criterion and isinstance(node, Condition) and criterion.explain_columns
                else ""
            ),
        )
        for i, ((path, node, depth), criterion) in enumerate(zip(nodes, criteria, strict=True))
    ]


# -- funnel ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStep:
    """A top-level node: customers matching it alone, and matching nodes[0..i] combined
    with the root's `match` (the last step applies the root's `negate` when set)."""

    path: str
    label: str
    count: int
    cumulative: int


def funnel(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    as_of: dt.datetime | None = None,
) -> list[FunnelStep]:
    """The per-condition funnel of the top-level nodes, in one query that evaluates each
    node once per customer.

    Each customer gets a bit mask (bit i: top-level node i holds) and the query counts
    customers per mask; the counts alone and cumulative follow from that histogram (a few
    hundred masks at most in practice). The last step's `cumulative` is the segment's count.
    """
    tree = _tree(rules)
    ctx = make_context(merchant, as_of, None)
    root = tree.root
    mask: Any = Value(0)
    for index, child in enumerate(root.children):
        holds = Case(
            When(compile_node(child, ctx), then=Value(1 << index)),
            default=Value(0),
            output_field=BigIntegerField(),
        )
        mask = holds if index == 0 else mask + holds
    rows = (
        _merchant_rows(merchant)
        .annotate(mask=ExpressionWrapper(mask, output_field=BigIntegerField()))
        .order_by()
        .values("mask")
        .annotate(customers=Count("pk"))
    )
    with evaluation_settings():
        histogram = {row["mask"]: row["customers"] for row in rows}

    steps = []
    for index, child in enumerate(root.children):
        bit = 1 << index
        prefix = (bit << 1) - 1  # the bits of nodes 0..index
        if root.match == "all":
            cumulative = sum(n for bits, n in histogram.items() if bits & prefix == prefix)
        else:
            cumulative = sum(n for bits, n in histogram.items() if bits & prefix)
        steps.append(
            FunnelStep(
                path=child_path("", index),
                label=describe_node(child, nested=False),
                count=sum(n for bits, n in histogram.items() if bits & bit),
                cumulative=cumulative,
            )
        )
    if root.negate:
        negated = sum(histogram.values()) - steps[-1].cumulative
        steps.append(
            FunnelStep(
                path="",
                label="not (all of the above)" if root.match == "all" else "not (any of the above)",
                count=negated,
                cumulative=negated,
            )
        )
    return steps


def count_with_funnel(
    *,
    merchant: Merchant,
    rules: dict[str, Any] | RuleTree,
    as_of: dt.datetime | None = None,
) -> tuple[int, list[FunnelStep]]:
    """What the builder shows while a segment is edited: the count and the funnel, in one
    query. With several top-level nodes the funnel's last cumulative step is the count; a
    single node's funnel is its count, which `count_matching` may take a shortcut to."""
    tree = _tree(rules)
    root = tree.root
    if len(root.children) > 1 or root.negate:
        steps = funnel(merchant=merchant, rules=tree, as_of=as_of)
        return steps[-1].cumulative, steps
    count = count_matching(merchant=merchant, rules=tree, as_of=as_of)
    child = root.children[0]
    label = describe_node(child, nested=False)
    return count, [FunnelStep(path=child_path("", 0), label=label, count=count, cumulative=count)]
