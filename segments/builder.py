"""The rule builder's editor: the rule JSON is its state, the form widgets are edits of it.

The builder page keeps the rule tree (contract JSON, `docs/segment-rules.md`) in a hidden
textarea. Every visible widget is named after the node it edits (`c:<node id>:<part>` for a
condition, `g:<node id>:<part>` for a group; node ids are index paths like `r.0.2`), so a
post of the form is read as: the JSON, then each rendered widget's value laid over its node
(`apply_widgets`), then at most one structural edit (`apply_action`: add/remove a condition
or group). The editor partial is rendered again from the resulting tree (`editor_nodes`).

The field and operator catalogue comes from the criterion registry, never a hard-coded list:
each criterion's `ops` and `extras` decide which value widgets a condition shows. The tree
this module builds may be invalid while it is being edited (a condition without a field, an
empty value): `validate_rules` says what is wrong, by path, and nothing invalid is saved.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.http import QueryDict

from segments.criteria import REGISTRY
from segments.criteria.base import FIELD_GROUPS, Criterion
from segments.rules import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_GROUP_NODES,
    MAX_NUMBER_DIGITS,
    RuleValidationError,
    load_rules_json,
)

ROOT_ID = "r"
#: Product lists of the `purchased` criterion, in the order the sub-form shows them.
PRODUCT_LISTS = (
    ("product_types", "Product types"),
    ("brands", "Brands"),
    ("categories", "Categories"),
    ("skus", "SKUs"),
)
#: The English of each operator in the operator select.
OP_LABELS = {
    "eq": "equals",
    "ne": "is not",
    "gt": "more than",
    "gte": "at least",
    "lt": "less than",
    "lte": "at most",
    "between": "between",
    "within_days": "within the last … days",
    "before_days": "more than … days ago",
    "never": "never",
    "exists": "at any time",
    "before": "before",
    "after": "on or after",
    "in": "is one of",
    "not_in": "is none of",
    "has_any": "has any of",
    "has_all": "has all of",
    "has_none": "has none of",
    "today": "is today",
    "this_week": "is this week",
    "this_month": "is this month",
    "next_days": "in the next … days",
    "is": "is",
}

PASTE_NOT_JSON_ERROR = "The pasted text cannot be read: {error}"
PASTE_NOT_GROUP_ERROR = 'The pasted JSON must be a group: {"match": ..., "conditions": [...]}.'


# -- the catalogue --------------------------------------------------------------------------


def widget_kind(criterion: Criterion | None, op: str) -> str:
    """Which value widget fits `op` of this criterion (the criterion decides: `widget()`,
    one of `WIDGET_KINDS`); "none" for no criterion or an operator it does not take."""
    if criterion is None or op not in criterion.ops:
        return "none"
    return criterion.widget(op)


@dataclass(frozen=True)
class FieldChoice:
    key: str
    label: str


def field_catalogue() -> list[tuple[str, list[FieldChoice]]]:
    """The registry's fields by their group, for the field select (`FIELD_GROUPS` order)."""
    grouped: dict[str, list[FieldChoice]] = {group: [] for group in FIELD_GROUPS}
    for key, criterion in REGISTRY.items():
        # The first letter only: "RFM group", "P(alive)" and "predicted CLV" keep the rest.
        label = criterion.label[:1].upper() + criterion.label[1:]
        grouped[criterion.group].append(FieldChoice(key, label))
    return [(group, fields) for group, fields in grouped.items() if fields]


def default_value(criterion: Criterion | None, op: str) -> Any:
    kind = widget_kind(criterion, op)
    if kind == "names":
        return []
    if kind == "bool":
        return True
    if kind.endswith("_pair"):
        return [None, None]
    return None


def new_condition(field_key: str = "") -> dict[str, Any]:
    """A fresh condition; without a field it waits for the user to pick one."""
    criterion = REGISTRY.get(field_key)
    if criterion is None:
        return {"field": "", "op": "", "value": None}
    op = "gte" if "gte" in criterion.ops else criterion.ops[0]
    condition: dict[str, Any] = {
        "field": field_key,
        "op": op,
        "value": default_value(criterion, op),
    }
    if "products" in criterion.extras:
        condition["products"] = {key: [] for key, _ in PRODUCT_LISTS}
    return condition


