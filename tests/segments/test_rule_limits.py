"""Rules that validate can always be evaluated, and input of any size or shape gets a clear,
path-named error in bounded time (the Hardening issue, points 1 to 3).

Every value a database or a date computation cannot hold is refused by validation; text is
read within size and nesting limits before it is parsed; a segment that fails anyway shows
its error in place instead of breaking the pages that list segments.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse

from segments import builder, engine, services
from segments.criteria.base import MAX_NAMES
from segments.criteria.segments import MAX_EXPANDED_CONDITIONS, MAX_SEGMENT_NESTING
from segments.models import Segment, SegmentKind
from segments.rules import (
    MAX_ERRORS,
    MAX_JSON_DEPTH,
    MAX_RULES_BYTES,
    RuleValidationError,
    json_depth,
    load_rules_json,
    parse_rules,
)
from tests.factories import CustomerFactory, TagFactory
from tests.segments.conftest import AS_OF, builder_form, cond, rules

pytestmark = pytest.mark.django_db


def errors_of(data, merchant) -> list[str]:
    with pytest.raises(RuleValidationError) as info:
        engine.validate_rules(data, merchant=merchant)
    return info.value.errors


def nested(depth: int) -> str:
    """Rule JSON whose groups nest `depth` deep (far beyond the contract's 5)."""
    return '{"match": "all", "conditions": [' * depth + "]}" * depth


# -- point 1: values the databases cannot hold ------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        (
            cond("member_since", "between", ["2026-01-01", "9999-12-31"]),
            'conditions[0].value: must lie between 0001-01-02 and 9999-12-30, got "9999-12-31"',
        ),
        (
            cond("last_purchase", "before", "0001-01-01"),
            'conditions[0].value: must lie between 0001-01-02 and 9999-12-30, got "0001-01-01"',
        ),
        (
            cond("orders_count", "gte", 2**63),
            f"conditions[0].value: must be at most {2**63 - 1}, got {2**63}",
        ),
        (
            cond("points_balance", "between", [0, 10**25]),
            f"conditions[0].value: must be at most {2**63 - 1}, got {10**25}",
        ),
        (
            cond("total_spend", "gte", "1e999999"),
            "conditions[0].value: must be between -999999999999.99 and 999999999999.99, "
            'got "1e999999"',
        ),
        (
            cond("avg_order_value", "lt", "1.00001"),
            'conditions[0].value: money has at most 4 decimal places, got "1.00001"',
        ),
        (
            cond("tags", "has_any", ["ok", "bad\x00name"]),
            "conditions[0].value[1]: contains a NUL character (\\u0000)",
        ),
        (
            cond("customer_type", "in", ["lone \ud800 surrogate"]),
            "conditions[0].value[0]: contains an unpaired surrogate (\\ud800)",
        ),
        (
            cond("tags", "has_all", [f"t{i}" for i in range(MAX_NAMES + 1)]),
            f"conditions[0].value: a list holds at most {MAX_NAMES:,} names, got {MAX_NAMES + 1:,}",
        ),
        (
            cond("home_branch", "in", ["x" * 201]),
            "conditions[0].value[0]: a name has at most 200 characters, got 201",
        ),
        (
            cond("purchased", "gte", 1, products={"brands": ["ok", "b\x00"]}),
            "conditions[0].products.brands[1]: contains a NUL character (\\u0000)",
        ),
    ],
)
def test_validation_refuses_values_no_database_can_hold(merchant, condition, error):
    assert errors_of(rules(condition), merchant) == [error]


