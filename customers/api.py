"""The customers app's JSON API router (mounted under `/api/v1/` by `config/api.py`).

`PUT /customers/{external_id}` writes one customer the import contract's way, through
`customers.services.customer_upsert`; `POST /transactions` writes a batch of purchases and
refunds with their line items, through the import's staging and merge
(`customers.imports.batch.transactions_write`). The read of a customer (`GET` on the same path) is
added to this router by `campaigns/api.py`: it answers with the offers and content the
customer sees, which live in `campaigns`, above this app.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import ConfigDict, Field

from customers.imports.batch import (
    CREATED,
    UNCHANGED,
    UPDATED,
    BatchTransaction,
    transactions_write,
)
from customers.portal.api import AUTH_ERRORS, WRITE, ErrorsOut, api_merchant, errors_body
from customers.selectors import CustomerCard, customer_card
from customers.services import customer_upsert

router = Router(tags=["customers"])

CUSTOMER_PATH = "/customers/{external_id}"


class CustomerIn(Schema):
    """The import contract's customer columns (`shared/spec/import-format.md`), as JSON.
    Absent or null keeps the stored value (a new customer gets the default), as an empty
    cell does in the import; `joined_at` is required, as in the import. Text is validated
    exactly as the import validates its cells."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    gender: str | None = None
    birth_date: str | None = None
    customer_type: str | None = None
    tags: list[str] | None = None
    tier: str | None = None
    joined_at: str | None = None
    home_branch: str | None = None
    email_opt_in: bool | None = None
    sms_opt_in: bool | None = None
    push_opt_in: bool | None = None
    points_balance: int | None = None
    lifetime_points: int | None = None
    last_contacted_at: str | None = None

    def cells(self) -> dict[str, str | None]:
        """The values as the import's cells (text; None: not given)."""
        cells: dict[str, str | None] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, bool):
                cells[name] = "true" if value else "false"
            elif isinstance(value, int):
                cells[name] = str(value)
            elif isinstance(value, list):
                # The import's tags cell is ";"-separated: a name holding ";" would split.
                cells[name] = ";".join(value)
            else:
                cells[name] = value
        return cells


class CustomerOut(Schema):
    external_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    gender: str
    birth_date: dt.date | None
    customer_type: str
    tags: list[str]
    tier: str | None
    joined_at: dt.datetime
    home_branch: str | None
    email_opt_in: bool
    sms_opt_in: bool
    push_opt_in: bool
    points_balance: int
    lifetime_points: int
    last_contacted_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


def customer_json(card: CustomerCard) -> dict[str, Any]:
    """A customer read by `customers.selectors.customer_card`, as `CustomerOut`'s JSON (the
    PUT's answer, and the start of the GET's)."""
    return {
        **{name: card.customer[name] for name in CustomerOut.model_fields if name != "tags"},
        "tags": card.tags,
    }


@router.put(
    CUSTOMER_PATH,
    auth=WRITE,
    response={frozenset({200, 201}): CustomerOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Create or update a customer",
)
def customer_put(request: HttpRequest, external_id: str, payload: CustomerIn) -> Any:
    """Upsert by external id: 201 with the customer when created, 200 when updated."""
    merchant = api_merchant(request)
    customer, created = customer_upsert(
        merchant=merchant, external_id=external_id, values=payload.cells()
    )
    card = customer_card(merchant=merchant, external_id=customer.external_id)
    assert card is not None  # just written, in this request's connection
    return Status(201 if created else 200, customer_json(card))


# --- transactions ------------------------------------------------------------------------

#: The most transactions one batch may hold.
TRANSACTIONS_MAX = 1000
#: JSON field -> the import contract's column, where the names differ.
_TRANSACTION_COLUMNS = {"customer": "customer_external_id"}
_JSON_FIELDS = {column: name for name, column in _TRANSACTION_COLUMNS.items()}


def _cell(value: str | int | None) -> str | None:
    return None if value is None else str(value)


class ItemIn(Schema):
    """A line of the items file: the product's SKU, the quantity and the line total."""

    model_config = ConfigDict(extra="forbid")

    sku: str
    quantity: int
    amount: str


class TransactionIn(Schema):
    """The import contract's transaction columns (`customer` is `customer_external_id`),
    with its line items. Money is a string (`"12.50"`), timestamps ISO 8601 strings."""

    model_config = ConfigDict(extra="forbid")

    external_id: str
    customer: str
    occurred_at: str
    kind: str | None = None
    total: str
    branch: str | None = None
    points_earned: int | None = None
    points_redeemed: int | None = None
    items: list[ItemIn] | None = None

    def batch_row(self) -> BatchTransaction:
        values = self.model_dump(exclude={"items"})
        cells = {_TRANSACTION_COLUMNS.get(name, name): _cell(v) for name, v in values.items()}
        items = [
            {name: _cell(v) for name, v in item.model_dump().items()} for item in self.items or ()
        ]
        return BatchTransaction(cells=cells, items=items)


class TransactionsIn(Schema):
    model_config = ConfigDict(extra="forbid")

    transactions: list[TransactionIn] = Field(max_length=TRANSACTIONS_MAX)


class TransactionResult(Schema):
    external_id: str
    status: str


class TransactionsOut(Schema):
    results: list[TransactionResult]
    created: int
    updated: int
    unchanged: int


@router.post(
    "/transactions",
    auth=WRITE,
    response={frozenset({200, 201}): TransactionsOut, 422: ErrorsOut, **AUTH_ERRORS},
    summary="Write a batch of purchases and refunds",
)
def transactions_post(request: HttpRequest, payload: TransactionsIn) -> Any:
    """Up to 1,000 transactions, all or nothing, idempotent by external id: 201 when any
    was created, 200 otherwise, with each one's status (`created`, `updated`, `unchanged`);
    422 with every row's errors and nothing written."""
    result = transactions_write(
        merchant=api_merchant(request),
        transactions=[row.batch_row() for row in payload.transactions],
    )
    if not result.ok:
        paths = []
        for i, j, column, message in result.errors:
            where = f"transactions.{i}" if j is None else f"transactions.{i}.items.{j}"
            paths.append((f"{where}.{_JSON_FIELDS.get(column, column)}", message))
        return Status(422, errors_body(*paths))
    results = [
        {"external_id": row.external_id.strip(), "status": status}
        for row, status in zip(payload.transactions, result.statuses, strict=True)
    ]
    counts = {s: result.statuses.count(s) for s in (CREATED, UPDATED, UNCHANGED)}
    return Status(201 if counts[CREATED] else 200, {"results": results, **counts})