def new_group() -> dict[str, Any]:
    return {"match": "any", "negate": False, "conditions": [new_condition()]}


def empty_tree() -> dict[str, Any]:
    return {"match": "all", "negate": False, "conditions": [new_condition()]}


# -- reading the tree defensively (it may be half edited) -----------------------------------


def is_group(node: Any) -> bool:
    return isinstance(node, dict) and "conditions" in node


def children(node: Mapping[str, Any]) -> list[Any]:
    nodes = node.get("conditions")
    return nodes if isinstance(nodes, list) else []


def load_tree(text: str | None) -> tuple[dict[str, Any], list[str]]:
    """The tree held in the hidden textarea, and why it could not be read: one that breaks
    the input limits (`rules.load_rules_json`) or is no group starts over."""
    try:
        data = load_rules_json(text or "")
    except RuleValidationError as exc:
        return empty_tree(), exc.errors
    if not is_group(data):
        return empty_tree(), [PASTE_NOT_GROUP_ERROR]
    return data, []


def contract_path(node_id: str) -> str:
    """`r.0.2` -> `conditions[0].conditions[2]` (the paths validation errors name)."""
    parts = node_id.split(".")[1:]
    return ".".join(f"conditions[{p}]" for p in parts)


def _walk(node: dict[str, Any], node_id: str, depth: int):
    yield node_id, node, depth
    if is_group(node):
        for index, child in enumerate(children(node)):
            if isinstance(child, dict):
                yield from _walk(child, f"{node_id}.{index}", depth + 1)