@pytest.mark.parametrize(
    "condition",
    [
        cond("member_since", "between", ["0001-01-02", "9999-12-30"]),
        cond("last_purchase", "after", "9999-12-30"),
        cond("orders_count", "lte", 2**63 - 1),
        cond("total_spend", "gte", "-999999999999.99"),
        cond("avg_order_value", "gte", "10.0033"),
        cond("tags", "has_all", [f"t{i}" for i in range(MAX_NAMES)]),
        cond("tags", "has_any", [f"t{i}" for i in range(MAX_NAMES)]),
        cond("birthday", "next_days", 366),
        cond("age", "between", [0, 150]),
    ],
)
def test_the_limits_themselves_validate_and_evaluate(merchant, condition):
    # given a customer with tags, so the tag lists reach SQL with every name
    customer = CustomerFactory(
        merchant=merchant, external_id="C1", tags=[TagFactory(merchant=merchant, name="t1")]
    )
    tree = engine.validate_rules(rules(condition), merchant=merchant)

    # when every path evaluates it (exact, fast, count, funnel, explain, negated)
    for exact in (True, False):
        engine.count_matching(merchant=merchant, rules=tree, as_of=AS_OF, exact=exact)
        negated = rules(condition, negate=True)
        engine.count_matching(merchant=merchant, rules=negated, as_of=AS_OF, exact=exact)
    engine.count_with_funnel(merchant=merchant, rules=rules(condition, condition))
    results = engine.explain(merchant=merchant, rules=tree, customer=customer)

    # then nothing overflows, and the result is a plain yes or no
    assert isinstance(results[0].matched, bool)


@pytest.fixture
def tagged(merchant):
    """Customers with tags: A has a, b, c; B has a; C has none."""
    tags = {name: TagFactory(merchant=merchant, name=name) for name in ("a", "b", "c", "unused")}
    for external_id, names in (("A", "abc"), ("B", "a"), ("C", "")):
        CustomerFactory(
            merchant=merchant, external_id=external_id, tags=[tags[name] for name in names]
        )


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a", "b"], ["A"]),
        (["A", "b", "C"], ["A"]),  # any case
        (["a", "b", "a"], ["A"]),  # duplicates count once
        (["a", "unused"], []),  # a tag nobody has
        (["a", "no-such-tag"], []),  # a name that is no tag of the merchant
        (["a"], ["A", "B"]),
    ],
)
def test_has_all_is_one_test_whatever_the_number_of_names(tagged, check, names, expected):
    check(cond("tags", "has_all", names), expected)


def test_has_all_of_a_thousand_names_evaluates_on_both_databases(merchant, tagged, evaluate):
    # SQLite refused an AND nested once per name ("Expression tree is too large").
    names = ["a", "b", "c"] + [f"missing-{i}" for i in range(MAX_NAMES - 3)]
    assert evaluate(rules(cond("tags", "has_all", names))) == []
    assert evaluate(rules(cond("tags", "has_all", ["a", "b", "c"]))) == ["A"]


def test_as_of_outside_the_calendar_is_refused(merchant):
    with pytest.raises(ValueError, match="as_of must lie between 1900-01-01 and 9998-12-31"):
        engine.count_matching(
            merchant=merchant,
            rules=rules(cond("orders_count", "gte", 1)),
            as_of=dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        )


# -- segments that use segments ---------------------------------------------------------------


def dynamic(merchant, slug, tree):
    return Segment.objects.create(
        merchant=merchant, name=slug, slug=slug, kind=SegmentKind.DYNAMIC, rules=tree
    )


def test_segments_that_use_segments_are_bounded_once_counted_out(merchant):
    # given a segment of 100 conditions, used by another 11 times (1,111 conditions in all)
    dynamic(merchant, "wide", rules(*[cond("orders_count", "gte", i) for i in range(100)]))
    uses = [cond("segment", "in", ["wide"]) for _ in range(11)]

    assert errors_of(rules(*uses), merchant) == [
        f"rules: with the segments they use, the rules hold 1,111 conditions, at most "
        f"{MAX_EXPANDED_CONDITIONS:,}"
    ]
    engine.validate_rules(rules(*uses[:9]), merchant=merchant)  # 909 conditions: fine


def test_segments_nest_at_most_five_deep(merchant):
    dynamic(merchant, "s1", rules(cond("orders_count", "gte", 1)))
    for level in range(2, MAX_SEGMENT_NESTING + 1):
        dynamic(merchant, f"s{level}", rules(cond("segment", "in", [f"s{level - 1}"])))

    engine.validate_rules(rules(cond("segment", "in", ["s4"])), merchant=merchant)
    assert errors_of(rules(cond("segment", "in", ["s5"])), merchant) == [
        'conditions[0].value: using "s5" nests segments 6 deep (segments that use segments '
        "nest at most 5 deep)"
    ]


