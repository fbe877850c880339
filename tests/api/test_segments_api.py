"""The segments endpoints: list (filters, ordering), create, read, change and remove through
the segments services, and the builder's live count (`/segments/preview`), each scoped to
the token's merchant and refused to a read token when it writes."""

import datetime as dt
import io
import json
from typing import Any

import pytest

from segments.models import (
    MembershipEvent,
    Segment,
    SegmentKind,
    SegmentMembership,
    SegmentVersion,
)
from segments.services import (
    segment_members_add,
    segment_members_remove,
    segment_members_upload,
)
from tests.api.conftest import ApiClient, error_paths
from tests.factories import CustomerFactory, TransactionFactory
from tests.segments.refresh_helpers import make_segment, segment_rules, spend_rules

pytestmark = pytest.mark.django_db

URL = "/api/v1/segments"


def send(client: ApiClient, method: str, path: str, body: Any = None) -> Any:
    """`client` speaking POST, PATCH or DELETE (the shared client speaks GET and PUT)."""
    data = json.dumps(body) if body is not None else ""
    return getattr(client.client, method)(
        path, data=data, content_type="application/json", headers=client.headers
    )


@pytest.fixture
def vips(merchant):
    return make_segment(merchant, "vips", name="VIPs", description="Spend 100 or more")


@pytest.fixture
def rival_segment(other_merchant):
    return make_segment(other_merchant, "rival", kind=SegmentKind.MANUAL)


# -- list -----------------------------------------------------------------------------------


def test_list_answers_the_merchants_segments_with_their_freshness(reader, vips, rival_segment):
    response = reader.get(URL)

    assert response.status_code == 200, response.content
    items = response.json()["items"]
    assert [item["slug"] for item in items] == ["vips"]
    assert items[0]["kind"] == "dynamic" and items[0]["member_count"] == 0
    assert items[0]["refresh_status"] == vips.refresh_status
    assert items[0]["last_refreshed_at"] is None


def test_list_filters_by_kind_active_and_search_and_orders(reader, merchant):
    make_segment(merchant, "big", name="Big spenders", member_count=30)
    make_segment(merchant, "small", name="Small spenders", member_count=10, is_active=False)
    make_segment(merchant, "front", name="Front desk", kind=SegmentKind.MANUAL, member_count=20)

    def slugs(query: str) -> list[str]:
        response = reader.get(f"{URL}?{query}")
        assert response.status_code == 200, response.content
        return [item["slug"] for item in response.json()["items"]]

    assert slugs("") == ["big", "front", "small"]
    assert slugs("kind=manual") == ["front"]
    assert slugs("active=false") == ["small"]
    assert slugs("q=SPENDERS&ordering=-member_count") == ["big", "small"]
    assert slugs("ordering=member_count") == ["small", "front", "big"]


def test_list_refuses_an_unknown_ordering_naming_the_parameter(reader):
    response = reader.get(f"{URL}?ordering=pk")

    assert response.status_code == 422
    assert error_paths(response) == ["ordering"]


# -- create ---------------------------------------------------------------------------------


