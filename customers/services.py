"""Writes of the customers app (services: keyword-only, typed, `<entity>_<verb>`).

The write chain, explicit: whatever writes customers, purchases, line items, redemptions or
tags (a single `save()` in the admin, the import, the generator, a bulk update by a campaign)
ends in `customer_metrics_refresh()` or `merchant_metrics_refresh()`, inside its transaction
(or, for new transactions alone, `customer_metrics_add()`, which moves the rows by delta):
the per-customer rows are recomputed (`customers.metrics`), the lifecycle stage and tier
follow (`customers.scores.service.customer_scores_follow`), and the change is announced once
(`customers_changed`), per customer when few changed, as one merchant-level change when many
(`CHANGE_BATCH_MAX`), so the segments follow (an incremental update, or a full refresh).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from customers.metrics import PROFILE_COLUMNS, refresh_merchant_metrics, refresh_metrics
from customers.metrics_delta import transactions_add
from customers.models import Branch, Customer, CustomerMetrics, Merchant
from customers.scores.service import customer_scores_follow
from customers.signals import customers_changed

#: A change of more customers than this (of one merchant) is announced as a merchant-level
#: change: the segments are refreshed in full, which at that size is cheaper than
#: re-evaluating each customer.
CHANGE_BATCH_MAX = 5000
#: Customer ids per query when changed customers are grouped by merchant.
_GROUP_BATCH = 500
#: Profile columns copied to the metrics rows as they are, that no score or aggregate is
#: derived from: a bulk change copies them instead of recomputing the rows.
_PLAIN_COPIES = frozenset({"last_contacted_at"})
UNKNOWN_CUSTOMER_FIELDS_ERROR = "These customer fields cannot be set in bulk: {fields}."

MSG_DUPLICATE_SLUG = 'A merchant with the slug "{slug}" already exists.'
MSG_UNKNOWN_COLUMN = "is not a customer column of the import contract"


def merchant_create(*, slug: str, name: str, time_zone: str, currency: str = "USD") -> Merchant:
    """Create a merchant (a tenant), validated.

    Raises ValidationError with a message per field for an unknown time zone, a slug that
    is taken or malformed, a currency that is not a three-letter ISO 4217 code, or an empty
    name.
    """
    merchant = Merchant(
        slug=slug.strip(),
        name=name.strip(),
        time_zone=time_zone.strip(),
        currency=currency.strip().upper(),
    )
    # full_clean() runs the model's validators (time zone, currency, slug) and the unique
    # check on slug, which gives Django's generic message; ours names the slug.
    try:
        merchant.full_clean(validate_unique=False)
    except ValidationError as exc:
        errors = exc.message_dict
    else:
        errors = {}
    if Merchant.objects.filter(slug=merchant.slug).exists():
        errors.setdefault("slug", []).append(MSG_DUPLICATE_SLUG.format(slug=merchant.slug))
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        merchant.save()
    return merchant


def merchant_update(*, merchant: Merchant, **fields: Any) -> Merchant:
    """Save changes to a merchant (validated). A new time zone moves every transaction's
    merchant-local day, so the per-customer rows that hold local days (the metrics' purchase
    days, the reports' day and month sums) are recomputed in the same transaction."""
    old_zone = merchant.time_zone
    for name, value in fields.items():
        setattr(merchant, name, value)
    merchant.full_clean(validate_unique=False)
    with transaction.atomic():
        merchant.save()
        if merchant.time_zone != old_zone:
            merchant_metrics_refresh(merchant_id=merchant.pk)
    return merchant


# --- the write chain: metrics and the change announcement -------------------------------------


def _by_merchant(customer_ids: Iterable[int]) -> dict[int, list[int]]:
    ids = iter(sorted(set(customer_ids)))
    grouped: dict[int, list[int]] = defaultdict(list)
    while batch := list(islice(ids, _GROUP_BATCH)):
        for merchant_id, pk in Customer.objects.filter(pk__in=batch).values_list(
            "merchant_id", "pk"
        ):
            grouped[merchant_id].append(pk)
    return grouped


def _announce(
    merchant_id: int, customer_ids: list[int] | None, fields: frozenset[str] | None = None
) -> None:
    ids = None if customer_ids is None else frozenset(customer_ids)
    customers_changed.send(
        sender=CustomerMetrics, customer_ids=ids, merchant_id=merchant_id, fields=fields
    )


def customer_metrics_refresh(
    *, customer_ids: Iterable[int], merchant_id: int | None = None
) -> None:
    """Recompute these customers' metrics rows and product stats (in the caller's
    transaction) and announce the change: one `customers_changed` per merchant, with the
    customers' ids, or merchant-level (`customer_ids=None`) when more than
    `CHANGE_BATCH_MAX` customers of that merchant changed. `merchant_id`: the caller knows
    they are all that merchant's (a saved transaction's), which saves looking it up."""
    ids = set(customer_ids)
    if not ids:
        return
    refresh_metrics(ids)
    _follow(ids, merchant_id)


def customer_metrics_add(*, merchant: Merchant, transaction_ids: Iterable[int]) -> bool:
    """Add new transactions of the merchant (just inserted, with their line items) to their
    customers' metrics rows, product stats and sales rows by delta (`customers.metrics_delta`),
    then follow as `customer_metrics_refresh` does. False, with nothing done, where deltas are
    not kept (SQLite): the caller recomputes."""
    changed = transactions_add(merchant=merchant, transaction_ids=list(transaction_ids))
    if changed is None:
        return False
    if changed:
        _follow(changed, merchant.pk)
    return True


def _follow(ids: set[int], merchant_id: int | None) -> None:
    """The scores follow and the change is announced, once per merchant."""
    grouped = {merchant_id: sorted(ids)} if merchant_id is not None else _by_merchant(ids)
    for owner_id, changed in sorted(grouped.items()):
        many = len(changed) > CHANGE_BATCH_MAX
        customer_scores_follow(merchant_id=owner_id, customer_ids=None if many else changed)
        _announce(owner_id, None if many else changed)


def merchant_metrics_refresh(*, merchant_id: int) -> None:
    """Recompute every customer's metrics of a merchant (set-based, in the caller's
    transaction) and announce one merchant-level change."""
    refresh_merchant_metrics(merchant_id)
    customer_scores_follow(merchant_id=merchant_id, customer_ids=None)
    _announce(merchant_id, None)


def customers_update(
    *, merchant: Merchant, customer_ids: Iterable[int] | models.QuerySet[Any], **fields: Any
) -> int:
    """Set `fields` on some of the merchant's customers in one statement, e.g. a campaign's
    `last_contacted_at` for 100,000 recipients (`customer_ids` may be a queryset of ids,
    used as a subquery). The copy of the profile on their metrics rows follows (when a
    copied field changed), and the change is announced once: per customer, or
    merchant-level when many. Customers of other merchants are left alone. Returns how many
    rows were updated."""
    allowed = {f.name for f in Customer._meta.concrete_fields} - {"id", "merchant"}
    unknown = sorted(set(fields) - allowed - {f"{name}_id" for name in allowed})
    if unknown:
        raise ValidationError(UNKNOWN_CUSTOMER_FIELDS_ERROR.format(fields=", ".join(unknown)))
    ids = customer_ids if isinstance(customer_ids, models.QuerySet) else sorted(set(customer_ids))
    copied = {name.removesuffix("_id") for name in PROFILE_COLUMNS}
    changed = {name.removesuffix("_id") for name in fields}
    with transaction.atomic():
        rows = Customer.objects.filter(merchant=merchant, pk__in=ids)
        # QuerySet.update of the plain queryset class: this service does the metrics itself.
        count = models.QuerySet.update(rows, **fields)
        if not count or not copied & changed:
            # No segment reads the other columns (names, email, ...): nothing to announce.
            return count
        if changed <= _PLAIN_COPIES:
            # Nothing is derived from these: copy them instead of recomputing every row.
            CustomerMetrics.objects.filter(
                merchant=merchant, customer_id__in=rows.values("pk")
            ).update(**fields)
            many = count > CHANGE_BATCH_MAX
            ids_changed = None if many else list(rows.values_list("pk", flat=True))
            _announce(merchant.pk, ids_changed, fields=frozenset(changed))
        else:
            customer_metrics_refresh(customer_ids=rows.values_list("pk", flat=True))
    return count


# --- one customer, the import contract's way --------------------------------------------------

#: Columns whose converted value is stored as it is.
_PLAIN_CUSTOMER_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "gender",
    "birth_date",
    "customer_type",
    "joined_at",
    "email_opt_in",
    "sms_opt_in",
    "push_opt_in",
    "points_balance",
    "lifetime_points",
    "last_contacted_at",
)


