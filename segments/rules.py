"""Parse and validate a rule tree (JSON) into typed, immutable objects (`segments.rule_tree`).

Validation collects every error, each naming its path in the contract's style:
`conditions[2].conditions[0].op: "gtee" is not an operator of total_spend`. Field-level
value cleaning belongs to each criterion (`segments.criteria`); this module checks the shape
and the limits of the tree and asks the registry for the rest. `load_rules_json` reads rule
text from untrusted input within the input limits.
"""

from __future__ import annotations

import json
import re
from typing import Any

from segments.criteria import REGISTRY
from segments.criteria.base import CleanError
from segments.rule_tree import (
    CONDITION_KEYS,
    GROUP_KEYS,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_ERRORS,
    MAX_GROUP_NODES,
    MAX_JSON_DEPTH,
    MAX_NUMBER_DIGITS,
    MAX_RULES_BYTES,
    ROOT_PATH,
    RULES_LONG_NUMBER_ERROR,
    RULES_NOT_FINITE_ERROR,
    RULES_NOT_JSON_ERROR,
    RULES_NOT_UTF8_ERROR,
    RULES_TOO_DEEP_ERROR,
    RULES_TOO_LARGE_ERROR,
    RULES_VERSION,
    SHOWN_LENGTH,
    SUPPORTED_VERSIONS,
    TOO_MANY_ERRORS,
    Condition,
    Group,
    Node,
    RuleTree,
    RuleValidationError,
    child_path,
    count_raw_conditions,
    key_path,
    shown,
    text_problem,
)

__all__ = [
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_ERRORS",
    "MAX_GROUP_NODES",
    "MAX_JSON_DEPTH",
    "MAX_NUMBER_DIGITS",
    "MAX_RULES_BYTES",
    "ROOT_PATH",
    "RULES_TOO_LARGE_ERROR",
    "SHOWN_LENGTH",
    "Condition",
    "Group",
    "Node",
    "RuleTree",
    "RuleValidationError",
    "child_path",
    "count_raw_conditions",
    "json_depth",
    "key_path",
    "load_rules_json",
    "parse_rules",
    "shown",
    "text_problem",
]

_quote = shown


# -- loading JSON text ----------------------------------------------------------------------


class _InputError(ValueError):
    pass


