"""Members with and without predictions, for the tests of the statistics over them and of
the segment page's card (import the fixtures by name)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import CustomerMetrics
from segments.models import Segment
from segments.services import segment_refresh
from tests.factories import CustomerFactory, TransactionFactory


def type_rules(*types: str) -> dict[str, object]:
    return {
        "match": "all",
        "conditions": [{"field": "customer_type", "op": "in", "value": list(types)}],
    }


VIP_RULES = type_rules("vip")


def predict(customer, *, clv: str, churn_risk: float, p_order_30d: float) -> None:
    """Store predictions on the customer's metrics row, as the score computation does."""
    CustomerMetrics.objects.filter(pk=customer.pk).update(
        predicted_clv=Decimal(clv),
        churn_risk=churn_risk,
        p_alive=1 - churn_risk,
        p_order_30d=p_order_30d,
    )


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def vips(merchant, other_merchant, now):
    """Three VIP members and two customers who are not:

    - ann: an order 5 days ago; CLV 100.00, churn risk 0.25, P(order in 30 d) 0.5; opted in
      to every channel, with an email address and a phone;
    - bob: an order 40 days ago; CLV 300.50, churn risk 0.75, P 0.25; opted in to email and
      SMS but with neither an email address nor a phone; not to push;
    - cy: no order, so no predictions; opted in to email, with an address; joined tomorrow
      (not registered yet);
    - dee (not a VIP) and a VIP of another merchant, both with predictions, never counted.
    """
    ann = CustomerFactory(merchant=merchant, customer_type="vip", opted_in=True)
    bob = CustomerFactory(
        merchant=merchant,
        customer_type="vip",
        email="",
        phone="",
        email_opt_in=True,
        sms_opt_in=True,
    )
    cy = CustomerFactory(
        merchant=merchant,
        customer_type="vip",
        email_opt_in=True,
        joined_at=now + dt.timedelta(days=1),
    )
    dee = CustomerFactory(merchant=merchant, customer_type="regular", opted_in=True)
    rival = CustomerFactory(merchant=other_merchant, customer_type="vip", opted_in=True)
    TransactionFactory(customer=ann, total=Decimal("40"), occurred_at=now - dt.timedelta(days=5))
    TransactionFactory(customer=bob, total=Decimal("60"), occurred_at=now - dt.timedelta(days=40))
    TransactionFactory(customer=dee, total=Decimal("80"), occurred_at=now - dt.timedelta(days=1))
    TransactionFactory(customer=rival, total=Decimal("9"), occurred_at=now - dt.timedelta(days=1))
    # The predictions last: a purchase's follow-up may rewrite them.
    predict(ann, clv="100.00", churn_risk=0.25, p_order_30d=0.5)
    predict(bob, clv="300.50", churn_risk=0.75, p_order_30d=0.25)
    predict(dee, clv="9999.00", churn_risk=0.0, p_order_30d=1.0)
    predict(rival, clv="9999.00", churn_risk=0.0, p_order_30d=1.0)
    return {"ann": ann, "bob": bob, "cy": cy, "dee": dee}


@pytest.fixture
def vip_segment(merchant, vips):
    segment = Segment.objects.create(merchant=merchant, name="VIPs", slug="vips", rules=VIP_RULES)
    segment_refresh(segment_id=segment.pk)
    segment.refresh_from_db()
    return segment