def test_post_creates_a_dynamic_segment_with_its_first_version(writer, merchant):
    response = send(
        writer,
        "post",
        URL,
        {"name": "Big spenders", "kind": "dynamic", "rules": spend_rules(500)},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "big-spenders" and body["definition_version"] == 1
    segment = Segment.objects.get(merchant=merchant, slug="big-spenders")
    assert segment.rules == spend_rules(500)
    assert SegmentVersion.objects.filter(segment=segment, version=1).exists()


def test_post_creates_a_manual_segment_with_a_given_slug(writer, merchant):
    response = send(writer, "post", URL, {"name": "Front desk", "slug": "desk", "kind": "manual"})

    assert response.status_code == 201, response.content
    assert Segment.objects.get(merchant=merchant, slug="desk").kind == SegmentKind.MANUAL


def test_post_names_the_rule_path_of_each_problem_and_saves_nothing(writer, merchant):
    rules = {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": "x"}]}

    response = send(writer, "post", URL, {"name": "Bad", "kind": "dynamic", "rules": rules})

    assert response.status_code == 422
    assert error_paths(response) == ["rules.conditions[0].value"]
    assert not Segment.objects.filter(merchant=merchant).exists()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "X", "kind": "static"}, "kind"),
        ({"kind": "manual"}, "name"),
        ({"name": "X", "kind": "manual", "rules": spend_rules(1)}, "rules"),
        ({"name": "X", "kind": "manual", "colour": "red"}, "colour"),
        ({"name": "X", "kind": "manual", "slug": "vips"}, "slug"),
        ({"name": "VIPs", "kind": "manual"}, "name"),
        # NUL: PostgreSQL cannot store it, nor compare with it (found by test_fuzz: a 500)
        ({"name": "a\x00b", "kind": "manual"}, "name"),
        ({"name": "X", "kind": "manual", "slug": "a\x00"}, "slug"),
        ({"name": "X", "kind": "manual", "description": "\x00"}, "description"),
    ],
)
def test_post_refuses_a_bad_body_naming_the_field(writer, vips, body, path):
    response = send(writer, "post", URL, body)

    assert response.status_code == 422
    assert path in error_paths(response)


# -- read, change, remove -------------------------------------------------------------------


def test_get_answers_one_segment(reader, vips):
    response = reader.get(f"{URL}/vips")

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "VIPs" and response.json()["rules"] == spend_rules(100)


def test_patch_changes_the_definition_as_a_new_version(writer, vips):
    response = send(writer, "patch", f"{URL}/vips", {"name": "Top", "rules": spend_rules(900)})

    assert response.status_code == 200, response.content
    vips.refresh_from_db()
    assert vips.name == "Top" and vips.rules == spend_rules(900)
    assert response.json()["definition_version"] == vips.definition_version == 2


def test_patch_deactivates_without_a_new_version(writer, vips):
    response = send(writer, "patch", f"{URL}/vips", {"is_active": False})

    assert response.status_code == 200, response.content
    vips.refresh_from_db()
    assert not vips.is_active and vips.definition_version == 1


def test_patch_names_the_rule_path_and_changes_nothing(writer, vips):
    rules = {"match": "all", "conditions": [{"field": "total_spend", "op": "gte", "value": "x"}]}

    response = send(writer, "patch", f"{URL}/vips", {"rules": rules})

    assert response.status_code == 422
    assert error_paths(response) == ["rules.conditions[0].value"]
    vips.refresh_from_db()
    assert vips.rules == spend_rules(100)


def test_patch_refuses_a_nul_in_the_name_and_changes_nothing(writer, vips):
    response = send(writer, "patch", f"{URL}/vips", {"name": "V\x00", "description": "x"})

    assert response.status_code == 422
    assert error_paths(response) == ["name"]
    vips.refresh_from_db()
    assert (vips.name, vips.definition_version) == ("VIPs", 1)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"{URL}/a%00b"),
        ("patch", f"{URL}/a%00b"),
        ("delete", f"{URL}/a%00b"),
        ("get", f"{URL}/a%00b/members"),
        ("put", f"{URL}/a%00b/members"),
        ("get", f"{URL}/vips/members/a%00b"),
    ],
)
def test_a_nul_in_a_slug_or_external_id_is_not_found(writer, vips, method, path):
    # PostgreSQL cannot compare a text holding NUL: no lookup is made (was a 500, test_fuzz)
    body = {"external_ids": []} if path.endswith("members") and method == "put" else {}

    response = send(writer, method, path, body) if method != "get" else writer.get(path)

    assert response.status_code == 404
    assert error_paths(response) == [""]


def test_delete_removes_a_segment(writer, vips):
    response = send(writer, "delete", f"{URL}/vips")

    assert response.status_code == 204
    assert not Segment.objects.filter(pk=vips.pk).exists()


def test_delete_is_refused_while_another_segment_uses_it(writer, merchant, vips):
    make_segment(merchant, "loyal-vips", name="Loyal VIPs", rules=segment_rules("vips"))

    response = send(writer, "delete", f"{URL}/vips")

    assert response.status_code == 409
    assert "Loyal VIPs" in response.json()["errors"][0]["message"]
    assert Segment.objects.filter(pk=vips.pk).exists()


