"""Creating and editing segments: validation, slugs, versions, queued refreshes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from segments.models import RefreshStatus, Segment, SegmentKind, SegmentMembership, SegmentVersion
from segments.services import segment_create, segment_update
from tests.factories import CustomerFactory, TransactionFactory, UserFactory
from tests.segments.refresh_helpers import FakeRuleError, install_fake_engine, spend_rules

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    install_fake_engine(monkeypatch)


def test_create_a_dynamic_segment_records_version_1_and_refreshes_on_commit(
    merchant, django_capture_on_commit_callbacks
):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("300"))
    user = UserFactory()

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        segment = segment_create(
            merchant=merchant,
            name="Big spenders",
            kind=SegmentKind.DYNAMIC,
            rules=spend_rules(100),
            created_by=user,
        )

    # then
    assert len(callbacks) == 1
    segment.refresh_from_db()
    assert segment.slug == "big-spenders"
    assert (segment.definition_version, segment.created_by) == (1, user)
    version = SegmentVersion.objects.get(segment=segment)
    assert (version.version, version.name, version.rules, version.created_by) == (
        1,
        "Big spenders",
        spend_rules(100),
        user,
    )
    assert segment.refresh_status == RefreshStatus.OK
    assert list(SegmentMembership.objects.values_list("customer_id", flat=True)) == [customer.pk]


def test_create_queues_the_refresh_until_commit(merchant, django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        segment = segment_create(
            merchant=merchant, name="Big spenders", kind="dynamic", rules=spend_rules(100)
        )

    # then
    assert len(callbacks) == 1
    assert segment.refresh_status == RefreshStatus.QUEUED


def test_slugs_are_derived_from_the_name_and_deduplicated_per_merchant(merchant, other_merchant):
    # when
    first = segment_create(merchant=merchant, name="VIP Club", kind="manual")
    second = segment_create(merchant=merchant, name="VIP club!", kind="manual")
    third = segment_create(merchant=merchant, name="vip-club", kind="manual")
    elsewhere = segment_create(merchant=other_merchant, name="VIP Club", kind="manual")

    # then
    assert [first.slug, second.slug, third.slug] == ["vip-club", "vip-club-2", "vip-club-3"]
    assert elsewhere.slug == "vip-club"


def test_a_given_slug_that_is_taken_is_refused(merchant):
    # given
    segment_create(merchant=merchant, name="VIPs", slug="vips", kind="manual")

    # when / then
    with pytest.raises(ValidationError, match="already has a segment"):
        segment_create(merchant=merchant, name="Other", slug="vips", kind="manual")


def test_a_manual_segment_with_rules_is_refused(merchant):
    with pytest.raises(ValidationError, match="manual segment has no rules"):
        segment_create(merchant=merchant, name="VIPs", kind="manual", rules=spend_rules(1))
    assert not Segment.objects.exists()


def test_a_dynamic_segment_needs_valid_rules_and_nothing_is_saved_otherwise(merchant):
    with pytest.raises(FakeRuleError):
        segment_create(merchant=merchant, name="Nothing", kind="dynamic", rules=None)
    assert not Segment.objects.exists()
    assert not SegmentVersion.objects.exists()


def test_new_rules_bump_the_version_record_it_and_queue_a_refresh(
    merchant, django_capture_on_commit_callbacks
):
    # given
    segment = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=spend_rules(1))
    editor = UserFactory()

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        updated = segment_update(segment=segment, user=editor, rules=spend_rules(500))

    # then
    assert len(callbacks) == 1
    assert updated.definition_version == 2
    assert updated.rules == spend_rules(500)
    assert updated.refresh_status == RefreshStatus.QUEUED
    version = SegmentVersion.objects.get(segment=segment, version=2)
    assert (version.rules, version.created_by) == (spend_rules(500), editor)


def test_a_new_name_is_a_new_version_without_a_refresh(
    merchant, django_capture_on_commit_callbacks
):
    # given
    segment = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=spend_rules(1))

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        updated = segment_update(segment=segment, name="Bigger", description="More")

    # then
    assert callbacks == []
    assert updated.definition_version == 2
    assert list(SegmentVersion.objects.values_list("version", "name", "description")) == [
        (2, "Bigger", "More"),
        (1, "Big", ""),
    ]


def test_changes_outside_the_definition_do_not_bump_the_version(merchant):
    # given
    segment = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=spend_rules(1))

    # when
    updated = segment_update(segment=segment, refresh_cadence="weekly", refresh_hour=5)
    unchanged = segment_update(segment=updated, name="Big")

    # then
    assert (updated.definition_version, unchanged.definition_version) == (1, 1)
    assert (updated.refresh_cadence, updated.refresh_hour) == ("weekly", 5)
    assert SegmentVersion.objects.count() == 1


def test_invalid_new_rules_change_nothing(merchant):
    # given
    segment = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=spend_rules(1))

    # when
    with pytest.raises(FakeRuleError):
        segment_update(segment=segment, rules={"match": "all", "conditions": []}, name="New")

    # then
    segment.refresh_from_db()
    assert (segment.name, segment.definition_version, segment.rules) == ("Big", 1, spend_rules(1))


def test_unknown_fields_are_refused(merchant):
    segment = segment_create(merchant=merchant, name="VIPs", kind="manual")
    with pytest.raises(ValidationError, match="cannot be changed here: member_count"):
        segment_update(segment=segment, member_count=5)


def test_reactivating_a_dynamic_segment_queues_a_refresh(
    merchant, django_capture_on_commit_callbacks
):
    # given
    segment = segment_create(
        merchant=merchant, name="Big", kind="dynamic", rules=spend_rules(1), is_active=False
    )

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        updated = segment_update(segment=segment, is_active=True)

    # then
    assert len(callbacks) == 1
    assert updated.refresh_status == RefreshStatus.QUEUED


@pytest.mark.parametrize("field", ["name", "slug", "description"])
def test_create_refuses_a_nul_by_field_before_any_lookup(merchant, field):
    # given: text PostgreSQL can neither store nor compare (the API's fuzz found the 500)
    values = {"name": "Regulars", "slug": "regulars", "description": "", field: "a\x00b"}

    # when / then
    with pytest.raises(ValidationError) as refused:
        segment_create(merchant=merchant, kind=SegmentKind.MANUAL, **values)
    assert list(refused.value.message_dict) == [field]
    assert not Segment.objects.exists()


def test_update_refuses_a_nul_in_the_name_or_description(merchant):
    segment = segment_create(merchant=merchant, name="Regulars", kind=SegmentKind.MANUAL)

    with pytest.raises(ValidationError) as refused:
        segment_update(segment=segment, name="R\x00", description="\x00")

    assert sorted(refused.value.message_dict) == ["description", "name"]
    segment.refresh_from_db()
    assert (segment.name, segment.definition_version) == ("Regulars", 1)
