"""Manual segments: members added, removed and uploaded by hand, with their events."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from segments.models import MembershipEvent, Segment, SegmentKind, SegmentMembership
from segments.services import (
    MembershipUploadError,
    segment_members_add,
    segment_members_remove,
    segment_members_upload,
)
from tests.factories import CustomerFactory
from tests.segments.refresh_helpers import make_segment

pytestmark = pytest.mark.django_db


@pytest.fixture
def vips(merchant):
    return make_segment(merchant, "vips", kind=SegmentKind.MANUAL)


def members(segment):
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list("customer_id", flat=True)
    )


def events(segment):
    return sorted(
        MembershipEvent.objects.filter(segment=segment).values_list("customer_id", "kind", "reason")
    )


def csv_file(*lines):
    return SimpleUploadedFile("members.csv", ("\n".join(lines) + "\n").encode())


def test_add_and_remove_write_events_and_keep_the_count(merchant, vips):
    # given
    ann, bob = CustomerFactory(merchant=merchant), CustomerFactory(merchant=merchant)

    # when
    added = segment_members_add(segment=vips, customers=[ann, bob.pk])
    again = segment_members_add(segment=vips, customers=[ann])
    removed = segment_members_remove(
        segment=vips, customers=[bob, CustomerFactory(merchant=merchant)]
    )

    # then
    assert (added.entered, again.entered, removed.exited) == ({ann.pk, bob.pk}, set(), {bob.pk})
    assert members(vips) == {ann.pk}
    assert events(vips) == sorted(
        [(ann.pk, "entry", "manual"), (bob.pk, "entry", "manual"), (bob.pk, "exit", "manual")]
    )
    assert Segment.objects.get(pk=vips.pk).member_count == 1


def test_another_merchants_customers_cannot_be_added(vips, other_merchant):
    foreigner = CustomerFactory(merchant=other_merchant)
    with pytest.raises(ValidationError, match=str(foreigner.pk)):
        segment_members_add(segment=vips, customers=[foreigner])
    assert members(vips) == set()


def test_members_of_a_dynamic_segment_are_not_picked_by_hand(merchant):
    segment = make_segment(merchant, "big")
    with pytest.raises(ValidationError, match="Only a manual segment"):
        segment_members_add(segment=segment, customers=[CustomerFactory(merchant=merchant)])


def test_an_upload_replaces_the_members_with_upload_events(merchant, vips):
    # given
    ann, bob, cat = (CustomerFactory(merchant=merchant, external_id=x) for x in ("A1", "B2", "C3"))
    segment_members_add(segment=vips, customers=[ann, bob])

    # when
    change = segment_members_upload(
        segment=vips, file=csv_file("external_id", "B2", "", "C3", "C3")
    )

    # then
    assert (change.entered, change.exited) == ({cat.pk}, {ann.pk})
    assert members(vips) == {bob.pk, cat.pk}
    assert set(
        MembershipEvent.objects.filter(reason="upload").values_list("customer_id", "kind")
    ) == {
        (cat.pk, "entry"),
        (ann.pk, "exit"),
    }
    assert Segment.objects.get(pk=vips.pk).member_count == 2


def test_the_same_upload_twice_changes_nothing_the_second_time(merchant, vips):
    # given
    CustomerFactory(merchant=merchant, external_id="A1")
    segment_members_upload(segment=vips, file=csv_file("external_id", "A1"))

    # when
    change = segment_members_upload(segment=vips, file=io.StringIO("\ufeffexternal_id\nA1\n"))

    # then
    assert (change.entered, change.exited) == (set(), set())
    assert MembershipEvent.objects.count() == 1


def test_unknown_ids_are_listed_by_line_and_nothing_is_written(merchant, other_merchant, vips):
    # given
    ann = CustomerFactory(merchant=merchant, external_id="A1")
    CustomerFactory(merchant=other_merchant, external_id="X9")
    segment_members_add(segment=vips, customers=[ann])

    # when
    with pytest.raises(MembershipUploadError) as raised:
        segment_members_upload(segment=vips, file=csv_file("external_id", "A1", "NOPE", "X9"))

    # then
    assert raised.value.errors == [
        'line 3: no customer with external_id "NOPE".',
        'line 4: no customer with external_id "X9".',
    ]
    assert members(vips) == {ann.pk}
    assert MembershipEvent.objects.count() == 1


def test_only_the_first_50_unknown_lines_are_listed(vips):
    # when
    with pytest.raises(MembershipUploadError) as raised:
        segment_members_upload(
            segment=vips, file=csv_file("external_id", *(f"U{n}" for n in range(60)))
        )

    # then
    assert len(raised.value.errors) == 51
    assert raised.value.errors[-1] == "... and 10 more unknown external ids."


@pytest.mark.parametrize(
    "content", [b"", b"customer\nA1\n", b"external_id,name\nA1,Ann\n", b"\xff\xfe\x00"]
)
def test_a_file_without_the_external_id_header_is_refused(vips, content):
    with pytest.raises(MembershipUploadError):
        segment_members_upload(segment=vips, file=io.BytesIO(content))