def find(tree: dict[str, Any], node_id: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(parent group, node) of `node_id`; KeyError if there is no such node."""
    parts = node_id.split(".")
    if parts[0] != ROOT_ID:
        raise KeyError(node_id)
    parent: dict[str, Any] | None = None
    node = tree
    for part in parts[1:]:
        nodes = children(node)
        if not part.isdigit() or int(part) >= len(nodes) or not isinstance(nodes[int(part)], dict):
            raise KeyError(node_id)
        parent, node = node, nodes[int(part)]
    return parent, node


def count_conditions(node: Any) -> int:
    if not is_group(node):
        return 1
    return sum(count_conditions(child) for child in children(node))


# -- widgets -> tree ------------------------------------------------------------------------


def _number(raw: str, *, money: bool) -> Any:
    """A typed number for the JSON; what does not parse (or is too long or not finite to be
    a JSON number) stays text so validation names it."""
    raw = raw.strip()
    if raw == "":
        return None
    if len(raw) > MAX_NUMBER_DIGITS:
        return raw
    try:
        return int(raw)
    except ValueError:
        pass
    if money:
        return raw  # the contract takes money as a string: "499.99"
    try:
        number = float(raw)
    except ValueError:
        return raw
    if not math.isfinite(number):
        return raw
    return int(number) if number.is_integer() else number


def _days(raw: str | None) -> Any:
    return None if raw is None else _number(raw, money=False)


def _read_value(data: QueryDict, prefix: str, kind: str) -> Any:
    if kind == "names":
        return [v for v in data.getlist(f"{prefix}value") if v.strip()]
    if kind == "bool":
        return data.get(f"{prefix}value", "true") == "true"
    if kind in ("number", "days"):
        return _number(data.get(f"{prefix}value", ""), money=False)
    if kind == "money":
        return _number(data.get(f"{prefix}value", ""), money=True)
    if kind == "date":
        return data.get(f"{prefix}value", "").strip() or None
    if kind in ("number_pair", "money_pair"):
        money = kind == "money_pair"
        return [
            _number(data.get(f"{prefix}lo", ""), money=money),
            _number(data.get(f"{prefix}hi", ""), money=money),
        ]
    if kind == "date_pair":
        return [data.get(f"{prefix}lo", "").strip() or None, data.get(f"{prefix}hi", "").strip()]
    return None


def _apply_condition(node: dict[str, Any], data: QueryDict, prefix: str) -> None:
    submitted_field = data.get(f"{prefix}field", "")
    if submitted_field != node.get("field"):
        node.clear()
        node.update(new_condition(submitted_field))
        return
    criterion = REGISTRY.get(submitted_field)
    if criterion is None:
        return
    old_op = node.get("op", "")
    op = data.get(f"{prefix}op", old_op)
    if op not in criterion.ops:
        op = criterion.ops[0]
    if op != old_op:
        node["op"] = op
        if widget_kind(criterion, op) != widget_kind(criterion, old_op):
            node["value"] = default_value(criterion, op)
            return
    node["value"] = _read_value(data, prefix, widget_kind(criterion, op))
    for extra in ("window_days", "last_within_days"):
        if extra in criterion.extras:
            raw = data.get(f"{prefix}{extra}")
            value = _days(raw)
            if value is None:
                node.pop(extra, None)
            else:
                node[extra] = value
    if "products" in criterion.extras:
        node["products"] = {
            key: [v for v in data.getlist(f"{prefix}products.{key}") if v.strip()]
            for key, _ in PRODUCT_LISTS
        }


def apply_widgets(tree: dict[str, Any], data: QueryDict) -> dict[str, Any]:
    """A copy of `tree` with each rendered widget's value laid over its node.

    A node's widgets are read only when its field (or match) select was posted, so nodes
    the form did not render keep their JSON as it is.
    """
    tree = copy.deepcopy(tree)
    for node_id, node, _ in list(_walk(tree, ROOT_ID, 1)):
        if is_group(node):
            prefix = f"g:{node_id}:"
            if f"{prefix}match" in data:
                node["match"] = data[f"{prefix}match"]
                node["negate"] = data.get(f"{prefix}negate") == "1"
        elif f"c:{node_id}:field" in data:
            _apply_condition(node, data, f"c:{node_id}:")
    return tree


# -- structural edits -----------------------------------------------------------------------


def can_add_to(tree: dict[str, Any], group: dict[str, Any]) -> bool:
    return len(children(group)) < MAX_GROUP_NODES and count_conditions(tree) < MAX_CONDITIONS


def apply_action(tree: dict[str, Any], action: str) -> dict[str, Any]:
    """Apply one edit named `verb:<node id>`; an edit beyond the contract's limits (or of a
    node that is gone) leaves the tree as it is."""
    verb, _, node_id = action.partition(":")
    try:
        parent, node = find(tree, node_id)
    except KeyError:
        return tree
    depth = node_id.count(".") + 1
    if verb == "add_condition" and is_group(node) and can_add_to(tree, node):
        node.setdefault("conditions", []).append(new_condition())
    elif verb == "add_group" and is_group(node) and depth < MAX_DEPTH and can_add_to(tree, node):
        node.setdefault("conditions", []).append(new_group())
    elif verb == "remove" and parent is not None:
        parent["conditions"].remove(node)
        if not parent["conditions"] and node_id.count(".") > 1:
            # An emptied nested group goes too: a group needs at least one node.
            return apply_action(tree, f"remove:{node_id.rsplit('.', 1)[0]}")
    return tree


def parse_pasted(text: str) -> tuple[dict[str, Any] | None, str]:
    """(tree, "") or (None, error) for the "Paste JSON" box; validation runs afterwards.
    The text is read within the input limits (`rules.load_rules_json`)."""
    try:
        data = load_rules_json(text)
    except RuleValidationError as exc:
        return None, PASTE_NOT_JSON_ERROR.format(error="; ".join(exc.errors))
    if not is_group(data):
        return None, PASTE_NOT_GROUP_ERROR
    return data, ""


def clean_for_save(tree: dict[str, Any]) -> dict[str, Any]:
    """The tree as saved: empty product lists dropped (validation still needs one list)."""
    tree = copy.deepcopy(tree)
    for _, node, _ in _walk(tree, ROOT_ID, 1):
        products = node.get("products") if not is_group(node) else None
        if isinstance(products, dict):
            node["products"] = {k: v for k, v in products.items() if v} or products
    return tree


# -- errors by node -------------------------------------------------------------------------


def errors_by_node(
    tree: dict[str, Any], errors: list[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Map each validation error to the deepest node its path names; the rest are general.

    `conditions[1].conditions[0].value: expected ...` belongs to node `r.1.0`. Linear: each
    error looks its path's prefixes up (a handful: the tree is at most 5 groups deep).
    """
    paths = {contract_path(node_id): node_id for node_id, _, _ in _walk(tree, ROOT_ID, 1)}
    by_node: dict[str, list[str]] = {}
    general: list[str] = []
    for error in errors:
        path, sep, message = error.partition(": ")
        parts = path.split(".") if sep else []
        for cut in range(len(parts), 0, -1):
            candidate = ".".join(parts[:cut])
            if candidate.startswith("conditions[") and candidate in paths:
                rest = ".".join(parts[cut:])
                by_node.setdefault(paths[candidate], []).append(
                    f"{rest}: {message}" if rest else message
                )
                break
        else:
            general.append(error)
    return by_node, general


