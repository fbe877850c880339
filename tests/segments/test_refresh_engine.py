"""The refresh with the real rule engine (no stand-in): rules from the contract."""

from __future__ import annotations

from decimal import Decimal

import pytest

from segments.engine import RuleValidationError
from segments.models import RefreshStatus, Segment, SegmentMembership
from segments.services import (
    segment_create,
    segment_refresh,
    segment_update,
    segments_refresh_due,
)
from tests.factories import CustomerFactory, TransactionFactory

pytestmark = pytest.mark.django_db

SPEND_100 = {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": 100}]}


def uses(slug):
    return {"match": "all", "conditions": [{"field": "segment", "op": "in", "value": [slug]}]}


def spender(merchant, total):
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal(total))
    return customer


def member_ids(segment):
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list("customer_id", flat=True)
    )


def test_a_real_rule_tree_is_materialised_and_kept_current(
    merchant, django_capture_on_commit_callbacks
):
    # given
    rich, poor = spender(merchant, "250"), spender(merchant, "40")
    with django_capture_on_commit_callbacks(execute=True):
        segment = segment_create(
            merchant=merchant, name="Big spenders", kind="dynamic", rules=SPEND_100
        )
    assert member_ids(segment) == {rich.pk}

    # when: a purchase lifts the other customer over the threshold
    with django_capture_on_commit_callbacks(execute=True):
        TransactionFactory(customer=poor, total=Decimal("70"))

    # then
    assert member_ids(segment) == {rich.pk, poor.pk}
    assert Segment.objects.get(pk=segment.pk).member_count == 2


def test_invalid_rules_are_refused_by_the_engine(merchant):
    with pytest.raises(RuleValidationError) as raised:
        segment_create(
            merchant=merchant,
            name="Bad",
            kind="dynamic",
            rules={
                "match": "all",
                "conditions": [{"field": "total_spend", "op": "gtee", "value": 1}],
            },
        )
    assert raised.value.errors
    assert not Segment.objects.exists()


def test_segments_using_segments_refresh_after_them_and_fail_when_it_is_gone(merchant):
    # given
    rich = spender(merchant, "250")
    big = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=SPEND_100)
    fans = segment_create(merchant=merchant, name="A fans", kind="dynamic", rules=uses(big.slug))

    # when
    results = segments_refresh_due()

    # then
    assert [r.segment_id for r in results] == [big.pk, fans.pk]
    assert member_ids(fans) == {rich.pk}

    # when the referenced segment is deleted
    big.delete()
    result = segment_refresh(segment_id=fans.pk)

    # then the old membership stays and the error is recorded
    fans.refresh_from_db()
    assert (result.status, fans.refresh_status) == ("failed", RefreshStatus.FAILED)
    assert fans.last_refresh_error
    assert member_ids(fans) == {rich.pk}


def test_editing_the_rules_changes_the_members_on_the_queued_refresh(
    merchant, django_capture_on_commit_callbacks
):
    # given
    rich, richer = spender(merchant, "250"), spender(merchant, "900")
    segment = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=SPEND_100)
    segment_refresh(segment_id=segment.pk)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        segment_update(
            segment=segment,
            rules={
                "match": "all",
                "conditions": [{"field": "total_spend", "op": "gt", "value": 500}],
            },
        )

    # then
    assert member_ids(segment) == {richer.pk}
    assert rich.segment_events.get(kind="exit").definition_version == 2
