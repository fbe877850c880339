"""The customer page's Predictions card (`customers.views.predictions.customer_predictions`):
the figures and their reading, the smart segment and the churn cut-off, or why there are no
figures, read from the metrics row and the merchant's `ScoreSettings.model`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from customers.models import CustomerMetrics
from customers.views.predictions import customer_predictions
from tests.customers.score_models import full_model, no_fit_model, store_model
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC
MODEL_URL = reverse("customers:score_model")
#: 03:30 UTC on 5 December is still 4 December, 22:30, in Toronto (the merchant's zone).
NOW = dt.datetime(2026, 12, 5, 3, 30, tzinfo=UTC)
TORONTO_TODAY = dt.date(2026, 12, 4)


def set_metrics(customer, **values: Any) -> None:
    # The page only reads the metrics row: writing it directly keeps each test's figures
    # plain (and clear of the computation, tested on its own).
    CustomerMetrics.objects.filter(customer=customer).update(**values)


PREDICTED = {
    "orders_count": 4,
    "p_alive": 0.834,
    "churn_risk": 0.166,
    "expected_orders_90d": 1.42,
    "p_order_30d": 0.31,
    "predicted_clv": Decimal("512.40"),
    "smart_segment": "big_spender",
    "churn_cutoff_on": dt.date(2027, 3, 12),
}


@pytest.fixture
def pinned_now(monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)
    return NOW


def detail(client, customer) -> str:
    response = client.get(reverse("customers:detail", args=[customer.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_customer_page_shows_the_predictions_with_a_reading(staff_client, merchant):
    # given a fitted merchant and a customer with predictions
    store_model(merchant, full_model())
    customer = CustomerFactory(merchant=merchant)
    set_metrics(customer, **PREDICTED)

    # when staff open the customer page
    html = detail(staff_client, customer)

    # then every figure is there, in words first, money in the merchant's currency
    assert "Likely still active: 83.4%; expected 1.4 orders in 90 days." in html
    assert '<dd class="col-sm-8" id="p-alive">83.4%' in html
    assert '<dd class="col-sm-8" id="churn-risk">16.6%' in html
    assert '<dd class="col-sm-8" id="expected-orders">1.4 ' in html
    assert '<dd class="col-sm-8" id="p-order-30d">31.0%' in html
    assert "512.40 CAD" in html
    help_url = reverse("help", args=["customer-scores"]) + "#smart-segments"
    assert f'<a href="{help_url}">Big spender</a>' in html
    assert "counts as lost from" in html and "2027-03-12</span> without a new order" in html
    assert 'id="prediction-reason"' not in html
    assert f'href="{MODEL_URL}"' in html


@pytest.mark.parametrize(
    ("p_alive", "reading"),
    [
        (0.75, "likely still active: 75.0%"),
        (0.35, "at risk: 35.0% likely still active"),
        (0.05, "likely lost: 5.0% likely still active"),
        (1.0, "no repeat order yet, so the model still counts them active"),
    ],
)
def test_the_reading_says_how_likely_the_customer_still_is_a_customer(merchant, p_alive, reading):
    # given a customer's stored P(alive)
    customer = CustomerFactory(merchant=merchant)
    set_metrics(customer, **(PREDICTED | {"p_alive": p_alive}))
    metrics = CustomerMetrics.objects.get(customer=customer)

    # when it is put in words
    shown = customer_predictions(metrics=metrics, model=full_model(), today=TORONTO_TODAY)

    # then the words follow the smart segments' thresholds (0.5 at risk, 0.2 lost)
    assert shown.reading == f"{reading}; expected 1.4 orders in 90 days"


def test_without_a_fit_the_customer_page_says_why_and_shows_the_smart_segment(
    staff_client, merchant
):
    # given a merchant whose last computation could not fit the model
    store_model(merchant, no_fit_model())
    customer = CustomerFactory(merchant=merchant)
    set_metrics(
        customer,
        orders_count=3,
        smart_segment="churn_candidate",
        churn_cutoff_on=dt.date(2027, 1, 20),
    )

    # when staff open the customer page
    html = detail(staff_client, customer)

    # then the reason stands where the figures would, and the fallback segment is shown
    assert "No predictions for this merchant: fewer than 50 customers with an order (12)." in html
    assert ">Churn candidate</a>" in html
    assert "own gaps between orders: no model yet" in html
    assert "2027-01-20</span> without a new order" in html
    assert 'id="p-alive"' not in html
    assert 'id="prediction-figures"' not in html


def test_before_any_computation_the_customer_page_says_not_computed_yet(staff_client, merchant):
    # given a merchant never computed (no model stored)
    customer = CustomerFactory(merchant=merchant)
    set_metrics(customer, orders_count=2)

    # when staff open the customer page
    html = detail(staff_client, customer)

    # then
    assert "Not computed yet: the predictions come with the first score computation." in html
    assert ">Waiting for the first order</a>" in html
    assert 'id="p-alive"' not in html


def test_a_customer_without_an_order_has_no_predictions_yet(staff_client, merchant):
    # given a fitted merchant and a customer with no order
    store_model(merchant, full_model())
    customer = CustomerFactory(merchant=merchant)

    # when staff open the customer page
    html = detail(staff_client, customer)

    # then
    assert "No order yet: the predictions start with the first order." in html
    assert ">Waiting for the first order</a>" in html
    assert '<span class="text-muted">no order yet</span>' in html


@pytest.mark.parametrize(
    ("cutoff", "shown"),
    [
        # before today in Toronto: already past
        (dt.date(2026, 12, 3), "already past: lost since"),
        # today in Toronto, though already yesterday in UTC: not past
        (dt.date(2026, 12, 4), "counts as lost from today ("),
        # today in UTC, tomorrow in Toronto: to come
        (dt.date(2026, 12, 5), "counts as lost from <span"),
    ],
)
def test_the_churn_cutoff_is_past_or_to_come_in_the_merchants_time_zone(
    staff_client, merchant, pinned_now, cutoff, shown
):
    # given a customer whose churn cut-off is around "now" (22:30 on 4 December in Toronto)
    store_model(merchant, full_model())
    customer = CustomerFactory(merchant=merchant)
    set_metrics(customer, **(PREDICTED | {"churn_cutoff_on": cutoff}))

    # when staff open the customer page
    html = detail(staff_client, customer)

    # then the cut-off is judged against the merchant's today
    cell = html[html.index('id="churn-cutoff"') :]
    cell = cell[: cell.index("</dd>")]
    assert shown in cell
    assert cutoff.isoformat() in cell


def test_the_customer_page_reads_its_own_merchants_model_only(
    staff_client, merchant, other_merchant
):
    # given another merchant with a fit, and ours never computed
    store_model(other_merchant, full_model(prediction_error="RIVAL REASON"))
    customer = CustomerFactory(merchant=merchant)
    set_metrics(customer, orders_count=2)

    # when staff open our customer's page
    html = detail(staff_client, customer)

    # then the other merchant's model plays no part
    assert "Not computed yet" in html
    assert "RIVAL REASON" not in html