# -- feedback in the merchant's words --------------------------------------------------------

#: What an incomplete condition asks for, by its value widget: a prompt, not an error.
PROMPTS = {
    "names": "Pick one or more values.",
    "number": "Enter a number.",
    "money": "Enter an amount.",
    "days": "Enter a number of days.",
    "date": "Pick a date.",
    "number_pair": "Enter both numbers.",
    "money_pair": "Enter both amounts.",
    "date_pair": "Pick both dates.",
}
CHOOSE_FIELD = "Choose a field."
PICK_PRODUCTS = "Pick a product type, brand, category or SKU."
#: The widget a key of a condition's error belongs to, as the merchant reads it.
KEY_LABELS = {
    "window_days": "Only orders within the last … days",
    "last_within_days": "And the latest within … days",
    "products.product_types": "Product types",
    "products.brands": "Brands",
    "products.categories": "Categories",
    "products.skus": "SKUs",
    "products": "Products",
    "op": "Operator",
}
#: Contract messages rephrased for the editor (the JSON view keeps them as they are).
_REPHRASED = (
    (re.compile(r"^expected a whole number, got (.+)$"), r"Enter a whole number (\1 is not one)."),
    (re.compile(r"^expected a number, got (.+)$"), r"Enter a number (\1 is not one)."),
    (re.compile(r"^must be (at least|at most) (\S+), got .+$"), r"Must be \1 \2."),
    (re.compile(r"^must be between (\S+) and (\S+), got .+$"), r"Must be between \1 and \2."),
    (
        re.compile(r"^expected low <= high, got .+$"),
        "The first value must not be above the second.",
    ),
    (re.compile(r"^expected an ISO date \(YYYY-MM-DD\), got .+$"), "Pick a date."),
    (re.compile(r"^must lie between (\S+) and (\S+), got .+$"), r"Pick a date from \1 to \2."),
    (
        re.compile(r"^money has at most (\d+) decimal places, got .+$"),
        r"Use at most \1 decimal places.",
    ),
)


@dataclass
class Feedback:
    """What the editor says about one node: a neutral prompt for what is missing, and the
    problems with what is there, in the merchant's words."""

    prompt: str = ""
    errors: list[str] = dataclasses.field(default_factory=list)


def _missing(value: Any, kind: str) -> bool:
    if kind == "names":
        return not value
    if kind.endswith("_pair"):
        return not isinstance(value, list) or len(value) != 2 or any(v in (None, "") for v in value)
    if kind in ("number", "money", "days", "date"):
        return value is None or value == ""
    return False


def friendly(rest: str, message: str) -> str:
    """A contract error (`rest` the key under the node, e.g. "value" or "products.brands[1]")
    as the editor shows it next to the widget."""
    text = message
    for pattern, replacement in _REPHRASED:
        if pattern.match(message):
            text = pattern.sub(replacement, message)
            break
    else:
        text = message[:1].upper() + message[1:]
        text = text if text.endswith(".") else f"{text}."
    key = re.sub(r"\[\d+\]$", "", rest)
    label = KEY_LABELS.get(key, "")
    return f"{label}: {text}" if label else text


