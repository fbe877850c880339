"""`seed_demo`: the demo merchants and login that `make run` serves."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from customers.management.commands.seed_demo import DEMO_PASSWORD
from customers.models import Customer, CustomerMetrics, Merchant, Role, StaffMembership

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", "--customers", "150", *args, stdout=out)
    return out.getvalue()


def test_builds_both_merchants_with_customers_and_metrics():
    output = seed()

    demo = Merchant.objects.get(slug="demo")
    northside = Merchant.objects.get(slug="northside")
    assert (demo.name, demo.time_zone, demo.currency) == (
        "Green Leaf Dispensary",
        "America/Toronto",
        "CAD",
    )
    assert (northside.time_zone, northside.currency) == ("Europe/London", "GBP")
    assert demo.branches.count() == 3
    assert demo.products.count() >= 200
    assert demo.products.filter(brand="Phat Panda", product_type="preroll").exists()
    assert demo.customers.count() == 150
    assert northside.customers.count() == 50
    assert demo.transactions.count() > 150
    assert CustomerMetrics.objects.filter(merchant=demo).count() == 150
    assert "demo / demo-portal-2026" in output
    assert "150 customers" in output


def test_demo_user_logs_in_as_owner_and_manager_and_reaches_the_admin():
    seed()

    user = get_user_model().objects.get(username="demo")
    roles = dict(StaffMembership.objects.filter(user=user).values_list("merchant__slug", "role"))
    client = Client()

    assert roles == {"demo": Role.OWNER, "northside": Role.MANAGER}
    assert user.is_staff and user.is_superuser
    assert client.login(username="demo", password=DEMO_PASSWORD)
    assert client.get("/admin/").status_code == 200


def test_if_empty_does_nothing_the_second_time():
    seed("--if-empty")
    before = Customer.objects.count(), list(Customer.objects.values_list("pk", flat=True))

    output = seed("--if-empty")

    assert "nothing to do" in output
    assert (Customer.objects.count(), list(Customer.objects.values_list("pk", flat=True))) == (
        before
    )


def test_refuses_to_run_twice_without_if_empty_and_replace_rebuilds():
    seed()
    with pytest.raises(CommandError, match="already exists"):
        seed()

    seed("--replace", "--seed", "2")

    assert Merchant.objects.filter(slug__in=["demo", "northside"]).count() == 2
    assert Customer.objects.filter(merchant__slug="demo").count() == 150
    assert StaffMembership.objects.filter(user__username="demo").count() == 2
