"""Segment list, detail (why in/out, refresh now), manual members, and the customer page's
"Segments and why" partial."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from segments import services
from segments.models import RefreshStatus, SegmentKind
from tests.factories import CustomerFactory, TagFactory

pytestmark = pytest.mark.django_db

VIP_LOCALS = {
    "match": "all",
    "conditions": [
        {"field": "tags", "op": "has_any", "value": ["vip"]},
        {
            "match": "any",
            "conditions": [
                {"field": "customer_type", "op": "in", "value": ["local"]},
                {"field": "age", "op": "gte", "value": 18},
            ],
        },
    ],
}


@pytest.fixture
def people(merchant):
    vip = TagFactory(merchant=merchant, name="vip")
    return {
        "in": CustomerFactory(
            merchant=merchant, external_id="IN-1", tags=[vip], customer_type="local"
        ),
        "out": CustomerFactory(merchant=merchant, external_id="OUT-1", customer_type="local"),
    }


@pytest.fixture
def segment(merchant, people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = services.segment_create(
            merchant=merchant, name="VIP locals", kind=SegmentKind.DYNAMIC, rules=VIP_LOCALS
        )
    created.refresh_from_db()
    return created


@pytest.fixture
def manual(merchant):
    return services.segment_create(merchant=merchant, name="Hand picked", kind=SegmentKind.MANUAL)


def test_list_shows_the_merchants_segments(staff_client, segment, manual):
    response = staff_client.get(reverse("segments:list"))

    body = response.content.decode()
    assert [s.name for s in response.context["table"].data] == ["Hand picked", "VIP locals"]
    assert reverse("segments:detail", args=[segment.pk]) in body
    assert "Munchie lovers" in body  # the template picker


def test_detail_shows_definition_freshness_and_members(staff_client, segment):
    response = staff_client.get(reverse("segments:detail", args=[segment.pk]))

    body = response.content.decode()
    assert response.context["sentence"] == (
        "Tags has any of vip and (customer type is local or age ≥ 18)"
    )
    assert '"field": "tags"' in response.context["rules_json"]
    assert segment.refresh_status == RefreshStatus.OK
    assert 'id="member-count">1<' in body
    assert "IN-1" in body and "OUT-1" not in body


def test_why_in_why_out(staff_client, segment, people):
    url = reverse("segments:detail", args=[segment.pk])

    inside = staff_client.get(url, {"customer": "IN-1"}, HTTP_HX_REQUEST="true")
    outside = staff_client.get(url, {"customer": "OUT-1"})

    assert [(r.path, r.matched) for r in inside.context["explain"]] == [
        ("", True),
        ("conditions[0]", True),
        ("conditions[1]", True),
        ("conditions[1].conditions[0]", True),
        ("conditions[1].conditions[1]", False),  # no birth date
    ]
    assert "<html" not in inside.content.decode()  # the htmx partial only
    assert [r.matched for r in outside.context["explain"]][:2] == [False, False]
    assert "is out" in outside.content.decode()
    missing = staff_client.get(url, {"customer": "NOPE"})
    assert missing.context["explain_error"] == (
        'No customer\'s id, name, email or phone matches "NOPE".'
    )


def test_refresh_now_runs_the_refresh(
    staff_client, segment, people, merchant, django_capture_on_commit_callbacks
):
    late = CustomerFactory(merchant=merchant, external_id="LATE", customer_type="local")
    late.tags.add(people["in"].tags.get())

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = staff_client.post(reverse("segments:refresh", args=[segment.pk]))

    assert response.status_code == 302
    assert len(callbacks) == 1
    segment.refresh_from_db()
    assert segment.member_count == 2
    assert segment.refresh_status == RefreshStatus.OK


def test_refresh_needs_post(staff_client, segment):
    assert staff_client.get(reverse("segments:refresh", args=[segment.pk])).status_code == 405


def test_manual_add_remove_and_upload(staff_client, manual, people):
    url = reverse("segments:detail", args=[manual.pk])

    staff_client.post(reverse("segments:member_add", args=[manual.pk]), {"external_id": "IN-1"})
    manual.refresh_from_db()
    assert manual.member_count == 1
    assert "IN-1" in staff_client.get(url).content.decode()

    staff_client.post(reverse("segments:member_remove", args=[manual.pk, people["in"].pk]))
    manual.refresh_from_db()
    assert manual.member_count == 0

    upload = SimpleUploadedFile("m.csv", b"external_id\nIN-1\nOUT-1\n", content_type="text/csv")
    staff_client.post(reverse("segments:member_upload", args=[manual.pk]), {"file": upload})
    manual.refresh_from_db()
    assert manual.member_count == 2


def test_manual_add_of_an_unknown_customer_says_so(staff_client, manual):
    response = staff_client.post(
        reverse("segments:member_add", args=[manual.pk]), {"external_id": "NOPE"}, follow=True
    )

    assert "No customer&#x27;s id, name, email or phone matches &quot;NOPE&quot;" in (
        response.content.decode()
    )


def test_manual_add_by_name_adds_the_one_match_and_lists_several(staff_client, manual, merchant):
    ann = CustomerFactory(merchant=merchant, external_id="A-1", first_name="Ann", last_name="Zhang")
    CustomerFactory(merchant=merchant, external_id="B-1", first_name="Bo", last_name="Zhang")
    add = reverse("segments:member_add", args=[manual.pk])

    one = staff_client.post(add, {"customer": "ann zh"}, follow=True)
    several = staff_client.post(add, {"customer": "zhang"})
    page = staff_client.get(several["Location"]).content.decode()

    assert list(manual.memberships.values_list("customer_id", flat=True)) == [ann.pk]
    assert "1 added, 0 removed." in one.content.decode()
    assert several["Location"].endswith("?add=zhang#add-member")
    assert 'id="add-choices"' in page and "2 customers match" in page
    assert page.index("Ann Zhang") < page.index("Bo Zhang")
    assert manual.memberships.count() == 1  # listing the choices added no one
    assert re.search(r'id="last-change">\d{4}-\d\d-\d\d \d\d:\d\d<', page)


def test_upload_with_unknown_ids_changes_nothing(staff_client, manual, people):
    upload = SimpleUploadedFile("m.csv", b"external_id\nIN-1\nGHOST\n", content_type="text/csv")

    response = staff_client.post(
        reverse("segments:member_upload", args=[manual.pk]), {"file": upload}, follow=True
    )

    manual.refresh_from_db()
    assert manual.member_count == 0
    assert "no customer with external_id &quot;GHOST&quot;" in response.content.decode()


def test_manual_edits_on_a_dynamic_segment_are_refused(staff_client, segment, people):
    response = staff_client.post(
        reverse("segments:member_add", args=[segment.pk]), {"external_id": "OUT-1"}, follow=True
    )

    segment.refresh_from_db()
    assert segment.member_count == 1
    assert "Only a manual segment" in response.content.decode()


def test_customer_segments_partial(staff_client, segment, manual, people):
    services.segment_members_add(segment=manual, customers=[people["out"]])

    inside = staff_client.get(reverse("segments:customer_segments", args=[people["in"].pk]))
    outside = staff_client.get(reverse("segments:customer_segments", args=[people["out"].pk]))

    assert [s.name for s in inside.context["memberships"]] == ["VIP locals"]
    assert [(s.name, matched) for s, matched, _, _ in inside.context["evaluations"]] == [
        ("VIP locals", True)
    ]
    assert [s.name for s in outside.context["memberships"]] == ["Hand picked"]
    assert [(s.name, matched) for s, matched, _, _ in outside.context["evaluations"]] == [
        ("VIP locals", False)
    ]
    assert "✗ does not match" in outside.content.decode()


def test_customer_page_loads_the_partial(staff_client, people):
    response = staff_client.get(reverse("customers:detail", args=[people["in"].pk]))

    url = reverse("segments:customer_segments", args=[people["in"].pk])
    assert f'hx-get="{url}" hx-trigger="load"' in response.content.decode()
