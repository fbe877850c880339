"""`field__any=[...]` (`customers.lookups`): the rows whose field is one of the values, as
`__in` gives them, with one array parameter on PostgreSQL."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import Customer, CustomerMetrics
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_any_selects_what_in_selects(merchant):
    # given
    customers = [CustomerFactory(merchant=merchant) for _ in range(4)]
    wanted = [customers[0].pk, customers[2].pk, 10**9]

    # when
    with CaptureQueriesContext(connection) as queries:
        found = set(Customer.objects.filter(pk__any=wanted).values_list("pk", flat=True))

    # then
    assert found == set(Customer.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    assert found == {customers[0].pk, customers[2].pk}
    if connection.vendor == "postgresql":
        assert "= ANY(" in queries[0]["sql"]


def test_any_of_nothing_matches_nothing_and_negates_to_everything(merchant):
    CustomerFactory(merchant=merchant)
    assert not Customer.objects.filter(pk__any=[]).exists()
    assert Customer.objects.exclude(pk__any=[]).count() == 1


def test_any_works_on_a_relation_and_its_column(merchant):
    # given: Ann's metrics row, whose primary key is the relation to her
    ann, bob = CustomerFactory(merchant=merchant), CustomerFactory(merchant=merchant)

    # then: the relation, its column and the primary key all take the lookup
    assert list(CustomerMetrics.objects.filter(pk__any=[ann.pk]).values_list("pk", flat=True)) == [
        ann.pk
    ]
    assert CustomerMetrics.objects.filter(customer__any=[ann.pk, bob.pk]).count() == 2
    assert CustomerMetrics.objects.filter(customer_id__any=[bob.pk]).get().pk == bob.pk
