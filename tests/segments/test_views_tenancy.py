"""Tenancy of every segment URL: login and membership required, own rows only, and another
merchant's segment or customer ids answer 404 (the pattern of tests/customers/test_tenancy.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from segments import services
from segments.models import SegmentKind
from tests.factories import DEMO_PASSWORD, CustomerFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db

RULES = json.dumps({"match": "all", "conditions": [{"field": "age", "op": "gte", "value": 1}]})


@dataclass(frozen=True)
class SegmentUrl:
    name: str
    kwargs: Callable[[dict[str, Any]], dict[str, Any]] = lambda world: {}
    method: str = "get"
    data: dict[str, str] = field(default_factory=dict)
    member_status: int = 200

    def url(self, world: dict[str, Any], prefix: str = "own") -> str:
        return reverse(self.name, kwargs=self.kwargs({**world, "prefix": prefix}))

    def request(self, client: Client, world: dict[str, Any], prefix: str = "own"):
        url = self.url(world, prefix)
        if self.method == "post":
            return client.post(url, self.data)
        return client.get(url)

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.name}"


def _pk(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda world: {"pk": world[f"{world['prefix']}_{key}"].pk}


SEGMENT_URLS = [
    SegmentUrl("segments:list"),
    SegmentUrl("segments:create"),
    SegmentUrl("segments:builder_editor", method="post", data={"rules_json": RULES}),
    SegmentUrl("segments:builder_preview", method="post", data={"rules_json": RULES}),
    SegmentUrl("segments:detail", kwargs=_pk("segment")),
    SegmentUrl("segments:edit", kwargs=_pk("segment")),
    SegmentUrl(
        "segments:builder_editor_segment",
        kwargs=_pk("segment"),
        method="post",
        data={"rules_json": RULES},
    ),
    SegmentUrl(
        "segments:builder_preview_segment",
        kwargs=_pk("segment"),
        method="post",
        data={"rules_json": RULES},
    ),
    SegmentUrl("segments:refresh", kwargs=_pk("segment"), method="post", member_status=302),
    SegmentUrl(
        "segments:member_add",
        kwargs=_pk("manual"),
        method="post",
        data={"external_id": "OWN-1"},
        member_status=302,
    ),
    SegmentUrl(
        "segments:member_remove",
        kwargs=lambda world: {
            "pk": world[f"{world['prefix']}_manual"].pk,
            "customer_pk": world[f"{world['prefix']}_customer"].pk,
        },
        method="post",
        member_status=302,
    ),
    SegmentUrl("segments:member_upload", kwargs=_pk("manual"), method="post", member_status=302),
    SegmentUrl(
        "segments:customer_segments",
        kwargs=lambda world: {"customer_pk": world[f"{world['prefix']}_customer"].pk},
    ),
]
URL_IDS = [str(u) for u in SEGMENT_URLS]
#: The URLs that name a segment or a customer by id.
ID_URLS = [
    u
    for u in SEGMENT_URLS
    if u.name
    not in {
        "segments:list",
        "segments:create",
        "segments:builder_editor",
        "segments:builder_preview",
    }
]


@pytest.fixture
def world(merchant, other_merchant):
    rules = json.loads(RULES)
    own_tag = TagFactory(merchant=merchant, name="own-tag")
    foreign_tag = TagFactory(merchant=other_merchant, name="foreign-tag")
    world: dict[str, Any] = {
        "own_customer": CustomerFactory(merchant=merchant, external_id="OWN-1", tags=[own_tag]),
        "foreign_customer": CustomerFactory(
            merchant=other_merchant, external_id="FOREIGN-1", tags=[foreign_tag]
        ),
    }
    for prefix, owner in (("own", merchant), ("foreign", other_merchant)):
        world[f"{prefix}_segment"] = services.segment_create(
            merchant=owner, name=f"{prefix}-segment", kind=SegmentKind.DYNAMIC, rules=rules
        )
        world[f"{prefix}_manual"] = services.segment_create(
            merchant=owner, name=f"{prefix}-manual", kind=SegmentKind.MANUAL
        )
    return world


def login(username: str) -> Client:
    UserFactory(username=username)
    client = Client()
    assert client.login(username=username, password=DEMO_PASSWORD)
    return client


@pytest.mark.parametrize("segment_url", SEGMENT_URLS, ids=URL_IDS)
def test_anonymous_is_sent_to_login(client, world, segment_url):
    response = segment_url.request(client, world)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("segment_url", SEGMENT_URLS, ids=URL_IDS)
def test_user_without_membership_is_refused(world, segment_url):
    response = segment_url.request(login("drifter"), world)

    assert response.status_code == 403
    assert "No merchant yet" in response.content.decode()


@pytest.mark.parametrize("segment_url", SEGMENT_URLS, ids=URL_IDS)
def test_member_can_open_and_sees_no_foreign_rows(staff_client, world, segment_url):
    response = segment_url.request(staff_client, world)

    assert response.status_code == segment_url.member_status
    assert b"FOREIGN-1" not in response.content
    assert b"foreign-tag" not in response.content
    assert b"foreign-segment" not in response.content


@pytest.mark.parametrize("segment_url", ID_URLS, ids=[str(u) for u in ID_URLS])
def test_another_merchants_ids_are_404(staff_client, world, segment_url):
    response = segment_url.request(staff_client, world, prefix="foreign")

    assert response.status_code == 404


def test_builder_options_are_only_own(staff_client, world):
    response = staff_client.post(
        reverse("segments:builder_editor"),
        {"rules_json": RULES, "c:r.0:field": "tags"},
    )

    body = response.content.decode()
    assert "own-tag" in body and "foreign-tag" not in body
    segments = staff_client.post(
        reverse("segments:builder_editor"), {"rules_json": RULES, "c:r.0:field": "segment"}
    )
    assert "own-segment" in segments.content.decode()
    assert "foreign-segment" not in segments.content.decode()


def test_explain_cannot_see_another_merchants_customer(staff_client, world):
    url = reverse("segments:detail", args=[world["own_segment"].pk])

    response = staff_client.get(url, {"customer": "FOREIGN-1"})

    assert "explain" not in response.context
    assert response.context["explain_error"]


def test_manual_add_of_another_merchants_customer_adds_nothing(staff_client, world):
    manual = world["own_manual"]

    staff_client.post(
        reverse("segments:member_add", args=[manual.pk]), {"external_id": "FOREIGN-1"}
    )

    manual.refresh_from_db()
    assert manual.member_count == 0
