"""`customers.compiled`: a queryset compiled once with stand-ins, run with real values (as a
prepared statement on PostgreSQL), its columns converted as Django converts them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection, transaction

from customers.compiled import CompiledQuery, Inline, Slot, bind, fetch, serial_reads
from customers.models import Customer, CustomerMetrics
from tests.factories import CustomerFactory, MerchantFactory, TransactionFactory

pytestmark = pytest.mark.django_db

BY_MERCHANT = CompiledQuery(
    lambda merchant_id, joined_after: (
        Customer.objects.filter(merchant_id=merchant_id, joined_at__gt=joined_after)
        .order_by("external_id")
        .values_list("external_id", "joined_at", "sms_opt_in")
    ),
    merchant_id=-9_000_000_001,
    joined_after=dt.datetime(1901, 2, 3, tzinfo=dt.UTC),
)


def test_each_call_answers_for_its_own_values():
    # given: two merchants' customers, one of them joined long ago
    first, second = MerchantFactory(), MerchantFactory()
    long_ago = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    CustomerFactory(
        merchant=first, external_id="a-1", joined_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    )
    CustomerFactory(merchant=first, external_id="a-0", joined_at=long_ago)
    CustomerFactory(merchant=second, external_id="b-1", sms_opt_in=True)

    # when
    cutoff = dt.datetime(2010, 1, 1, tzinfo=dt.UTC)
    of_first = BY_MERCHANT.rows(merchant_id=first.pk, joined_after=cutoff)
    of_second = BY_MERCHANT.rows(merchant_id=second.pk, joined_after=cutoff)

    # then: each merchant's rows, typed as Django types them (aware instants, booleans)
    assert [row[0] for row in of_first] == ["a-1"]
    assert of_first[0][1] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert of_first[0][1].tzinfo is not None
    assert of_second[0][0] == "b-1" and of_second[0][2] is True
    assert of_first[0][2] is False


def test_money_comes_back_as_decimal():
    customer = TransactionFactory(total="12.50").customer
    net = CompiledQuery(
        lambda customer_id: CustomerMetrics.objects.filter(customer_id=customer_id).values_list(
            "net_spend"
        ),
        customer_id=-9_000_000_002,
    )

    [(value,)] = net.rows(customer_id=customer.pk)

    assert value == Decimal("12.50") and isinstance(value, Decimal)


def test_a_stand_in_the_query_does_not_use_is_refused_loudly():
    unused = CompiledQuery(
        lambda merchant_id, other: Customer.objects.filter(merchant_id=merchant_id).values_list(
            "pk"
        ),
        merchant_id=-9_000_000_003,
        other=-9_000_000_004,
    )

    with pytest.raises(ValueError, match="other"):
        unused.rows(merchant_id=1, other=2)


def test_the_statement_is_logged_like_any_other(django_assert_num_queries):
    merchant = MerchantFactory()

    with django_assert_num_queries(1):
        BY_MERCHANT.rows(
            merchant_id=merchant.pk, joined_after=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
def test_postgresql_prepares_the_statement_once_per_connection():
    merchant = MerchantFactory()
    cutoff = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

    def prepared() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ['%"customers_customer"."sms_opt_in"%'],
            )
            return cursor.fetchone()[0]

    BY_MERCHANT.rows(merchant_id=merchant.pk, joined_after=cutoff)
    BY_MERCHANT.rows(merchant_id=merchant.pk + 1, joined_after=cutoff)

    assert prepared() == 1


def _parallel_workers() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_parallel_workers_per_gather")
        return str(cursor.fetchone()[0])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's setting")
@pytest.mark.django_db(transaction=True)
def test_serial_reads_turn_parallel_workers_off_inside_only():
    # given
    before = _parallel_workers()
    assert before != "0"

    # when / then: off inside, back after (the transaction it opened ended)
    with serial_reads():
        assert _parallel_workers() == "0"
    assert _parallel_workers() == before

    # inside a caller's transaction it leaves the setting alone (SET LOCAL would outlive it)
    with transaction.atomic(), serial_reads():
        assert _parallel_workers() == before


BY_ID = CompiledQuery(
    lambda customer_id, external_id: Customer.objects.filter(
        pk=customer_id, external_id=external_id
    ).values_list("email"),
    customer_id=-9_000_000_011,
    external_id="\x1fstand-in",
)


def test_an_inline_value_is_written_into_the_sql_and_leaves_the_parameters():
    # given: a query whose customer id comes from an enclosing statement
    merchant = MerchantFactory()
    customer = CustomerFactory(merchant=merchant, external_id="100%", email="a@example.com")

    # when: the id is inlined as a column of a CTE; the external id stays a parameter (a
    # `Slot`, given at the run)
    sql, params = BY_ID.statement(customer_id=Inline("c.id"), external_id=Slot("external_id"))
    wrapped = f"WITH c AS (SELECT %s AS id) SELECT ({sql}) FROM c"
    rows = fetch(wrapped, bind([Slot("id"), *params], id=customer.pk, external_id="100%"))

    # then: the inlined id selected the customer; the `%` in the value is no placeholder
    assert "(c.id)" in sql and all(not isinstance(p, Inline) for p in params)
    assert sum(isinstance(p, Slot) for p in params) == 1
    assert rows == [("a@example.com",)]
    # and the same query run alone with real values
    assert BY_ID.rows(customer_id=customer.pk, external_id="100%") == [("a@example.com",)]
    assert BY_ID.rows(customer_id=customer.pk, external_id="100") == []


def test_bind_fills_slots_and_adapts_their_values():
    params = ["kept", Slot("day"), 3, Slot("n")]
    bound = bind(params, day=dt.date(2026, 12, 6), n=7)
    assert bound[0] == "kept" and bound[2] == 3 and bound[3] == 7
    # dates as the backend takes them (`customers.sql.adapt`)
    assert str(bound[1]) == "2026-12-06"


def test_fetch_keeps_literal_percent_signs():
    # Django escapes a literal % as %% in SQL with parameters; PostgreSQL's numbered
    # placeholders must not turn them into anything else.
    assert fetch("SELECT '5%%' || %s, %s + 1", ["!", 1]) == [("5%!", 2)]