# -- preview --------------------------------------------------------------------------------


@pytest.fixture
def spenders(merchant):
    for spend in (50, 150, 600):
        TransactionFactory(customer=CustomerFactory(merchant=merchant), total=spend)


def test_preview_counts_the_matching_customers(reader, spenders):
    response = send(reader, "post", f"{URL}/preview", {"rules": spend_rules(100)})

    assert response.status_code == 200, response.content
    assert response.json()["count"] == 2


def test_preview_gives_the_funnel_on_request(reader, spenders):
    rules = {
        "match": "all",
        "conditions": [
            {"field": "total_spend", "op": "gte", "value": 100},
            {"field": "total_spend", "op": "gte", "value": 500},
        ],
    }

    response = send(reader, "post", f"{URL}/preview?funnel=1", {"rules": rules})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1
    assert [(s["path"], s["count"], s["cumulative"]) for s in body["funnel"]] == [
        ("conditions[0]", 2, 2),
        ("conditions[1]", 1, 1),
    ]


def test_preview_names_the_rule_path(reader):
    rules = {"match": "all", "conditions": [{"field": "no_such_field", "op": "eq", "value": 1}]}

    response = send(reader, "post", f"{URL}/preview", {"rules": rules})

    assert response.status_code == 422
    assert error_paths(response) == ["rules.conditions[0].field"]


# -- scopes and tenancy ---------------------------------------------------------------------

