"""Fuzz every entry point that accepts rules (the Hardening issue): the builder's editor, live
count, paste and save, and `segment_preview`, with hostile rule JSON (values no database can
hold, NUL and surrogates, huge numbers and lists, deep and wide trees, broken text).

Whatever comes in: no 500 and no traceback; what is refused is not saved; what is saved
validates and evaluates on this database (the suite runs on PostgreSQL and SQLite).
"""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from segments import engine
from segments.criteria import REGISTRY
from segments.criteria.base import KNOWN_OPS
from segments.models import Segment
from segments.templates_catalog import TEMPLATES
from tests.factories import (
    DEMO_PASSWORD,
    CustomerFactory,
    StaffMembershipFactory,
    TagFactory,
    TransactionFactory,
    UserFactory,
)
from tests.hypothesis_profiles import examples
from tests.segments.conftest import builder_form

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
EXAMPLES = 100

HOSTILE_TEXT = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "x" * 300,
    "",
    " ",
    "9999-12-31",
    "0001-01-01",
    "10000-01-01",
    "2026-02-30",
    "1e999999",
    "-1e999999",
    "0.00001",
    "NaN",
    "Infinity",
    "vip",
    "VIP",
    "preroll",
]
HOSTILE_NUMBERS = [2**63, 2**63 - 1, -(2**63) - 1, 10**25, -1, 0, 36_501, 10**12]

scalars = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.lists(st.sampled_from(HOSTILE_TEXT), min_size=900, max_size=1200),
    st.dictionaries(
        st.sampled_from(["brands", "skus", "x", "\x00"]), st.lists(scalars, max_size=3)
    ),
)
fields = st.one_of(st.sampled_from(sorted(REGISTRY)), st.sampled_from(["", "nope", "tags\x00"]))
ops = st.one_of(st.sampled_from(sorted(KNOWN_OPS)), st.sampled_from(["", "gtee", None]))


@st.composite
def conditions(draw: Any) -> dict[str, Any]:
    condition: dict[str, Any] = {"field": draw(fields), "op": draw(ops), "value": draw(values)}
    for extra in draw(
        st.sets(st.sampled_from(["window_days", "products", "last_within_days", "junk"]))
    ):
        condition[extra] = draw(values)
    return condition


def groups(children: Any) -> Any:
    return st.fixed_dictionaries(
        {
            "match": st.sampled_from(["all", "any", "none"]),
            "conditions": st.lists(children, min_size=0, max_size=8),
        },
        optional={"negate": st.one_of(st.booleans(), scalars)},
    )


trees = st.recursive(conditions(), groups, max_leaves=20).filter(lambda t: isinstance(t, dict))


def wide(tree: dict[str, Any], width: int) -> dict[str, Any]:
    return {"match": "all", "conditions": [tree] * width}


@st.composite
def rule_texts(draw: Any) -> str:
    """Rule JSON text: a hostile tree, sometimes widened, nested, cut short, holding a list
    of more names than allowed, or larger than a request may be."""
    tree = draw(trees)
    shape = draw(
        st.sampled_from(
            ["plain", "wide", "deep", "cut", "nested-text", "long-list", "huge", "template"]
        )
    )
    event(shape)
    if shape == "template":
        # A valid template, with one value perhaps replaced by a hostile one.
        tree = copy.deepcopy(draw(st.sampled_from(TEMPLATES))["rules"])
        if draw(st.booleans()):
            tree["conditions"][0]["value"] = draw(values)
    elif shape == "wide":
        tree = wide(tree, draw(st.integers(min_value=40, max_value=60)))
    elif shape == "deep":
        for _ in range(draw(st.integers(min_value=4, max_value=40))):
            tree = {"match": "all", "conditions": [tree]}
    elif shape == "long-list":
        size = draw(st.integers(min_value=990, max_value=1010))
        names = draw(st.lists(st.sampled_from(HOSTILE_TEXT), min_size=size, max_size=size))
        op = draw(st.sampled_from(["has_any", "has_all", "has_none"]))
        tree = (
            wide({"field": "tags", "op": op, "value": names}, 1)
            if draw(st.booleans())
            else {
                "match": "all",
                "conditions": [tree, {"field": "tags", "op": op, "value": names}],
            }
        )
    elif shape == "huge":
        tree = wide(tree, 1) | {"padding": "x" * (1024 * 1024)}
    text = json.dumps(tree, allow_nan=True)
    if shape == "cut":
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    elif shape == "nested-text":
        depth = draw(st.integers(min_value=30, max_value=600))
        text = '{"match": "all", "conditions": [' * depth + text + "]}" * depth
    return text


@pytest.fixture
def fuzz_client(merchant) -> Client:
    # An owner: every endpoint that takes rules is open to them (saving included).
    user = UserFactory(username="fuzzer")
    StaffMembershipFactory(user=user, merchant=merchant)
    for i, tag in enumerate(["vip", "local"]):
        customer = CustomerFactory(
            merchant=merchant, external_id=f"F{i}", tags=[TagFactory(merchant=merchant, name=tag)]
        )
        TransactionFactory(customer=customer)
    client = Client()
    assert client.login(username=user.username, password=DEMO_PASSWORD)
    return client


@settings(
    max_examples=examples(EXAMPLES),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=rule_texts())
def test_every_rule_endpoint_survives_hostile_json(merchant, fuzz_client, tmp_path, text):
    before = set(Segment.objects.filter(merchant=merchant).values_list("pk", flat=True))

    editor = fuzz_client.post(reverse("segments:builder_editor"), {"rules_json": text})
    preview = fuzz_client.post(reverse("segments:builder_preview"), {"rules_json": text})
    paste = fuzz_client.post(
        reverse("segments:builder_editor"), {"paste_json": text, "action": "paste"}
    )
    save = fuzz_client.post(
        reverse("segments:create"), builder_form(name="Fuzzed", rules_json=text)
    )

    # a body over the request limit is refused before any of it is read (400), else a page
    too_big = (
        len(text.encode("utf-8", "surrogatepass")) > django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    )
    expected = 400 if too_big else 200
    assert (editor.status_code, preview.status_code, paste.status_code) == (expected,) * 3
    assert save.status_code in ((400,) if too_big else (302, 400))
    for response in (editor, preview, paste, save):
        response.content.decode("utf-8")  # always a page a browser can show
    created = Segment.objects.filter(merchant=merchant).exclude(pk__in=before)
    if save.status_code == 400:
        event("refused")
        assert not created.exists()
    else:
        event("saved")
        segment = created.get()
        # what was saved validates, counts and explains on this database
        tree = engine.validate_rules(segment.rules, merchant=merchant, segment=segment)
        engine.count_matching(merchant=merchant, rules=tree)
        engine.count_with_funnel(merchant=merchant, rules=tree)
        segment.delete()

    path = tmp_path / "rules.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        call_command(
            "segment_preview",
            "--merchant",
            merchant.slug,
            "--rules",
            str(path),
            stdout=io.StringIO(),
        )
    except CommandError as exc:
        assert exc.returncode == 2, str(exc)  # a validation error, never an evaluation failure