def node_feedback(tree: dict[str, Any], errors: list[str]) -> tuple[dict[str, Feedback], list[str]]:
    """Per node (by id), a prompt for what an incomplete condition lacks and its other
    problems in the merchant's words; and the errors that belong to no node. A missing value
    is a prompt, never also an error."""
    by_node, general = errors_by_node(tree, errors)
    feedback: dict[str, Feedback] = {}
    for node_id, node, _ in _walk(tree, ROOT_ID, 1):
        raw = by_node.get(node_id, [])
        item = Feedback()
        if not is_group(node):
            criterion = REGISTRY.get(str(node.get("field") or ""))
            if criterion is None:
                item.prompt = CHOOSE_FIELD
                raw = []
            else:
                kind = widget_kind(criterion, str(node.get("op") or ""))
                if _missing(node.get("value"), kind):
                    item.prompt = PROMPTS.get(kind, "")
                    raw = [e for e in raw if not e.startswith("value")]
                products = node.get("products")
                if (
                    "products" in criterion.extras
                    and isinstance(products, dict)
                    and not any(products.values())
                ):
                    item.prompt = item.prompt or PICK_PRODUCTS
                    raw = [e for e in raw if not e.startswith("products")]
        for error in raw:
            rest, sep, message = error.partition(": ")
            item.errors.append(friendly(rest, message) if sep else friendly("", error))
        if item.prompt or item.errors:
            feedback[node_id] = item
    return feedback, general


def feedback_nodes(tree: dict[str, Any], errors: list[str]) -> list[EditorNode]:
    """Every node of `tree` with only its feedback (prompt, problems), for out-of-band
    updates of the editor's feedback areas; nodes without any get empty ones (cleared)."""
    feedback, _ = node_feedback(tree, errors)
    return [
        _editor_node(node, node_id, depth, feedback)
        for node_id, node, depth in _walk(tree, ROOT_ID, 1)
    ]


def condition_number(node_id: str) -> str:
    """`r.1.0` -> "2.1": where a node is, as the merchant counts."""
    return ".".join(str(int(part) + 1) for part in node_id.split(".")[1:])


def problems(tree: dict[str, Any], errors: list[str]) -> tuple[list[str], bool]:
    """One line per node that needs attention ("Condition 2: Enter an amount."), and whether
    the rules are merely incomplete (every line is a prompt: nothing is wrong yet)."""
    feedback, general = node_feedback(tree, errors)
    lines: list[str] = []
    incomplete = not general
    for node_id, item in feedback.items():
        where = f"Condition {condition_number(node_id)}" if node_id != ROOT_ID else "The rules"
        if item.prompt:
            lines.append(f"{where}: {item.prompt}")
        for error in item.errors:
            lines.append(f"{where}: {error}")
            incomplete = False
    lines += general
    return lines, incomplete and bool(lines)


# -- tree -> view model ---------------------------------------------------------------------


@dataclass
class EditorNode:
    """One node as the editor partial renders it."""

    id: str
    path: str
    depth: int
    is_group: bool
    errors: list[str] = dataclasses.field(default_factory=list)
    prompt: str = ""
    #: What the number counts ("units", the merchant's currency, "days").
    unit: str = ""
    #: The number inputs' step ("1", "0.01" for money and probabilities) and greatest
    #: value ("" for none).
    step: str = "1"
    maximum: str = ""
    # groups
    match: str = "all"
    negate: bool = False
    children: list[EditorNode] = dataclasses.field(default_factory=list)
    can_add: bool = False
    can_add_group: bool = False
    # conditions
    field: str = ""
    op: str = ""
    ops: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    kind: str = "none"
    value: Any = None
    lo: Any = None
    hi: Any = None
    options: list[str] = dataclasses.field(default_factory=list)
    #: What the names mean ("At risk: latest order more than 90 days ago"), for the field.
    help: list[str] = dataclasses.field(default_factory=list)
    extras: list[str] = dataclasses.field(default_factory=list)
    window_days: Any = None
    last_within_days: Any = None
    products: list[tuple[str, str, list[str], list[str]]] = dataclasses.field(default_factory=list)

    @property
    def dom_id(self) -> str:
        return "node-" + self.id.replace(".", "-")