def customer_upsert(
    *, merchant: Merchant, external_id: str, values: Mapping[str, str | None]
) -> tuple[Customer, bool]:
    """Create or update one of the merchant's customers from the import contract's customer
    columns (`shared/spec/import-format.md`), given as cell text: None or empty means "not
    given", which keeps the stored value (a new customer gets the default), as in the import.

    The cells go through the import's own validation and conversion
    (`customers.imports.reading.convert_cells` with the customers file's converters), so a
    value the import refuses is refused here with the same message; the import validates a
    whole file at once and stages it, which one row cannot use, hence this service. The
    write goes through `Customer.save()` and `tags.set()`, which run the write chain
    (metrics, scores, the change announcement) in this transaction.

    Raises ValidationError by column name. Returns (customer, created).
    """
    try:
        return _customer_upsert(merchant, external_id, values)
    except IntegrityError:
        # Another request created the same external id between our look-up and insert:
        # the second attempt finds it and updates it.
        return _customer_upsert(merchant, external_id, values)


def _customer_upsert(
    merchant: Merchant, external_id: str, values: Mapping[str, str | None]
) -> tuple[Customer, bool]:
    # Imported here: the import package calls this module's write chain.
    from customers.imports.cells import MSG_MISSING_REFERENCE, quoted
    from customers.imports.reading import RowConverters, convert_cells
    from customers.imports.specs import SPECS

    spec = SPECS["customers"]
    known = {column.name for column in spec.columns}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValidationError({name: MSG_UNKNOWN_COLUMN for name in unknown})
    cells = {**values, "external_id": external_id}
    with transaction.atomic():
        # Inside the transaction: the tag and tier converters create names on first use,
        # which a refused row must not leave behind.
        converters = RowConverters(merchant)
        converted, errors = convert_cells(
            [(column, i, column.converter(converters)) for i, column in enumerate(spec.columns)],
            [cells.get(column.name) or "" for column in spec.columns],
        )
        row = dict(zip((column.name for column in spec.columns), converted, strict=True))
        branch = None
        if row["home_branch"] is not None:
            branch = Branch.objects.filter(merchant=merchant, code=row["home_branch"]).first()
            if branch is None:
                errors.append(
                    (
                        "home_branch",
                        MSG_MISSING_REFERENCE.format(
                            what="branch", value=quoted(row["home_branch"])
                        ).replace(" (neither in this import nor stored)", ""),
                    )
                )
        if errors:
            by_column: dict[str, list[str]] = defaultdict(list)
            for column_name, message in errors:
                by_column[column_name].append(message)
            raise ValidationError(dict(by_column))
        customer = (
            Customer.objects.select_for_update()
            .filter(merchant=merchant, external_id=row["external_id"])
            .first()
        )
        created = customer is None
        if customer is None:
            customer = Customer(merchant=merchant, external_id=row["external_id"])
        for name in _PLAIN_CUSTOMER_COLUMNS:
            if row[name] is not None:
                setattr(customer, name, row[name])
        if row["tier"] is not None:
            customer.tier_id = row["tier"]
        if branch is not None:
            customer.home_branch = branch
        with transaction.atomic():  # a savepoint: a concurrent insert is retried, see above
            customer.save()
        if row["tags"] is not None:
            customer.tags.set(row["tags"])
    return customer, created