# -- point 2: reading rule text ---------------------------------------------------------------


def load_errors(text) -> list[str]:
    with pytest.raises(RuleValidationError) as info:
        load_rules_json(text)
    return info.value.errors


def test_deep_nesting_is_refused_before_parsing():
    assert json_depth(nested(500)) == 1000
    assert load_errors(nested(500)) == [
        f"rules: the JSON nests more than {MAX_JSON_DEPTH} levels deep (a tree is at most 5 groups)"
    ]
    # brackets inside strings are not nesting
    assert json_depth('{"a": "[[[[{{{{"}') == 1


def test_long_numbers_nan_size_and_encoding_are_refused():
    assert load_errors('{"value": ' + "9" * 5000 + "}") == [
        "rules: a number has more than 30 digits"
    ]
    assert load_errors('{"value": NaN}') == ["rules: NaN is not a JSON number"]
    assert load_errors(" " * (MAX_RULES_BYTES + 1)) == [
        f"rules: the rule JSON is larger than {MAX_RULES_BYTES:,} bytes, the most accepted"
    ]
    assert load_errors(b"\xff{}") == ["rules: not UTF-8 text"]
    assert load_errors('{"a": "\\u0000", "b\\ud800": 1}') == [
        "a: contains a NUL character (\\u0000)",
        "rules: a key contains an unpaired surrogate (\\ud800)",
    ]
    assert load_rules_json(b'\xef\xbb\xbf{"match": "all"}') == {"match": "all"}


def test_validation_stops_early_and_reports_at_most_fifty_errors(merchant):
    # 10,000 invalid conditions: one error, found without looking at each
    many = rules(*[cond("nope", "gte", 1)] * 10_000)
    assert errors_of(many, merchant) == [
        f"rules: the rule JSON is larger than {MAX_RULES_BYTES:,} bytes, the most accepted"
    ]
    some = rules(*[cond("nope", "gte", 1)] * 200)
    assert errors_of(some, merchant) == ["rules: the rules hold 200 conditions, at most 100"]
    # a group of 51 nodes: its size, not 51 errors
    wide = rules(rules(*[cond("nope", "gte", 1)] * 51))
    assert errors_of(wide, merchant) == [
        "conditions[0].conditions: a group holds at most 50 nodes, got 51"
    ]
    # 100 conditions with two errors each: the first 50, then a note
    bad = rules(*[rules(*[cond("nope", "x", 1, extra=1)] * 50) for _ in range(2)])
    errors = errors_of(bad, merchant)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == f"rules: validation stopped after {MAX_ERRORS} errors"


def test_error_mapping_is_by_path_prefix():
    tree = rules(cond("age", "gte", 1), rules(cond("age", "gte", 1), match="any"))
    by_node, general = builder.errors_by_node(
        tree,
        [
            "conditions[1].conditions[0].value: expected a whole number",
            "conditions[0].products.brands[2]: contains a NUL character",
            "conditions[7].op: no such node",
            "rules: too large",
        ],
    )
    assert by_node == {
        "r.1.0": ["value: expected a whole number"],
        "r.0": ["products.brands[2]: contains a NUL character"],
    }
    assert general == ["conditions[7].op: no such node", "rules: too large"]


def test_error_messages_are_short_and_printable(merchant):
    errors = errors_of(rules(cond("tags\ud800" + "x" * 500, "gte", 1)), merchant)
    assert errors == ['conditions[0].field: "tags\\ud800' + "x" * 55 + '…" is not a known field']
    errors[0].encode("utf-8")  # a page can show it


# -- segment_preview --------------------------------------------------------------------------


