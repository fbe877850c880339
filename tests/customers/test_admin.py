"""The Django admin serves support staff across merchants."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db.models import RestrictedError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.api_tokens import api_token_create
from customers.models import (
    Customer,
    CustomerMetrics,
    CustomerSales,
    LineItem,
    Product,
    ScoreSettings,
    ScoreSettingsChange,
    TierRule,
    Transaction,
)
from customers.scores.service import scores_compute
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    LineItemFactory,
    MerchantFactory,
    RedemptionFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

CUSTOMERS_MODELS = [m for m in admin.site._registry if m._meta.app_label == "customers"]


@pytest.fixture
def support_client():
    user = UserFactory(username="support", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def populated(merchant, staff_user):
    tier = TierFactory(merchant=merchant, name="Gold")
    branch = BranchFactory(merchant=merchant, code="DT")
    customer = CustomerFactory(
        merchant=merchant, tier=tier, home_branch=branch, tags=[TagFactory(merchant=merchant)]
    )
    item = LineItemFactory(transaction=TransactionFactory(customer=customer, branch=branch))
    RedemptionFactory(customer=customer)
    # the score rows: a tier rule, a logged settings change, the history of a computation
    TierRule.objects.create(merchant=merchant, tier=tier, metric="spend", threshold=500)
    ScoreSettingsChange.objects.create(
        merchant=merchant,
        changed_by=staff_user,
        old={"dormant_days": 180},
        new={"dormant_days": 200},
    )
    scores_compute(merchant=merchant)
    api_token_create(merchant=merchant, name="loyalty app")
    return customer, item


def test_every_model_of_the_schema_is_registered():
    names = {m.__name__ for m in CUSTOMERS_MODELS}

    assert names == {
        "Merchant",
        "StaffMembership",
        "Branch",
        "Tag",
        "Tier",
        "Customer",
        "CustomerTag",
        "CustomerMetrics",
        "CustomerSales",
        "Product",
        "Transaction",
        "LineItem",
        "Redemption",
        "ScoreSettings",
        "TierRule",
        "ScoreSettingsChange",
        "ScoreChange",
        "ApiToken",
    }


@pytest.mark.parametrize("model", CUSTOMERS_MODELS, ids=lambda m: m.__name__)
def test_changelist_search_and_change_pages_render(support_client, populated, model):
    opts = model._meta
    obj = model._default_manager.first()

    listing = support_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    searched = support_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), {"q": "zz-no-match"}
    )
    change = support_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    )

    assert listing.status_code == 200
    assert searched.status_code == 200
    assert change.status_code == 200


def test_customer_list_searches_across_merchants_by_email(support_client, merchant):
    CustomerFactory(merchant=merchant, email="ann@shop.test")
    CustomerFactory(merchant=MerchantFactory(slug="other"), email="ann@elsewhere.test")
    CustomerFactory(merchant=merchant, email="bob@shop.test")

    response = support_client.get(reverse("admin:customers_customer_changelist"), {"q": "ann@"})

    emails = {c.email for c in response.context["cl"].result_list}
    assert emails == {"ann@shop.test", "ann@elsewhere.test"}


def test_customer_metrics_are_read_only_in_the_admin(support_client, populated):
    customer, _ = populated

    response = support_client.get(reverse("admin:customers_customer_change", args=[customer.pk]))
    metrics_page = support_client.get(
        reverse("admin:customers_customermetrics_change", args=[customer.pk])
    )

    assert b'name="metrics-0-net_spend"' not in response.content
    assert b"read-only, recomputed from transactions" in response.content
    assert b'name="net_spend"' not in metrics_page.content
    add = support_client.get(reverse("admin:customers_customermetrics_add"))
    assert add.status_code == 403


def test_adding_a_transaction_in_the_admin_updates_metrics(support_client, merchant):
    customer = CustomerFactory(merchant=merchant)
    when = timezone.now() - dt.timedelta(days=1)

    response = support_client.post(
        reverse("admin:customers_transaction_add"),
        {
            "merchant": merchant.pk,
            "external_id": "ADMIN-1",
            "customer": customer.pk,
            "occurred_at_0": timezone.localtime(when).strftime("%Y-%m-%d"),
            "occurred_at_1": timezone.localtime(when).strftime("%H:%M:%S"),
            "kind": "purchase",
            "total": "42.50",
            "points_earned": 0,
            "points_redeemed": 0,
            "items-TOTAL_FORMS": 0,
            "items-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 302, response.context["adminform"].errors
    metrics = CustomerMetrics.objects.get(customer=customer)
    assert metrics.orders_count == 1
    assert metrics.net_spend == Decimal("42.50")


def test_admin_refuses_a_transaction_for_another_merchants_customer(support_client, merchant):
    foreign = CustomerFactory(merchant=MerchantFactory(slug="elsewhere"))

    response = support_client.post(
        reverse("admin:customers_transaction_add"),
        {
            "merchant": merchant.pk,
            "external_id": "ADMIN-2",
            "customer": foreign.pk,
            "occurred_at_0": "2026-01-05",
            "occurred_at_1": "10:00:00",
            "kind": "purchase",
            "total": "10.00",
            "points_earned": 0,
            "points_redeemed": 0,
            "items-TOTAL_FORMS": 0,
            "items-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 200
    assert "customer" in response.context["adminform"].errors
    assert not Transaction.objects.filter(external_id="ADMIN-2").exists()


def test_recompute_metrics_action_repairs_drifted_metrics(support_client, populated):
    customer, _ = populated
    CustomerMetrics.objects.filter(customer=customer).update(orders_count=99)

    support_client.post(
        reverse("admin:customers_customer_changelist"),
        {"action": "recompute_metrics", "_selected_action": [customer.pk]},
    )

    assert CustomerMetrics.objects.get(customer=customer).orders_count == 1


def test_customer_autocomplete_serves_transaction_form(support_client, merchant):
    wanted = CustomerFactory(merchant=merchant, external_id="FIND-ME")
    CustomerFactory(merchant=merchant, external_id="OTHER")

    response = support_client.get(
        reverse("admin:autocomplete"),
        {
            "term": "find-me",
            "app_label": "customers",
            "model_name": "transaction",
            "field_name": "customer",
        },
    )

    assert response.status_code == 200
    assert response.json()["results"] == [{"id": str(wanted.pk), "text": str(wanted)}]


def test_deleting_a_merchant_removes_its_data_but_a_sold_product_is_kept(merchant, populated):
    _, item = populated
    with pytest.raises(RestrictedError):
        item.product.delete()

    merchant.delete()

    assert not Customer.objects.exists()
    assert not LineItem.objects.exists()
    assert not Product.objects.exists()


def test_support_queues_a_score_computation_from_the_merchant_list(
    support_client, merchant, django_capture_on_commit_callbacks
):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer)

    with django_capture_on_commit_callbacks(execute=True):
        response = support_client.post(
            reverse("admin:customers_merchant_changelist"),
            {"action": "recompute_scores", "_selected_action": [merchant.pk]},
            follow=True,
        )

    assert response.status_code == 200
    assert "Queued a score computation for 1 merchant(s)." in response.content.decode()
    # without a broker the queued computation ran when the request's transaction committed
    assert ScoreSettings.objects.get(merchant=merchant).status == "ok"
    assert CustomerMetrics.objects.get(pk=customer.pk).rfm_group == "dormant"


def test_predictions_are_read_only_in_the_admin_and_filter_by_smart_segment(
    support_client, populated
):
    # given a customer with stored predictions
    customer, _ = populated
    CustomerMetrics.objects.filter(pk=customer.pk).update(
        p_alive=0.8342, smart_segment="big_spender", predicted_clv=Decimal("123.45")
    )

    # when support opens the metrics list filtered on the smart segment, and the row
    listing = support_client.get(
        reverse("admin:customers_customermetrics_changelist"), {"smart_segment": "big_spender"}
    )
    page = support_client.get(reverse("admin:customers_customermetrics_change", args=[customer.pk]))

    # then the row is listed, and the predictions are shown, not editable
    assert listing.status_code == 200 and b"123.45" in listing.content
    assert page.status_code == 200 and b"0.8342" in page.content
    assert b'name="p_alive"' not in page.content


def test_a_new_time_zone_in_the_admin_moves_the_reports_local_days(support_client, merchant):
    # given: an order at 23:30 on 31 May in Toronto (03:30 UTC on 1 June)
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, occurred_at=dt.datetime(2026, 6, 1, 3, 30, tzinfo=dt.UTC))

    def days() -> list[dt.date]:
        return list(
            CustomerSales.objects.filter(customer=customer, span="d").values_list(
                "starts_on", flat=True
            )
        )

    assert days() == [dt.date(2026, 5, 31)]
    created = timezone.localtime(merchant.created_at)

    # when support staff set the merchant's zone to UTC in the change form
    response = support_client.post(
        reverse("admin:customers_merchant_change", args=[merchant.pk]),
        {
            "slug": merchant.slug,
            "name": merchant.name,
            "time_zone": "UTC",
            "currency": merchant.currency,
            "created_at_0": created.date().isoformat(),
            "created_at_1": created.time().strftime("%H:%M:%S"),
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        },
    )

    # then: saved, and the order's day is now the UTC one
    assert response.status_code == 302, response.content.decode()[:2000]
    merchant.refresh_from_db()
    assert merchant.time_zone == "UTC"
    assert days() == [dt.date(2026, 6, 1)]
