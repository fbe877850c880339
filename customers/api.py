"""The customers app's JSON API router (mounted under `/api/v1/` by `config/api.py`).

`PUT /customers/{external_id}` writes one customer the import contract's way, through
`customers.services.customer_upsert`. The read of a customer (`GET` on the same path) is
added to this router by `campaigns/api.py`: it answers with the offers and content the
customer sees, which live in `campaigns`, above this app.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import ConfigDict

from customers.models import Customer
from customers.portal.api import AUTH_ERRORS, WRITE, ErrorsOut, api_merchant
from customers.selectors import customer_detail_queryset
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


def customer_out(customer: Customer) -> dict[str, Any]:
    """A customer of `customer_detail_queryset` (tier, branch and tags loaded) as JSON."""
    return {
        **{field: getattr(customer, field) for field in CustomerOut.model_fields},
        "tags": [tag.name for tag in customer.tags.all()],
        "tier": customer.tier.name if customer.tier else None,
        "home_branch": customer.home_branch.code if customer.home_branch else None,
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
    stored = customer_detail_queryset(merchant=merchant).get(pk=customer.pk)
    return Status(201 if created else 200, customer_out(stored))
