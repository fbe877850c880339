"""Parse and validate a rule tree (JSON) into typed, immutable objects.

Validation collects every error, each naming its path in the contract's style:
`conditions[2].conditions[0].op: "gtee" is not an operator of total_spend`. Field-level
value cleaning belongs to each criterion (`segments.criteria`); this module checks the shape
and the limits of the tree and asks the registry for the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

RULES_VERSION = 1
SUPPORTED_VERSIONS = frozenset({RULES_VERSION})
MAX_GROUP_NODES = 50
MAX_DEPTH = 5
MAX_CONDITIONS = 100

GROUP_KEYS = frozenset({"match", "negate", "conditions"})
CONDITION_KEYS = frozenset({"field", "op", "value"})
ROOT_PATH = "rules"


class RuleValidationError(ValueError):
    """The rules do not follow the contract; `errors` lists every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class Condition:
    """One cleaned condition: typed `value`, and the extra keys its field allows."""

    field: str
    op: str
    value: Any
    extras: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.extras).get(key, default)


@dataclass(frozen=True)
class Group:
    match: str  # "all" | "any"
    children: tuple[Node, ...]
    negate: bool = False


#: A node of the tree: a group or a condition.
Node: TypeAlias = Group | Condition


@dataclass(frozen=True)
class RuleTree:
    root: Group
    version: int = RULES_VERSION

    def conditions(self) -> Iterator[tuple[str, Condition]]:
        """Every condition with its path, depth first."""
        yield from _walk_conditions(self.root, "")


def _walk_conditions(group: Group, prefix: str) -> Iterator[tuple[str, Condition]]:
    for index, child in enumerate(group.children):
        path = f"{prefix}conditions[{index}]"
        if isinstance(child, Group):
            yield from _walk_conditions(child, f"{path}.")
        else:
            yield path, child


def child_path(prefix: str, index: int) -> str:
    return f"{prefix}conditions[{index}]" if not prefix else f"{prefix}.conditions[{index}]"


def key_path(path: str, key: str) -> str:
    return key if not path else f"{path}.{key}"


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


class _Parser:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.condition_count = 0

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or ROOT_PATH}: {message}")

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
            self.error(
                key_path(path, "conditions"),
                f"a group holds at most {MAX_GROUP_NODES} nodes, got {len(nodes)}",
            )
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
        # Imported here: the criteria import `Condition` from this module to type themselves.
        from segments.criteria import NOT_YET_AVAILABLE, REGISTRY
        from segments.criteria.base import CleanError

        self.condition_count += 1
        name = data["field"]
        criterion = REGISTRY.get(name) if isinstance(name, str) else None
        if criterion is None:
            if isinstance(name, str) and name in NOT_YET_AVAILABLE:
                self.error(key_path(path, "field"), f"{_quote(name)} is not available yet")
            else:
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
    root = parser.group(data, "", 1)
    if parser.condition_count > MAX_CONDITIONS:
        parser.error(
            ROOT_PATH,
            f"the rules hold {parser.condition_count} conditions, at most {MAX_CONDITIONS}",
        )
    if parser.errors or root is None:
        raise RuleValidationError(parser.errors)
    return RuleTree(root=root, version=int(version))


def raw_segment_slugs(data: object) -> set[str]:
    """Slugs named by `segment` conditions of an unvalidated tree (tolerates any shape)."""
    slugs: set[str] = set()
    if isinstance(data, dict):
        if data.get("field") == "segment" and isinstance(data.get("value"), list):
            slugs.update(v.strip() for v in data["value"] if isinstance(v, str))
        nodes = data.get("conditions")
        if isinstance(nodes, list):
            for node in nodes:
                slugs |= raw_segment_slugs(node)
    return slugs
