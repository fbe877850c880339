"""A bulk change that names its columns (a campaign's `last_contacted_at` for many
customers) refreshes only the segments whose rules read them, and those built on them; not
every segment of the merchant, and not one incremental update per customer."""

from __future__ import annotations

import inspect

import pytest
from django.utils import timezone

from customers import services as customer_services
from segments import services, tasks
from segments.criteria import REGISTRY
from segments.models import SegmentKind
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NOT_CONTACTED = {
    "match": "all",
    "conditions": [{"field": "last_contacted", "op": "before_days", "value": 30}],
}
SPENDERS = {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": 100}]}


def dynamic(merchant, name, rules):
    return services.segment_create(
        merchant=merchant, name=name, kind=SegmentKind.DYNAMIC, rules=rules
    )


@pytest.fixture
def calls(monkeypatch):
    made: dict[str, list] = {"scoped": [], "merchant": [], "customers": []}
    monkeypatch.setattr(tasks.refresh_segments, "delay", made["scoped"].append)
    monkeypatch.setattr(tasks.refresh_merchant_segments, "delay", made["merchant"].append)
    monkeypatch.setattr(
        tasks.update_customers, "delay", lambda *args: made["customers"].append(args)
    )
    return made


def test_marking_many_customers_contacted_refreshes_only_the_segments_that_read_it(
    merchant, calls, monkeypatch, django_capture_on_commit_callbacks
):
    # given: a segment on last contact, one built on it, and one that does not read it
    monkeypatch.setattr(customer_services, "CHANGE_BATCH_MAX", 2)
    stale = dynamic(merchant, "Not contacted in 30 days", NOT_CONTACTED)
    built_on = dynamic(
        merchant,
        "Quiet spenders",
        {
            "match": "all",
            "conditions": [
                {"field": "segment", "op": "in", "value": [stale.slug]},
                {"field": "total_spend", "op": "gte", "value": 100},
            ],
        },
    )
    dynamic(merchant, "Spenders", SPENDERS)
    ids = [CustomerFactory(merchant=merchant).pk for _ in range(3)]

    # when: a campaign marks the three contacted (more than the batch maximum)
    with django_capture_on_commit_callbacks(execute=True):
        customer_services.customers_update(
            merchant=merchant, customer_ids=ids, last_contacted_at=timezone.now()
        )

    # then: one refresh of the two segments, in dependency order; nothing else
    assert calls == {"scoped": [[stale.pk, built_on.pk]], "merchant": [], "customers": []}


def test_a_merchant_without_such_segments_refreshes_nothing(
    merchant, calls, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(customer_services, "CHANGE_BATCH_MAX", 2)
    dynamic(merchant, "Spenders", SPENDERS)
    ids = [CustomerFactory(merchant=merchant).pk for _ in range(3)]

    with django_capture_on_commit_callbacks(execute=True):
        customer_services.customers_update(
            merchant=merchant, customer_ids=ids, last_contacted_at=timezone.now()
        )

    assert calls == {"scoped": [], "merchant": [], "customers": []}


def test_a_few_customers_contacted_are_updated_one_by_one_as_before(
    merchant, calls, django_capture_on_commit_callbacks
):
    dynamic(merchant, "Not contacted in 30 days", NOT_CONTACTED)
    customer = CustomerFactory(merchant=merchant)

    with django_capture_on_commit_callbacks(execute=True):
        customer_services.customers_update(
            merchant=merchant, customer_ids=[customer.pk], last_contacted_at=timezone.now()
        )

    assert calls["customers"] == [(merchant.pk, [customer.pk])]
    assert calls["scoped"] == calls["merchant"] == []


def test_the_refresh_task_brings_the_segments_up_to_date(merchant):
    segment = dynamic(merchant, "Not contacted in 30 days", NOT_CONTACTED)
    contacted = CustomerFactory(merchant=merchant, last_contacted_at=timezone.now())
    # (a never-contacted customer matches "before 30 days" only with "never": not here)
    services.segment_refresh(segment_id=segment.pk)
    old = timezone.now() - timezone.timedelta(days=60)
    customer_services.customers_update(
        merchant=merchant, customer_ids=[contacted.pk], last_contacted_at=old
    )

    assert tasks.refresh_segments.delay([segment.pk]).get() == ["ok"]

    assert list(segment.memberships.values_list("customer_id", flat=True)) == [contacted.pk]


def test_every_criterion_that_reads_a_column_a_change_may_name_says_so():
    # The columns customers.services copies without recomputing (their changes name them).
    for column in customer_services._PLAIN_COPIES:
        for key, criterion in REGISTRY.items():
            mentions = column in inspect.getsource(type(criterion))
            assert mentions == (column in criterion.reads), key
