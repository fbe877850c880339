"""A fuzz of the API's writes: random JSON bodies never give a 500, and every answer is a
success or the error shape. `PUT /api/v1/customers/{external_id}` (contract columns with
values of every JSON type, unknown keys, broken and odd JSON), `POST /api/v1/transactions`,
and the segments' bodies (create, change, preview, members)."""

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.imports.specs import CONTRACT_COLUMNS
from segments import services as segment_services
from segments.criteria import REGISTRY
from segments.criteria.base import KNOWN_EXTRAS, KNOWN_OPS
from segments.models import SegmentKind
from tests.api.conftest import ApiClient, error_paths
from tests.factories import BranchFactory, CustomerFactory, ProductFactory
from tests.hypothesis_profiles import examples

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

COLUMNS = [name for name in CONTRACT_COLUMNS["customers"] if name != "external_id"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            " ",
            "2024-01-02",
            "2024-01-02T10:00:00",
            "2024-01-02T10:00:00+14:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-12:00",
            "1990-02-30",
            "ann@example.com",
            "+1 (416) 555-0100",
            "female",
            "DT",
            "yes",
            "a\x00b",
            "x" * 300,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.dictionaries(
    st.sampled_from(COLUMNS) | st.text(max_size=12), json_values, max_size=len(COLUMNS)
)
external_ids = st.sampled_from(["c-1", "c-2", "x" * 101, "%20", "caf%C3%A9", "a%00b"]) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/?#%"), min_size=1, max_size=20
)


@pytest.fixture
def branch(merchant):
    return BranchFactory(merchant=merchant, code="DT")


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, external_id=external_ids, cut=st.none() | st.integers(0, 200))
def test_no_body_gives_a_500(writer, branch, body, external_id, cut):
    text = json.dumps(body)
    if cut is not None:
        text = text[:cut]  # broken JSON too

    # the test client raises what a view raises: a 500 would fail here
    response = writer.put(f"/api/v1/customers/{external_id}", text)
    read = writer.get(f"/api/v1/customers/{external_id}")

    assert read.status_code in {200, 404}

    assert response.status_code in {200, 201, 400, 404, 422}, response.content
    if response.status_code >= 400:
        error_paths(response)
    else:
        assert response.json()["external_id"]


# -- the transactions and segment bodies ----------------------------------------------------
#
# Two kinds of body for each route: arbitrary JSON (any type at the top, nested lists and
# objects, text with NULs, numbers beyond 64 bits), and bodies built from the route's real
# field names whose values are wrong in type, range or form. Whatever comes, the answer is
# never a 500 (the test client raises what a view raises), and every error has the shape.

odd_scalars = scalars | st.sampled_from(
    [
        2**63,
        -(2**63) - 1,
        10**40,
        -0.0,
        1e308,
        5e-324,
        "1e400",
        "NaN",
        "-Infinity",
        "12.505",
        "-0",
        "0x10",
        "1_000",
        "\x00",
        "\u202e",
        "\ud7ff",
        "9" * 40,
    ]
)
odd_json = st.recursive(
    odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


def _fields(names: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict]:
    """Objects with some of the real field names (and now and then an unknown one)."""
    return st.dictionaries(
        st.sampled_from(names) | st.text(max_size=8), values, max_size=len(names) + 1
    )


# transactions: a valid-looking transaction with some of its fields replaced
_ITEM = {"sku": "SKU-1", "quantity": 1, "amount": "12.50"}
_TRANSACTION = {
    "external_id": "t-1",
    "customer": "c-1",
    "occurred_at": "2024-01-02T10:00:00Z",
    "kind": "purchase",
    "total": "12.50",
    "branch": "DT",
    "points_earned": 12,
    "points_redeemed": 0,
    "items": [_ITEM],
}
items = st.lists(
    st.builds(lambda changes: {**_ITEM, **changes}, _fields(list(_ITEM), odd_json)) | odd_json,
    max_size=3,
)
transactions = st.builds(
    lambda changes, its: {**_TRANSACTION, "items": its, **changes},
    _fields(list(_TRANSACTION), odd_json),
    items,
)
transaction_bodies = (
    st.builds(lambda rows: {"transactions": rows}, st.lists(transactions | odd_json, max_size=4))
    | _fields(["transactions"], odd_json)
    | odd_json
)

# segments: rule trees from the contract's fields, operators and keys, with wrong values
_RULE_FIELDS = sorted(REGISTRY)
_OPS = sorted(KNOWN_OPS)
conditions = st.fixed_dictionaries(
    {
        "field": st.sampled_from(_RULE_FIELDS) | odd_scalars,
        "op": st.sampled_from(_OPS) | odd_scalars,
    },
    optional={
        "value": odd_json
        | st.sampled_from([["vip"], [1, 2], [2, 1], ["2024-01-01", "2023-01-01"], ["a\x00b"]]),
        **{extra: odd_json for extra in sorted(KNOWN_EXTRAS)},
    },
)
rule_trees = st.recursive(
    conditions,
    lambda inner: st.fixed_dictionaries(
        {"conditions": st.lists(inner, max_size=3) | odd_json},
        optional={
            "match": st.sampled_from(["all", "any"]) | odd_scalars,
            "negate": st.booleans() | odd_scalars,
            "version": st.sampled_from([1, 2]) | odd_scalars,
        },
    ),
    max_leaves=6,
)
rules = rule_trees | odd_json
segment_names = st.text(max_size=30) | st.sampled_from(["Regulars", "", " ", "x" * 300, "a\x00b"])
segment_bodies = (
    st.fixed_dictionaries(
        {"name": segment_names | odd_json, "kind": st.sampled_from(["dynamic", "manual"])},
        optional={
            "slug": st.sampled_from(["regulars", "buyers", "new-one", "", "A B", "é"]) | odd_json,
            "description": st.text(max_size=30) | odd_json,
            "rules": rules,
        },
    )
    | _fields(["name", "slug", "description", "kind", "rules"], odd_json)
    | odd_json
)
patch_bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": segment_names | odd_json,
            "description": st.text(max_size=30) | odd_json,
            "rules": rules,
            "is_active": st.booleans() | odd_json,
        },
    )
    | odd_json
)
preview_bodies = st.builds(lambda tree: {"rules": tree}, rules) | odd_json
member_bodies = (
    st.builds(
        lambda ids: {"external_ids": ids},
        st.lists(
            st.sampled_from(["c-1", "c-2", "nobody", "", " c-1 ", "a\x00b", "x" * 300])
            | st.text(max_size=10),
            max_size=5,
        ),
    )
    | st.builds(lambda ids: {"external_ids": ids}, st.lists(odd_json, max_size=3))
    | _fields(["external_ids"], odd_json)
    | odd_json
)
slugs = st.sampled_from(["regulars", "buyers", "nobody", "%00", "a" * 300])