# Possessive: a string is skipped in one pass, never backtracked into.
_STRING_RE = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKET_RE = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (strings skipped), without parsing it:
    `json.loads` recurses once per level and fails with RecursionError far below what
    a request body can hold."""
    depth = deepest = 0
    for match in _BRACKET_RE.finditer(_STRING_RE.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _InputError(RULES_LONG_NUMBER_ERROR.format(limit=MAX_NUMBER_DIGITS))
    return int(digits)


def _parse_constant(name: str) -> Any:
    raise _InputError(RULES_NOT_FINITE_ERROR.format(constant=name))


def _text_errors(data: Any, path: str, errors: list[str]) -> None:
    """Append an error for every string (key or value) that cannot be stored or shown, in
    document order."""
    stack: list[tuple[Any, str, str | None]] = [(data, path, None)]
    while stack and len(errors) < MAX_ERRORS:
        node, where, key = stack.pop()
        if key is not None and (problem := text_problem(key)):
            errors.append(f"{where or ROOT_PATH}: a key {problem}")
            continue
        if key is not None:
            where = key_path(where, key)
        if isinstance(node, str):
            problem = text_problem(node)
            if problem:
                errors.append(f"{where or ROOT_PATH}: {problem}")
        elif isinstance(node, list):
            stack.extend(
                (item, f"{where}[{i}]", None) for i, item in reversed(list(enumerate(node)))
            )
        elif isinstance(node, dict):
            stack.extend((item, where, k) for k, item in reversed(list(node.items())))


def load_rules_json(text: str | bytes, *, max_bytes: int = MAX_RULES_BYTES) -> Any:
    """Parse rule JSON from untrusted text, within the input limits.

    Size and nesting are checked before parsing, numbers of more than `MAX_NUMBER_DIGITS`
    digits and NaN/Infinity are refused while parsing, and strings that cannot be stored or
    shown (NUL, unpaired surrogates) after it. Raises `RuleValidationError` ("rules: ...").
    The result still has to be validated (`parse_rules`).
    """
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise RuleValidationError(
                [f"{ROOT_PATH}: {RULES_TOO_LARGE_ERROR.format(limit=max_bytes)}"]
            )
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RuleValidationError([f"{ROOT_PATH}: {RULES_NOT_UTF8_ERROR}"]) from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise RuleValidationError([f"{ROOT_PATH}: {RULES_TOO_LARGE_ERROR.format(limit=max_bytes)}"])
    if json_depth(text) > MAX_JSON_DEPTH:
        raise RuleValidationError(
            [f"{ROOT_PATH}: {RULES_TOO_DEEP_ERROR.format(limit=MAX_JSON_DEPTH)}"]
        )
    try:
        data = json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)
    except _InputError as exc:
        raise RuleValidationError([f"{ROOT_PATH}: {exc}"]) from None
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise RuleValidationError(
            [f"{ROOT_PATH}: {RULES_NOT_JSON_ERROR.format(reason=reason)}"]
        ) from None
    except (ValueError, RecursionError) as exc:  # belt and braces: the checks above hold
        raise RuleValidationError(
            [f"{ROOT_PATH}: {RULES_NOT_JSON_ERROR.format(reason=shown(str(exc)))}"]
        ) from None
    errors: list[str] = []
    _text_errors(data, "", errors)
    if errors:
        raise RuleValidationError(errors)
    return data


class _TooManyErrors(Exception):
    pass


class _Parser:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.condition_count = 0

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or ROOT_PATH}: {message}")
        if len(self.errors) >= MAX_ERRORS:
            raise _TooManyErrors

    def group(self, data: Any, path: str, depth: int) -> Group | None:
        if not isinstance(data, dict):
            self.error(path, 'expected a group {"match": ..., "conditions": [...]}')
            return None
        if depth > MAX_DEPTH:
            self.error(path, f"groups nest at most {MAX_DEPTH} deep")
            return None
        for key in sorted(set(data) - GROUP_KEYS - ({"version"} if depth == 1 else set())):
            self.error(key_path(path, key), f"{_quote(key)} is not a key of a group")
        match = data.get("match")
        if match not in ("all", "any"):
            self.error(key_path(path, "match"), f'expected "all" or "any", got {_quote(match)}')
        negate = data.get("negate", False)
        if not isinstance(negate, bool):
            self.error(key_path(path, "negate"), f"expected true or false, got {_quote(negate)}")
        nodes = data.get("conditions")
        if not isinstance(nodes, list):
            self.error(key_path(path, "conditions"), "expected a list of conditions or groups")
            return None
        if not nodes:
            self.error(key_path(path, "conditions"), "a group needs at least 1 condition")
        if len(nodes) > MAX_GROUP_NODES:
            # Not looked into: the work validation does stays bounded whatever the input.
            self.error(
                key_path(path, "conditions"),
                f"a group holds at most {MAX_GROUP_NODES} nodes, got {len(nodes):,}",
            )
            return None
        children: list[Node] = []
        for index, node in enumerate(nodes):
            child = self.node(node, child_path(path, index), depth)
            if child is not None:
                children.append(child)
        if self.errors:
            return None
        return Group(match=str(match), children=tuple(children), negate=negate)

    def node(self, data: Any, path: str, depth: int) -> Node | None:
        if isinstance(data, dict) and ("match" in data or "conditions" in data):
            return self.group(data, path, depth + 1)
        if isinstance(data, dict) and "field" in data:
            return self.condition(data, path)
        self.error(path, "expected a group (match, conditions) or a condition (field, op, value)")
        return None

    def condition(self, data: dict[str, Any], path: str) -> Condition | None:
        self.condition_count += 1
        name = data["field"]
        criterion = REGISTRY.get(name) if isinstance(name, str) else None
        if criterion is None:
            self.error(key_path(path, "field"), f"{_quote(name)} is not a known field")
            return None
        ok = True
        for key in sorted(set(data) - CONDITION_KEYS - criterion.extras):
            self.error(key_path(path, key), f"{_quote(key)} is not a key of {name}")
            ok = False
        op = data.get("op")
        if op not in criterion.ops:
            if "op" not in data:
                self.error(
                    key_path(path, "op"), f"missing; {name} takes {', '.join(criterion.ops)}"
                )
            else:
                self.error(key_path(path, "op"), f"{_quote(op)} is not an operator of {name}")
            return None
        value: Any = None
        try:
            value = criterion.clean_value(op, data.get("value"))
        except CleanError as exc:
            self.error(key_path(path, exc.key), exc.message)
            ok = False
        extras: dict[str, Any] = {}
        try:
            extras = criterion.clean_extras(
                op, {k: v for k, v in data.items() if k in criterion.extras}
            )
        except CleanError as exc:
            self.error(key_path(path, exc.key), exc.message)
            ok = False
        if not ok:
            return None
        return Condition(field=name, op=op, value=value, extras=tuple(sorted(extras.items())))


def parse_rules(data: object) -> RuleTree:
    """Parse the JSON rule tree; raise `RuleValidationError` listing every problem.

    Merchant-level checks (referenced segments exist, no cycles) are `engine.validate_rules`'s.
    """
    conditions = count_raw_conditions(data)
    if conditions > MAX_CONDITIONS:
        # Checked before anything else, so a huge tree costs one pass, not one error each.
        raise RuleValidationError(
            [f"{ROOT_PATH}: the rules hold {conditions:,} conditions, at most {MAX_CONDITIONS}"]
        )
    parser = _Parser()
    version: Any = RULES_VERSION
    if isinstance(data, dict) and "version" in data:
        version = data["version"]
        if (
            not isinstance(version, int)
            or isinstance(version, bool)
            or (version not in SUPPORTED_VERSIONS)
        ):
            parser.error(
                "version",
                f"unknown rules version {_quote(version)} (supported: "
                f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))})",
            )
    try:
        root = parser.group(data, "", 1)
    except _TooManyErrors:
        root = None
        parser.errors.append(f"{ROOT_PATH}: {TOO_MANY_ERRORS.format(limit=MAX_ERRORS)}")
    if parser.errors or root is None:
        raise RuleValidationError(parser.errors)
    return RuleTree(root=root, version=int(version))