def preview_error(tmp_path, text: str | bytes, *args: str) -> tuple[str, int]:
    path = tmp_path / "rules.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    with pytest.raises(CommandError) as info:
        call_command(
            "segment_preview",
            "--merchant",
            "acme",
            "--rules",
            str(path),
            *args,
            stdout=io.StringIO(),
        )
    return str(info.value), info.value.returncode


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (nested(500), "rules: the JSON nests more than 32 levels deep"),
        ('{"match": "all", "conditions": [' + "1" * 5000 + "]}", "more than 30 digits"),
        (
            json.dumps(rules(cond("member_since", "after", "9999-12-31"))),
            "must lie between 0001-01-02 and 9999-12-30",
        ),
        (b"\x00\xff", "rules: not UTF-8 text"),
    ],
)
def test_segment_preview_answers_every_bad_input_with_exit_2(merchant, tmp_path, text, message):
    error, code = preview_error(tmp_path, text)
    assert code == 2
    assert message in error


def test_segment_preview_refuses_an_as_of_off_the_calendar(merchant, tmp_path):
    valid = json.dumps(rules(cond("orders_count", "gte", 1)))
    for as_of in ("0001-01-01T00:00:00+05:00", "9999-12-31"):
        error, code = preview_error(tmp_path, valid, "--as-of", as_of)
        assert (code, error) == (2, "--as-of: as_of must lie between 1900-01-01 and 9998-12-31")


# -- the builder's endpoints ------------------------------------------------------------------


HOSTILE_JSON = [
    nested(500),
    '{"match": "all", "conditions": [{"field": "age", "op": "gte", "value": ' + "7" * 5000 + "}]}",
    json.dumps(rules(cond("member_since", "between", ["2026-01-01", "9999-12-31"]))),
    '{"match": "all", "conditions": [{"field": "tags", "op": "has_any", "value": ["\\ud800"]}]}',
    '{"match": "all", "conditions": [{"field": "tags\\u0000", "op": "x"}]}',
    json.dumps(rules(cond("tags", "has_any", [f"t{i}" for i in range(100_000)]))),
]


@pytest.mark.parametrize("text", HOSTILE_JSON, ids=range(len(HOSTILE_JSON)))
def test_builder_endpoints_answer_hostile_json_without_a_500(staff_client, merchant, text):
    editor = staff_client.post(reverse("segments:builder_editor"), {"rules_json": text})
    preview = staff_client.post(reverse("segments:builder_preview"), {"rules_json": text})
    paste = staff_client.post(
        reverse("segments:builder_editor"), {"paste_json": text, "action": "paste"}
    )
    save = staff_client.post(reverse("segments:create"), builder_form(rules_json=text))

    assert (editor.status_code, preview.status_code, paste.status_code) == (200, 200, 200)
    assert save.status_code == 400
    assert "The rules were not replaced" in paste.content.decode()
    assert b"Nothing was saved" in save.content
    assert not Segment.objects.filter(merchant=merchant).exists()


def test_a_huge_number_typed_in_a_widget_is_a_clear_error(staff_client, merchant):
    response = staff_client.post(
        reverse("segments:builder_editor"),
        {
            "rules_json": json.dumps(rules(cond("age", "gte", 1))),
            "c:r.0:field": "age",
            "c:r.0:op": "gte",
            "c:r.0:value": "9" * 5000,
        },
    )
    assert response.status_code == 200
    assert response.context["root"].children[0].errors == [
        'Enter a whole number ("' + "9" * 60 + '…" is not one).'
    ]


# -- a segment that fails anyway --------------------------------------------------------------


@pytest.fixture
def broken(merchant):
    """A segment saved before the limits existed (its rules no longer validate), and a good
    one."""
    good = services.segment_create(
        merchant=merchant,
        name="Buyers",
        kind=SegmentKind.DYNAMIC,
        rules=rules(cond("orders_count", "gte", 1)),
    )
    bad = services.segment_create(
        merchant=merchant,
        name="Forever members",
        kind=SegmentKind.DYNAMIC,
        rules=rules(cond("orders_count", "gte", 1)),
    )
    forever = rules(cond("member_since", "between", ["2026-01-01", "9999-12-31"]))
    Segment.objects.filter(pk=bad.pk).update(rules=forever)
    bad.refresh_from_db()
    return good, bad


