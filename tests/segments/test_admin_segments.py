"""The admin: segment lists and pages render, "Refresh now" refreshes, edits are versioned."""

from __future__ import annotations

import html
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from segments.models import (
    MembershipEvent,
    RefreshStatus,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentVersion,
)
from segments.services import segment_create, segment_refresh
from tests.factories import CustomerFactory, TransactionFactory, UserFactory
from tests.segments.refresh_helpers import (
    install_fake_engine,
    make_segment,
    segment_rules,
    spend_rules,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    install_fake_engine(monkeypatch)


@pytest.fixture
def support_client():
    user = UserFactory(username="support", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def refreshed(merchant):
    customer = CustomerFactory(merchant=merchant, external_id="RICH1")
    TransactionFactory(customer=customer, total=Decimal("500"))
    segment = segment_create(merchant=merchant, name="Big", kind="dynamic", rules=spend_rules(100))
    segment_refresh(segment_id=segment.pk)
    return segment


@pytest.mark.parametrize(
    "model", [Segment, SegmentMembership, MembershipEvent, SegmentVersion], ids=lambda m: m.__name__
)
def test_changelists_render_and_search(support_client, refreshed, model):
    url = reverse(f"admin:segments_{model._meta.model_name}_changelist")
    response = support_client.get(url)
    assert response.status_code == 200
    assert support_client.get(url, {"q": "RICH1"}).status_code == 200


def test_segment_list_shows_freshness(support_client, refreshed):
    response = support_client.get(
        reverse("admin:segments_segment_changelist"), {"refresh_status__exact": "ok"}
    )
    assert response.status_code == 200
    assert "Big" in response.content.decode()
    assert "Up to date" in response.content.decode()


def test_the_admin_says_its_time_zone_and_the_schedule_in_words(support_client, refreshed):
    refreshed.refresh_cadence, refreshed.refresh_weekday, refreshed.refresh_hour = "weekly", 2, 5
    refreshed.save()

    listing = support_client.get(reverse("admin:segments_segment_changelist")).content.decode()
    page = support_client.get(
        reverse("admin:segments_segment_change", args=[refreshed.pk])
    ).content.decode()

    assert "All times in UTC" in listing
    assert "Weekly on Wednesday at 05:00 (America/Toronto)" in listing
    # the weekday and hour are chosen by name and clock time, not typed as numbers
    assert '<option value="2" selected>Wednesday</option>' in page
    assert '<option value="5" selected>05:00</option>' in page


def test_membership_rows_are_read_only(support_client, refreshed):
    membership = SegmentMembership.objects.get()
    url = reverse("admin:segments_segmentmembership_change", args=[membership.pk])
    response = support_client.get(url)
    assert response.status_code == 200
    assert b'name="_save"' not in response.content


def test_refresh_now_refreshes_the_selected_dynamic_segments(
    support_client, merchant, django_capture_on_commit_callbacks
):
    # given
    customer = CustomerFactory(merchant=merchant)
    TransactionFactory(customer=customer, total=Decimal("500"))
    dynamic = make_segment(merchant, "big", spend_rules(100))
    manual = make_segment(merchant, "vips", kind=SegmentKind.MANUAL)

    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = support_client.post(
            reverse("admin:segments_segment_changelist"),
            {"action": "refresh_now", "_selected_action": [dynamic.pk, manual.pk]},
            follow=True,
        )

    # then
    assert response.status_code == 200
    assert len(callbacks) == 1
    assert "Queued a refresh of 1 segment(s)" in response.content.decode()
    dynamic.refresh_from_db()
    assert dynamic.refresh_status == RefreshStatus.OK
    assert dynamic.member_count == 1


def test_an_admin_edit_goes_through_the_service(support_client, refreshed):
    # given
    url = reverse("admin:segments_segment_change", args=[refreshed.pk])
    page = support_client.get(url)
    assert page.status_code == 200

    # when
    response = support_client.post(
        url,
        {
            "name": "Bigger",
            "description": "",
            "is_active": "on",
            "refresh_cadence": "weekly",
            "refresh_weekday": "6",
            "refresh_hour": "4",
        },
    )

    # then
    assert response.status_code == 302, response.content.decode()[:2000]
    refreshed.refresh_from_db()
    assert (refreshed.name, refreshed.definition_version) == ("Bigger", 2)
    assert SegmentVersion.objects.filter(segment=refreshed, version=2).exists()
    assert refreshed.refresh_cadence == "weekly"


# -- removal goes through the removal plan --------------------------------------------------


def test_the_admin_refuses_to_delete_a_segment_another_one_uses(support_client, merchant):
    # given a segment another segment uses
    base = make_segment(merchant, "base")
    user = make_segment(merchant, "user-of-base", segment_rules("base"))
    url = reverse("admin:segments_segment_delete", args=[base.pk])

    # when support opens the delete page and confirms anyway
    page = support_client.get(url)
    confirm = support_client.post(url, {"post": "yes"})

    # then the page says why, and nothing is deleted
    assert "Cannot delete segment" in page.content.decode()
    assert '"Base" is used by "User Of Base"' in html.unescape(page.content.decode())
    assert confirm.status_code == 200  # the admin's "cannot delete" page again
    assert Segment.objects.filter(pk__in=[base.pk, user.pk]).count() == 2


def test_the_admin_deletes_through_the_service(support_client, merchant):
    base = make_segment(merchant, "base")
    user = make_segment(merchant, "user-of-base", segment_rules("base"))
    lonely = make_segment(merchant, "lonely")

    # the bulk action: base together with the segment that uses it, and a third
    response = support_client.post(
        reverse("admin:segments_segment_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [base.pk, user.pk, lonely.pk],
            "post": "yes",
        },
        follow=True,
    )

    assert response.status_code == 200
    assert not Segment.objects.filter(pk__in=[base.pk, user.pk, lonely.pk]).exists()


def test_only_support_with_the_delete_permission_may_delete(merchant):
    from django.contrib.auth.models import Permission

    segment = make_segment(merchant, "kept")
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_segment"))
    client = Client()
    client.force_login(viewer)

    response = client.post(
        reverse("admin:segments_segment_delete", args=[segment.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert Segment.objects.filter(pk=segment.pk).exists()
