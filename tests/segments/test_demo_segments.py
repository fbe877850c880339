"""`seed_demo_segments`: the template segments and a call list, filled, with a size history
that is what the rules matched on each past day."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from customers.models import ScoreChange
from segments import engine
from segments.demo import CALL_LIST_NAME
from segments.models import Segment, SegmentKind, SegmentSizeSnapshot
from segments.templates_catalog import TEMPLATES
from tests.factories import CustomerFactory, TransactionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shoppers(merchant):
    """Ann spent 1,200 twenty days ago, Bob 600 ten days ago, Cy nothing."""
    now = timezone.now()
    ann, bob, _cy = (CustomerFactory(merchant=merchant) for _ in range(3))
    TransactionFactory(customer=ann, total=Decimal("1200.00"), occurred_at=now - dt.timedelta(20))
    TransactionFactory(customer=bob, total=Decimal("600.00"), occurred_at=now - dt.timedelta(10))
    return ann, bob


def sizes(merchant, name):
    segment = Segment.objects.get(merchant=merchant, name=name)
    today = merchant.today()
    return {
        (today - snapshot.day).days: snapshot.member_count
        for snapshot in SegmentSizeSnapshot.objects.filter(segment=segment)
    }


def test_the_templates_and_a_call_list_are_created_and_filled(merchant, shoppers):
    # when
    call_command("seed_demo_segments", merchant=merchant.slug, weeks=3)

    # then: every template and the ready-made score segments (6 stages, 11 RFM groups, no
    # tiers here, 10 smart segments), each holding what its rules match now
    dynamic = Segment.objects.filter(merchant=merchant, kind=SegmentKind.DYNAMIC)
    templates = dynamic.exclude(slug__regex=r"^(lifecycle|rfm|tier|smart)-")
    assert sorted(s.name for s in templates) == sorted(t["name"] for t in TEMPLATES)
    assert dynamic.count() == len(TEMPLATES) + 6 + 11 + 10
    for segment in dynamic:
        expected = engine.count_matching(merchant=merchant, rules=segment.rules)
        assert segment.member_count == segment.memberships.count() == expected
    assert Segment.objects.get(name="Bronze: spend 500+").member_count == 2
    # and the call list has the customers, top spenders first (all three here)
    call_list = Segment.objects.get(merchant=merchant, name=CALL_LIST_NAME)
    assert call_list.kind == SegmentKind.MANUAL
    assert call_list.member_count == 3


def test_the_size_history_is_what_the_rules_matched_each_week(merchant, shoppers):
    # when
    call_command("seed_demo_segments", merchant=merchant.slug, weeks=3)

    # then: days ago -> members; Bob's purchase (10 days ago) counts from a week ago,
    # Ann's (20 days ago) from two weeks ago
    assert sizes(merchant, "Bronze: spend 500+") == {0: 2, 7: 2, 14: 1, 21: 0}
    assert sizes(merchant, "Gold: spend 1000+") == {0: 1, 7: 1, 14: 1, 21: 0}
    assert sizes(merchant, CALL_LIST_NAME) == {0: 3}


def test_the_score_segments_history_is_computed_week_by_week(merchant, shoppers):
    # when
    call_command("seed_demo_segments", merchant=merchant.slug, weeks=3)

    # then: Ann (20 days ago) is new from two weeks ago, Bob (10 days ago) from a week ago
    assert sizes(merchant, "Lifecycle: New") == {0: 2, 7: 2, 14: 1, 21: 0}
    assert sizes(merchant, "RFM: Prospects") == {0: 1, 7: 1, 14: 2, 21: 3}
    # the smart segments too: a single order within the one-time cut-off
    assert sizes(merchant, "Smart: One-time shopper") == {0: 2, 7: 2, 14: 1, 21: 0}
    assert sizes(merchant, "Smart: Waiting for the first order") == {0: 1, 7: 1, 14: 2, 21: 3}
    # and the stage history is in time order: each of them entered "new" once
    changes = ScoreChange.objects.filter(merchant=merchant, kind="lifecycle")
    assert sorted(changes.values_list("from_value", "to_value")) == [("", "new"), ("", "new")]


def test_a_merchant_with_segments_is_refused_or_left_alone(merchant, shoppers, capsys):
    call_command("seed_demo_segments", merchant=merchant.slug, weeks=0)
    count = Segment.objects.filter(merchant=merchant).count()

    with pytest.raises(CommandError, match="has segments already"):
        call_command("seed_demo_segments", merchant=merchant.slug)
    call_command("seed_demo_segments", merchant=merchant.slug, if_empty=True)

    assert Segment.objects.filter(merchant=merchant).count() == count
    assert "nothing to do" in capsys.readouterr().out


def test_an_unknown_merchant_is_an_error(db):
    with pytest.raises(CommandError, match='unknown merchant "nope"'):
        call_command("seed_demo_segments", merchant="nope")
