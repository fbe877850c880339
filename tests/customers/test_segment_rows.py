"""The rows the segment engine reads stay exact: the copy of each customer's profile and tag
ids on its metrics row, and the per-product stats, after every kind of write."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.imports import import_files
from customers.metrics import refresh_merchant_metrics
from customers.models import (
    Customer,
    CustomerMetrics,
    CustomerProductStats,
    CustomerTag,
    TransactionKind,
)
from tests.customers.exactness import assert_segment_rows_exact
from tests.factories import (
    BranchFactory,
    CustomerFactory,
    LineItemFactory,
    ProductFactory,
    TagFactory,
    TierFactory,
    TransactionFactory,
)

pytestmark = pytest.mark.django_db


def metrics(customer):
    return CustomerMetrics.objects.get(customer=customer)


def stats(customer):
    return {
        (row.product_id, row.units)
        for row in CustomerProductStats.objects.filter(customer=customer)
    }


def test_a_saved_customer_copies_its_profile(merchant):
    # given
    tier = TierFactory(merchant=merchant, name="Gold")
    branch = BranchFactory(merchant=merchant, code="MAIN")
    customer = CustomerFactory(merchant=merchant)

    # when
    customer.customer_type = "Vendor"
    customer.tier = tier
    customer.home_branch = branch
    customer.birth_date = dt.date(1990, 2, 28)
    customer.email_opt_in = True
    customer.points_balance = 120
    customer.last_contacted_at = timezone.now()
    customer.save()

    # then
    row = metrics(customer)
    assert (row.customer_type, row.tier_id, row.home_branch_id) == ("Vendor", tier.pk, branch.pk)
    assert (row.birth_date, row.email_opt_in, row.points_balance) == (
        dt.date(1990, 2, 28),
        True,
        120,
    )
    assert_segment_rows_exact(merchant)


def test_queryset_update_of_a_copied_column_is_copied(merchant):
    # given
    customers = [CustomerFactory(merchant=merchant) for _ in range(3)]
    contacted = timezone.now() - dt.timedelta(days=2)

    # when: what a campaign does after sending
    Customer.objects.filter(pk__in=[c.pk for c in customers[:2]]).update(
        last_contacted_at=contacted, sms_opt_in=True
    )

    # then
    assert [metrics(c).last_contacted_at for c in customers] == [contacted, contacted, None]
    assert_segment_rows_exact(merchant)


def test_tags_are_copied_whichever_way_they_change(merchant):
    # given
    vip, local, staff = (TagFactory(merchant=merchant, name=n) for n in ("vip", "local", "staff"))
    ann, bob = CustomerFactory(merchant=merchant), CustomerFactory(merchant=merchant)

    # when / then: from the customer's side
    ann.tags.add(vip, local)
    assert metrics(ann).tag_ids == sorted([vip.pk, local.pk])
    ann.tags.remove(vip)
    assert metrics(ann).tag_ids == [local.pk]
    ann.tags.set([staff])
    assert metrics(ann).tag_ids == [staff.pk]
    ann.tags.clear()
    assert metrics(ann).tag_ids == []

    # from the tag's side, and one row at a time (the admin's inline)
    vip.customers.add(ann, bob)
    assert metrics(bob).tag_ids == [vip.pk]
    vip.customers.clear()
    assert metrics(ann).tag_ids == metrics(bob).tag_ids == []
    row = CustomerTag.objects.create(customer=bob, tag=local)
    assert metrics(bob).tag_ids == [local.pk]
    row.delete()
    assert metrics(bob).tag_ids == []
    assert_segment_rows_exact(merchant)


def test_deleting_a_tier_or_branch_clears_the_copy(merchant):
    tier = TierFactory(merchant=merchant)
    branch = BranchFactory(merchant=merchant)
    customer = CustomerFactory(merchant=merchant, tier=tier, home_branch=branch)

    tier.delete()
    branch.delete()

    assert (metrics(customer).tier_id, metrics(customer).home_branch_id) == (None, None)
    assert_segment_rows_exact(merchant)


def test_product_stats_follow_line_items_of_orders(merchant):
    # given
    panda = ProductFactory(merchant=merchant)
    gummy = ProductFactory(merchant=merchant)
    ann = CustomerFactory(merchant=merchant)
    earlier = timezone.now() - dt.timedelta(days=20)
    later = timezone.now() - dt.timedelta(days=3)
    first = TransactionFactory(customer=ann, occurred_at=earlier)
    second = TransactionFactory(customer=ann, occurred_at=later)

    # when
    LineItemFactory(transaction=first, product=panda, quantity=2)
    item = LineItemFactory(transaction=second, product=panda, quantity=3)

    # then: units add up, the latest order is the later one
    row = CustomerProductStats.objects.get(customer=ann, product=panda)
    assert (row.units, row.last_purchased_at) == (5, later)

    # when: a line changes product, then its order is deleted
    item.product = gummy
    item.save()
    assert stats(ann) == {(panda.pk, 2), (gummy.pk, 3)}
    second.delete()
    assert stats(ann) == {(panda.pk, 2)}
    assert_segment_rows_exact(merchant)


def test_refund_lines_are_not_units(merchant):
    # given
    product = ProductFactory(merchant=merchant)
    ann = CustomerFactory(merchant=merchant)
    order = TransactionFactory(customer=ann)
    LineItemFactory(transaction=order, product=product, quantity=4)

    # when: the order turns out to be a refund
    order.kind = TransactionKind.REFUND
    order.save()

    # then
    assert stats(ann) == set()
    assert_segment_rows_exact(merchant)


def test_import_copies_profiles_tags_and_line_items(merchant, tmp_path):
    # given
    def write(name, *lines):
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        return path

    files = {
        "products": write("products", "sku,name,product_type", "S1,Pre-roll,preroll"),
        "customers": write(
            "customers",
            "external_id,customer_type,tags,joined_at,sms_opt_in",
            "C1,regular,VIP;Local,2024-01-01,yes",
            "C2,,,2024-01-01,",
        ),
        "transactions": write(
            "transactions",
            "external_id,customer_external_id,occurred_at,total",
            "T1,C1,2024-03-01T12:00:00,20.00",
        ),
        "items": write("items", "transaction_external_id,sku,quantity,amount", "T1,S1,3,20.00"),
    }
    assert import_files(merchant=merchant, files=files).ok
    assert_segment_rows_exact(merchant)

    # when: a second import changes a profile, the tags and the line
    assert import_files(
        merchant=merchant,
        files={
            "customers": write(
                "customers",
                "external_id,customer_type,tags,joined_at",
                "C1,Vendor,Staff,2024-01-01",
            ),
            "items": write("items", "transaction_external_id,sku,quantity,amount", "T1,S1,5,20.00"),
        },
    ).ok

    # then
    c1 = Customer.objects.get(merchant=merchant, external_id="C1")
    assert metrics(c1).customer_type == "Vendor"
    assert [u for _, u in stats(c1)] == [5]
    assert_segment_rows_exact(merchant)


def test_a_merchant_refresh_repairs_any_drift(merchant):
    # given: rows changed behind the model's back
    product = ProductFactory(merchant=merchant)
    ann = CustomerFactory(merchant=merchant, customer_type="regular")
    LineItemFactory(transaction=TransactionFactory(customer=ann), product=product, quantity=2)
    CustomerMetrics.objects.filter(customer=ann).update(customer_type="x", tag_ids=[999])
    CustomerProductStats.objects.filter(customer=ann).update(units=77)
    CustomerProductStats.objects.create(
        customer=ann,
        merchant=merchant,
        product=ProductFactory(merchant=merchant),
        units=1,
        last_purchased_at=timezone.now(),
    )

    # when
    refresh_merchant_metrics(merchant.pk)

    # then
    assert metrics(ann).customer_type == "regular"
    assert stats(ann) == {(product.pk, 2)}
    assert_segment_rows_exact(merchant)


def test_other_merchants_rows_are_left_alone(merchant, other_merchant):
    theirs = CustomerFactory(merchant=other_merchant, customer_type="theirs")
    CustomerMetrics.objects.filter(customer=theirs).update(points_balance=5)

    refresh_merchant_metrics(merchant.pk)

    assert metrics(theirs).points_balance == 5
    assert metrics(theirs).net_spend == Decimal("0")