@pytest.fixture
def _no_rate_limit(settings):
    # Hundreds of requests a test with one token: the rate limit has its own tests.
    settings.API_RATE_LIMIT = 0


@pytest.fixture
def shop(merchant, branch, _no_rate_limit):
    """Two customers, a product, a manual segment ("regulars") and a dynamic one ("buyers")."""
    CustomerFactory(merchant=merchant, external_id="c-1")
    CustomerFactory(merchant=merchant, external_id="c-2")
    ProductFactory(merchant=merchant, sku="SKU-1")
    segment_services.segment_create(
        merchant=merchant, name="Regulars", slug="regulars", kind=SegmentKind.MANUAL
    )
    segment_services.segment_create(
        merchant=merchant,
        name="Buyers",
        slug="buyers",
        kind=SegmentKind.DYNAMIC,
        rules={"match": "all", "conditions": [{"field": "orders_count", "op": "gte", "value": 1}]},
    )
    return merchant


def _send(client: ApiClient, method: str, path: str, body: Any, cut: int | None) -> Any:
    text = json.dumps(body)
    if cut is not None:
        text = text[:cut]  # broken JSON too
    return client.client.generic(
        method, path, text.encode(), content_type="application/json", headers=client.headers
    )


def _answers_without_a_500(response: Any) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        error_paths(response)
    elif response.status_code != 204:
        assert isinstance(response.json(), dict)


FUZZ = settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
cuts = st.none() | st.none() | st.integers(0, 200)


@FUZZ
@given(body=transaction_bodies, cut=cuts)
def test_no_transactions_body_gives_a_500(writer, shop, body, cut):
    _answers_without_a_500(_send(writer, "POST", "/api/v1/transactions", body, cut))


@FUZZ
@given(body=segment_bodies, cut=cuts)
def test_no_new_segment_body_gives_a_500(writer, shop, body, cut):
    _answers_without_a_500(_send(writer, "POST", "/api/v1/segments", body, cut))


@FUZZ
@given(slug=slugs, body=patch_bodies, cut=cuts)
def test_no_segment_change_gives_a_500(writer, shop, slug, body, cut):
    _answers_without_a_500(_send(writer, "PATCH", f"/api/v1/segments/{slug}", body, cut))


@FUZZ
@given(body=preview_bodies, funnel=st.booleans(), cut=cuts)
def test_no_preview_body_gives_a_500(reader, shop, body, funnel, cut):
    path = "/api/v1/segments/preview" + ("?funnel=1" if funnel else "")
    _answers_without_a_500(_send(reader, "POST", path, body, cut))


@FUZZ
@given(method=st.sampled_from(["PUT", "POST", "DELETE"]), slug=slugs, body=member_bodies, cut=cuts)
def test_no_members_body_gives_a_500(writer, shop, method, slug, body, cut):
    _answers_without_a_500(_send(writer, method, f"/api/v1/segments/{slug}/members", body, cut))