def test_a_segment_that_cannot_be_evaluated_breaks_no_page(staff_client, merchant, broken):
    good, bad = broken
    customer = CustomerFactory(merchant=merchant, external_id="C1")

    # its refresh fails and keeps the old members, with the reason
    result = services.segment_refresh(segment_id=bad.pk)
    assert result.status == "failed"
    assert "must lie between" in (result.error or "")

    partial = staff_client.get(reverse("segments:customer_segments", args=[customer.pk]))
    assert partial.status_code == 200
    evaluations = {
        s.slug: (matched, error) for s, matched, _, error in partial.context["evaluations"]
    }
    assert evaluations[good.slug] == (False, "")
    assert evaluations[bad.slug][0] is None
    assert "must lie between 0001-01-02 and 9999-12-30" in evaluations[bad.slug][1]
    assert "cannot be evaluated" in partial.content.decode()

    pages = [
        reverse("segments:list"),
        reverse("segments:detail", args=[bad.pk]),
        reverse("segments:detail", args=[bad.pk]) + "?customer=C1",
        reverse("segments:edit", args=[bad.pk]),
        reverse("segments:history", args=[bad.pk]),
        reverse("customers:detail", args=[customer.pk]),
    ]
    for url in pages:
        assert staff_client.get(url).status_code == 200, url
    explained = staff_client.get(reverse("segments:detail", args=[bad.pk]), {"customer": "C1"})
    assert "These rules cannot be evaluated" in explained.context["explain_error"]


def test_an_evaluation_that_raises_shows_its_error_in_place(staff_client, merchant, broken):
    good, _ = broken
    customer = CustomerFactory(merchant=merchant, external_id="C1")
    real = engine.explain

    def explain(*, rules, **kwargs):
        if rules == good.rules:
            raise OverflowError("date value out of range")
        return real(rules=rules, **kwargs)

    with mock.patch.object(engine, "explain", side_effect=explain):
        partial = staff_client.get(reverse("segments:customer_segments", args=[customer.pk]))
        preview = staff_client.post(
            reverse("segments:builder_preview"), {"rules_json": json.dumps(good.rules)}
        )

    assert partial.status_code == 200
    errors = {s.slug: error for s, _, _, error in partial.context["evaluations"]}
    assert errors[good.slug] == "OverflowError: date value out of range"
    assert preview.status_code == 200


def test_the_live_count_shows_an_evaluation_failure(staff_client, merchant):
    tree = rules(cond("orders_count", "gte", 1))
    with mock.patch.object(engine, "count_with_funnel", side_effect=OverflowError("boom")):
        response = staff_client.post(
            reverse("segments:builder_preview"), {"rules_json": json.dumps(tree)}
        )
    assert response.status_code == 200
    assert response.context["errors"] == ["These rules cannot be evaluated: OverflowError: boom"]
    assert "The count could not be made" in response.content.decode()


def test_parse_of_stored_rules_still_names_the_problem():
    with pytest.raises(RuleValidationError, match="must lie between"):
        parse_rules(rules(cond("member_since", "after", "9999-12-31")))


# -- the live count's time limit --------------------------------------------------------------


def slow_query() -> None:
    """A statement that runs for seconds on either database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_sleep(3)")
        else:
            cursor.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                "WHERE i < 100000000) SELECT count(*) FROM n"
            )


def test_time_limit_stops_a_slow_evaluation_on_this_database():
    started = time.monotonic()
    with pytest.raises(engine.EvaluationTimeout), engine.time_limit(200):
        slow_query()
    assert time.monotonic() - started < 2
    # and the connection is usable afterwards, without the limit
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_the_live_count_says_it_was_stopped(staff_client, merchant, settings):
    settings.SEGMENT_LIVE_COUNT_TIMEOUT_MS = 200
    tree = rules(cond("orders_count", "gte", 1))

    with mock.patch.object(engine, "count_with_funnel", side_effect=lambda **kw: slow_query()):
        response = staff_client.post(
            reverse("segments:builder_preview"), {"rules_json": json.dumps(tree)}
        )

    assert response.status_code == 200
    assert response.context["errors"] == [
        "The live count took more than 0.2 seconds and was stopped, to keep the portal quick "
        "for everyone. The segment can still be saved: its refresh counts the members without "
        "this limit."
    ]