WRITES = [
    ("post", URL, {"name": "X", "kind": "manual"}),
    ("patch", f"{URL}/vips", {"name": "X"}),
    ("delete", f"{URL}/vips", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_read_token_may_not_write(reader, vips, method, path, body):
    response = send(reader, method, path, body)

    assert response.status_code == 403
    assert error_paths(response) == [""]
    vips.refresh_from_db()
    assert vips.name == "VIPs"


@pytest.mark.parametrize(
    ("method", "body"), [("get", None), ("patch", {"name": "Mine"}), ("delete", None)]
)
def test_another_merchants_slug_is_not_found(writer, rival_segment, method, body):
    response = send(writer, method, f"{URL}/rival", body)

    assert response.status_code == 404
    assert error_paths(response) == [""]
    rival_segment.refresh_from_db()
    assert rival_segment.name == "Rival"


# -- members --------------------------------------------------------------------------------


@pytest.fixture
def desk(merchant):
    return make_segment(merchant, "desk", kind=SegmentKind.MANUAL)


def pages(client: ApiClient, url: str, between=lambda page: None) -> list[list[dict]]:
    """Every page from `url` on, following `next`; `between(n)` runs after page n."""
    found = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        found.append(body["items"])
        between(len(found))
        url = body["next"]
    return found


def test_members_are_paged_by_customer_id(reader, merchant, desk):
    customers = [CustomerFactory(merchant=merchant, external_id=f"c-{i}") for i in range(5)]
    segment_members_add(segment=desk, customers=customers)

    found = pages(reader, f"{URL}/desk/members?limit=2")

    assert [[item["external_id"] for item in page] for page in found] == [
        ["c-0", "c-1"],
        ["c-2", "c-3"],
        ["c-4"],
    ]
    assert all(item["since"] for page in found for item in page)


def test_members_paging_neither_skips_nor_repeats_under_inserts(reader, merchant, desk):
    # given: five members, and customers who join between pages, before and after the cursor
    customers = [CustomerFactory(merchant=merchant, external_id=f"c-{i}") for i in range(8)]
    segment_members_add(segment=desk, customers=customers[1:6])

    def join(page: int) -> None:
        if page == 1:
            segment_members_add(segment=desk, customers=[customers[0], customers[7]])

    # when
    found = [
        item["external_id"]
        for page in pages(reader, f"{URL}/desk/members?limit=2", join)
        for item in page
    ]

    # then: every member there from start to end exactly once, in order; the one who joined
    # behind the cursor is for the next sync
    assert found == ["c-1", "c-2", "c-3", "c-4", "c-5", "c-7"]


def test_members_refuses_a_cursor_it_did_not_give(reader, desk):
    response = reader.get(f"{URL}/desk/members?cursor=not-a-cursor")

    assert response.status_code == 422
    assert error_paths(response) == ["cursor"]


@pytest.mark.parametrize("limit", [0, 1001])
def test_members_refuses_a_limit_out_of_range(reader, desk, limit):
    response = reader.get(f"{URL}/desk/members?limit={limit}")

    assert response.status_code == 422
    assert error_paths(response) == ["limit"]


def test_changed_since_gives_the_entries_and_exits_since_then(reader, merchant, desk):
    # given
    ann, bob, cy = (CustomerFactory(merchant=merchant, external_id=x) for x in "abc")
    segment_members_add(segment=desk, customers=[ann, bob])
    MembershipEvent.objects.update(occurred_at=dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    segment_members_remove(segment=desk, customers=[bob])
    segment_members_add(segment=desk, customers=[cy])
    MembershipEvent.objects.filter(occurred_at__gt=dt.datetime(2026, 3, 2, tzinfo=dt.UTC)).update(
        occurred_at=dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
    )

    # when
    found = pages(reader, f"{URL}/desk/members?limit=1&changed_since=2026-03-02T00:00:00Z")

    # then
    assert sorted((i["external_id"], i["event"], i["at"]) for page in found for i in page) == [
        ("b", "exited", "2026-03-02T12:00:00Z"),
        ("c", "entered", "2026-03-02T12:00:00Z"),
    ]


def test_changed_since_does_not_take_a_members_cursor(reader, merchant, desk):
    segment_members_add(
        segment=desk, customers=[CustomerFactory(merchant=merchant) for _ in range(2)]
    )
    next_url = reader.get(f"{URL}/desk/members?limit=1").json()["next"]
    cursor = next_url.split("cursor=")[1].split("&")[0]

    response = reader.get(f"{URL}/desk/members?changed_since=2026-01-01T00:00:00Z&cursor={cursor}")

    assert response.status_code == 422
    assert error_paths(response) == ["cursor"]


def test_another_merchants_members_are_not_found(reader, rival_segment):
    response = reader.get(f"{URL}/rival/members")

    assert response.status_code == 404


# -- third-party sourcing -------------------------------------------------------------------


def member_ids(segment: Segment) -> set[str]:
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list(
            "customer__external_id", flat=True
        )
    )


@pytest.fixture
def abc(merchant, other_merchant):
    CustomerFactory(merchant=other_merchant, external_id="rival-1")
    return [CustomerFactory(merchant=merchant, external_id=x) for x in "abc"]


def test_put_replaces_the_members_and_reports_unknown_ids(writer, desk, abc):
    segment_members_add(segment=desk, customers=abc[:2])

    response = send(
        writer, "put", f"{URL}/desk/members", {"external_ids": ["b", "c", "nobody", "rival-1"]}
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"added": 1, "removed": 1, "unknown": ["nobody", "rival-1"]}
    assert member_ids(desk) == {"b", "c"}
    desk.refresh_from_db()
    assert desk.member_count == 2
    api_events = MembershipEvent.objects.filter(segment=desk, reason="api")
    assert sorted(api_events.values_list("customer__external_id", "kind")) == [
        ("a", "exit"),
        ("c", "entry"),
    ]
    assert {e.get_reason_display() for e in api_events} == {"Through the API"}


def test_post_adds_and_delete_removes_members(writer, desk, abc):
    added = send(writer, "post", f"{URL}/desk/members", {"external_ids": ["a", "b", "a", "x"]})
    removed = send(writer, "delete", f"{URL}/desk/members", {"external_ids": ["b", "c", "y"]})

    assert added.status_code == removed.status_code == 200
    assert added.json() == {"added": 2, "removed": 0, "unknown": ["x"]}
    assert removed.json() == {"added": 0, "removed": 1, "unknown": ["y"]}
    assert member_ids(desk) == {"a"}
    assert set(MembershipEvent.objects.filter(segment=desk).values_list("reason", flat=True)) == {
        "api"
    }


def test_an_external_id_holding_nul_is_reported_unknown(writer, desk, abc):
    # no stored id holds NUL, and PostgreSQL cannot compare one (was a 500, test_fuzz)
    response = send(writer, "post", f"{URL}/desk/members", {"external_ids": ["a", "a\x00"]})

    assert response.status_code == 200, response.content
    assert response.json() == {"added": 1, "removed": 0, "unknown": ["a\x00"]}
    assert member_ids(desk) == {"a"}


def test_the_portals_member_writes_keep_their_reasons(merchant, desk, abc):
    segment_members_add(segment=desk, customers=abc[:1])
    segment_members_upload(segment=desk, file=io.StringIO("external_id\nb\n"))

    assert sorted(
        MembershipEvent.objects.filter(segment=desk).values_list("reason", flat=True)
    ) == [
        "manual",
        "upload",
        "upload",
    ]


@pytest.mark.parametrize("method", ["put", "post", "delete"])
def test_a_dynamic_segments_members_are_not_set_by_hand(writer, vips, abc, method):
    response = send(writer, method, f"{URL}/vips/members", {"external_ids": ["a"]})

    assert response.status_code == 409
    assert error_paths(response) == [""]
    assert not SegmentMembership.objects.filter(segment=vips).exists()


@pytest.mark.parametrize("method", ["put", "post", "delete"])
def test_member_writes_need_a_write_token_and_the_merchants_segment(
    reader, writer, desk, rival_segment, abc, method
):
    refused = send(reader, method, f"{URL}/desk/members", {"external_ids": ["a"]})
    foreign = send(writer, method, f"{URL}/rival/members", {"external_ids": ["a"]})

    assert refused.status_code == 403 and foreign.status_code == 404
    assert not SegmentMembership.objects.exists()


def test_member_writes_refuse_a_body_without_a_list(writer, desk):
    response = send(writer, "post", f"{URL}/desk/members", {"external_ids": "a"})

    assert response.status_code == 422
    assert error_paths(response) == ["external_ids"]


# -- why in, why out ------------------------------------------------------------------------


def test_member_check_explains_each_condition(reader, merchant, vips):
    # given: vips is "total spend ≥ 100"; ann spent 150 and is a member, bob spent 50
    ann = CustomerFactory(merchant=merchant, external_id="ann")
    TransactionFactory(customer=ann, total=150)
    TransactionFactory(customer=CustomerFactory(merchant=merchant, external_id="bob"), total=50)
    membership = SegmentMembership.objects.create(segment=vips, customer=ann)

    # when
    inside = reader.get(f"{URL}/vips/members/ann")
    outside = reader.get(f"{URL}/vips/members/bob")

    # then
    assert inside.status_code == outside.status_code == 200, inside.content
    body = inside.json()
    assert body["member"] and body["matches_now"]
    assert body["since"].startswith(membership.since.strftime("%Y-%m-%dT%H:%M:%S"))
    assert [(c["path"], c["matched"], c["is_group"]) for c in body["explanation"]] == [
        ("", True, True),
        ("conditions[0]", True, False),
    ]
    assert outside.json()["member"] is False and outside.json()["since"] is None
    assert [c["matched"] for c in outside.json()["explanation"]] == [False, False]


def test_member_check_of_a_manual_segment_has_no_explanation(reader, merchant, desk):
    segment_members_add(
        segment=desk, customers=[CustomerFactory(merchant=merchant, external_id="a")]
    )

    response = reader.get(f"{URL}/desk/members/a")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["member"] and body["explanation"] == [] and body["matches_now"] is None


@pytest.mark.parametrize("external_id", ["nobody", "rival-1"])
def test_member_check_of_an_unknown_or_foreign_customer_is_not_found(
    reader, other_merchant, vips, external_id
):
    CustomerFactory(merchant=other_merchant, external_id="rival-1")

    response = reader.get(f"{URL}/vips/members/{external_id}")

    assert response.status_code == 404
    assert error_paths(response) == [""]


def test_member_check_of_another_merchants_segment_is_not_found(reader, merchant, rival_segment):
    CustomerFactory(merchant=merchant, external_id="a")

    response = reader.get(f"{URL}/rival/members/a")

    assert response.status_code == 404
