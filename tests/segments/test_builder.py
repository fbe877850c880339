"""The builder's editor: widgets and edits applied to the rule JSON (no HTTP)."""

from __future__ import annotations

import json

from django.http import QueryDict

from segments import builder
from segments.rules import MAX_DEPTH, MAX_GROUP_NODES


def post(**data: str | list[str]) -> QueryDict:
    q = QueryDict(mutable=True)
    for key, value in data.items():
        if isinstance(value, list):
            q.setlist(key, value)
        else:
            q[key] = value
    return q


def tree(*conditions, match="all", negate=False):
    return {"match": match, "negate": negate, "conditions": list(conditions)}


def test_choosing_a_field_resets_the_condition_to_its_defaults():
    start = tree({"field": "", "op": "", "value": None})

    result = builder.apply_widgets(start, post(**{"c:r.0:field": "purchased"}))

    assert result["conditions"][0] == {
        "field": "purchased",
        "op": "gte",
        "value": None,
        "products": {"product_types": [], "brands": [], "categories": [], "skus": []},
    }


def test_purchased_widgets_become_the_contract_json():
    start = tree(builder.new_condition("purchased"))
    data = post(
        **{
            "c:r.0:field": "purchased",
            "c:r.0:op": "gt",
            "c:r.0:value": "15",
            "c:r.0:products.product_types": ["preroll"],
            "c:r.0:products.brands": ["Phat Panda"],
            "c:r.0:window_days": "",
            "c:r.0:last_within_days": "14",
        }
    )

    result = builder.clean_for_save(builder.apply_widgets(start, data))

    assert result == tree(
        {
            "field": "purchased",
            "op": "gt",
            "value": 15,
            "products": {"product_types": ["preroll"], "brands": ["Phat Panda"]},
            "last_within_days": 14,
        }
    )


def test_changing_the_op_to_another_widget_resets_the_value():
    start = tree({"field": "age", "op": "gte", "value": 21})

    result = builder.apply_widgets(start, post(**{"c:r.0:field": "age", "c:r.0:op": "between"}))

    assert result["conditions"][0] == {"field": "age", "op": "between", "value": [None, None]}


def test_changing_the_op_within_a_widget_keeps_the_value():
    start = tree({"field": "total_spend", "op": "gte", "value": 500})
    data = post(**{"c:r.0:field": "total_spend", "c:r.0:op": "gt", "c:r.0:value": "499.99"})

    result = builder.apply_widgets(start, data)

    assert result["conditions"][0] == {"field": "total_spend", "op": "gt", "value": "499.99"}


def test_between_dates_and_booleans_and_names():
    start = tree(
        {"field": "member_since", "op": "between", "value": [None, None]},
        {"field": "email_opt_in", "op": "is", "value": True},
        {"field": "tags", "op": "has_any", "value": []},
    )
    data = post(
        **{
            "c:r.0:field": "member_since",
            "c:r.0:op": "between",
            "c:r.0:lo": "2026-01-01",
            "c:r.0:hi": "2026-03-31",
            "c:r.1:field": "email_opt_in",
            "c:r.1:op": "is",
            "c:r.1:value": "false",
            "c:r.2:field": "tags",
            "c:r.2:op": "has_all",
            "c:r.2:value": ["vip", "local"],
        }
    )

    result = builder.apply_widgets(start, data)

    assert result["conditions"] == [
        {"field": "member_since", "op": "between", "value": ["2026-01-01", "2026-03-31"]},
        {"field": "email_opt_in", "op": "is", "value": False},
        {"field": "tags", "op": "has_all", "value": ["vip", "local"]},
    ]


def test_group_match_and_negate_widgets():
    start = tree(tree({"field": "age", "op": "gte", "value": 1}, match="any"))
    data = post(
        **{"g:r:match": "any", "g:r:negate": "0", "g:r.0:match": "all", "g:r.0:negate": "1"}
    )

    result = builder.apply_widgets(start, data)

    assert result["match"] == "any" and result["negate"] is False
    assert result["conditions"][0]["match"] == "all"
    assert result["conditions"][0]["negate"] is True


def test_nodes_without_posted_widgets_keep_their_json():
    start = tree({"field": "age", "op": "gte", "value": 21})

    assert builder.apply_widgets(start, post()) == start


def test_add_condition_and_group_and_remove():
    start = tree({"field": "age", "op": "gte", "value": 21})

    added = builder.apply_action(start, "add_condition:r")
    grouped = builder.apply_action(added, "add_group:r")
    nested = builder.apply_action(grouped, "add_condition:r.2")

    assert added["conditions"][1] == {"field": "", "op": "", "value": None}
    assert nested["conditions"][2]["match"] == "any"
    assert len(nested["conditions"][2]["conditions"]) == 2

    removed = builder.apply_action(nested, "remove:r.1")
    assert [c.get("field", "group") for c in removed["conditions"]] == ["age", "group"]


def test_removing_the_last_node_of_a_nested_group_removes_the_group():
    start = tree({"field": "age", "op": "gte", "value": 21}, builder.new_group())

    result = builder.apply_action(start, "remove:r.1.0")

    assert result["conditions"] == [{"field": "age", "op": "gte", "value": 21}]


def test_edits_stop_at_the_contract_limits():
    deep = tree({"field": "age", "op": "gte", "value": 1})
    node = deep
    for _ in range(MAX_DEPTH - 1):
        child = tree({"field": "age", "op": "gte", "value": 1})
        node["conditions"].append(child)
        node = child
    deepest = "r" + ".1" * (MAX_DEPTH - 1)

    assert builder.apply_action(json.loads(json.dumps(deep)), f"add_group:{deepest}") == deep

    full = tree(*[{"field": "age", "op": "gte", "value": 1}] * MAX_GROUP_NODES)
    assert len(builder.apply_action(full, "add_condition:r")["conditions"]) == MAX_GROUP_NODES


def test_an_unknown_node_is_ignored():
    start = tree({"field": "age", "op": "gte", "value": 21})

    assert builder.apply_action(start, "remove:r.7") == start
    assert builder.apply_action(start, "remove:r") == start


def test_errors_are_mapped_to_their_node():
    start = tree({"field": "age", "op": "gte", "value": 1}, tree({"field": "age"}))
    errors = [
        "conditions[1].conditions[0].value: expected a whole number, got null",
        "conditions[0].op: bad",
        "rules: something",
    ]

    by_node, general = builder.errors_by_node(start, errors)

    assert by_node == {
        "r.1.0": ["value: expected a whole number, got null"],
        "r.0": ["op: bad"],
    }
    assert general == ["rules: something"]


def test_catalogue_comes_from_the_registry_grouped():
    groups = dict(builder.field_catalogue())

    assert [f.key for f in groups["Segments"]] == ["segment"]
    assert "purchased" in [f.key for f in groups["Purchases"]]
    assert "tags" in [f.key for f in groups["Profile"]]


def test_paste_parses_only_groups():
    assert builder.parse_pasted('{"match": "all", "conditions": []}')[0] is not None
    assert builder.parse_pasted("[1]") == (None, builder.PASTE_NOT_GROUP_ERROR)
    assert builder.parse_pasted("{nope")[1].startswith(
        "The pasted text cannot be read: rules: not JSON"
    )