def _with_selected(options: list[str], selected: list[str]) -> list[str]:
    """Keep chosen names that are not (or no longer) among the merchant's options."""
    return options + [name for name in selected if name not in options]


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _shown(value: Any) -> str:
    return "" if value is None or isinstance(value, (list, dict)) else str(value)


def _editor_node(
    node: dict[str, Any], node_id: str, depth: int, feedback: Mapping[str, Feedback]
) -> EditorNode:
    """A node's place in the tree and its feedback: what every editor node has."""
    said = feedback.get(node_id, Feedback())
    return EditorNode(
        id=node_id,
        path=contract_path(node_id),
        depth=depth,
        is_group=is_group(node),
        errors=list(said.errors),
        prompt=said.prompt,
    )


def editor_nodes(
    tree: dict[str, Any],
    *,
    options: Mapping[str, Mapping[str, list[str]]],
    feedback: Mapping[str, Feedback] | None = None,
    currency: str = "",
) -> EditorNode:
    """The view model of `tree`; `options` maps a field key to what its criterion's
    `options()` gave: the merchant's own names for its multi-selects ("value",
    "products.<list>")."""
    feedback = feedback or {}

    def build(node: dict[str, Any], node_id: str, depth: int) -> EditorNode:
        item = _editor_node(node, node_id, depth, feedback)
        if item.is_group:
            item.match = "any" if node.get("match") == "any" else "all"
            item.negate = node.get("negate") is True
            item.children = [
                build(child, f"{node_id}.{i}", depth + 1)
                for i, child in enumerate(children(node))
                if isinstance(child, dict)
            ]
            item.can_add = can_add_to(tree, node)
            item.can_add_group = item.can_add and depth < MAX_DEPTH
            return item
        item.field = str(node.get("field") or "")
        criterion = REGISTRY.get(item.field)
        if criterion is None:
            return item
        item.op = str(node.get("op") or "")
        item.ops = [(op, OP_LABELS.get(op, op)) for op in criterion.ops]
        item.kind = widget_kind(criterion, item.op)
        if item.kind.startswith("money"):
            item.unit = currency
            item.step = "0.01"
        elif item.kind == "days":
            item.unit = "days"
        elif item.kind.startswith("number"):
            item.unit = criterion.unit
            item.step = criterion.step
            item.maximum = _shown(getattr(criterion, "maximum", None))
        value = node.get("value")
        if item.kind.endswith("_pair"):
            pair = value if isinstance(value, list) and len(value) == 2 else [None, None]
            item.lo, item.hi = _shown(pair[0]), _shown(pair[1])
        elif item.kind == "names":
            item.value = _as_list(value)
            item.options = _with_selected(
                list(options.get(item.field, {}).get("value", [])), item.value
            )
            item.help = list(options.get(item.field, {}).get("help", []))
        elif item.kind == "bool":
            item.value = value is not False
        else:
            item.value = _shown(value)
        item.extras = sorted(criterion.extras)
        item.window_days = _shown(node.get("window_days"))
        item.last_within_days = _shown(node.get("last_within_days"))
        if "products" in criterion.extras:
            raw_products = node.get("products")
            products = raw_products if isinstance(raw_products, dict) else {}
            for key, label in PRODUCT_LISTS:
                chosen = _as_list(products.get(key))
                item.products.append(
                    (
                        key,
                        label,
                        _with_selected(
                            list(options.get(item.field, {}).get(f"products.{key}", [])), chosen
                        ),
                        chosen,
                    )
                )
        return item

    return build(tree, ROOT_ID, 1)


def pretty(tree: dict[str, Any]) -> str:
    return json.dumps(tree, indent=2, ensure_ascii=False)
