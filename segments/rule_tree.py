"""The rule tree's objects: typed, immutable, and a leaf of the app's modules (it imports
nothing of the app), so the criteria, the parser and the engine all import it and not each
other in a circle.

Also here: paths in the contract's style (`conditions[2].conditions[0].op`) and the safe
showing of values in error messages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

RULES_VERSION = 1
SUPPORTED_VERSIONS = frozenset({RULES_VERSION})
MAX_GROUP_NODES = 50
MAX_DEPTH = 5
MAX_CONDITIONS = 100

# Limits of the input beyond the contract's tree limits (`docs/segment-rules.md`, "Limits").
# They bound the work any request can cause: validation stops at the first limit it meets.
#: The rule JSON as UTF-8 text (the largest tree the builder makes is far smaller).
MAX_RULES_BYTES = 256 * 1024
#: Nesting of JSON arrays and objects; a tree 5 groups deep with products nests 13 deep.
MAX_JSON_DEPTH = 32
#: Digits of a JSON integer (a 64-bit integer has 19).
MAX_NUMBER_DIGITS = 30
#: Errors reported at once; validation stops after that many.
MAX_ERRORS = 50
#: Shown values in error messages are cut to this many characters.
SHOWN_LENGTH = 60

RULES_TOO_LARGE_ERROR = "the rule JSON is larger than {limit:,} bytes, the most accepted"
RULES_TOO_DEEP_ERROR = "the JSON nests more than {limit} levels deep (a tree is at most 5 groups)"
RULES_NOT_JSON_ERROR = "not JSON: {reason}"
RULES_NOT_UTF8_ERROR = "not UTF-8 text"
RULES_LONG_NUMBER_ERROR = "a number has more than {limit} digits"
RULES_NOT_FINITE_ERROR = "{constant} is not a JSON number"
TOO_MANY_ERRORS = "validation stopped after {limit} errors"

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


# -- safe text ---------------------------------------------------------------------------


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored or shown, or None: NUL (PostgreSQL's text and jsonb refuse
    it) and unpaired surrogates (not encodable as UTF-8, so no page could show them)."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return f"contains an unpaired surrogate (\\u{ord(char):04x})"
    return None


def _visible(char: str) -> str:
    if unicodedata.category(char) in ("Cc", "Cs", "Cf"):
        return f"\\u{ord(char):04x}"
    return char


def shown(value: Any) -> str:
    """A value for an error message: strings quoted, control characters and surrogates
    escaped, anything long cut to `SHOWN_LENGTH` characters (so a message is always short,
    printable and encodable)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int) and value.bit_length() > 200:
        return "a number of more than 60 digits"
    if isinstance(value, str):
        text = "".join(_visible(c) for c in value[:SHOWN_LENGTH])
        return f'"{text}…"' if len(value) > SHOWN_LENGTH else f'"{text}"'
    text = repr(value)
    return text if len(text) <= SHOWN_LENGTH else text[:SHOWN_LENGTH] + "…"


def count_raw_conditions(data: object) -> int:
    """Conditions (dicts with a "field") in an unvalidated tree, counted without recursion."""
    count = 0
    stack = [data]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "field" in node and "conditions" not in node and "match" not in node:
            count += 1
        nodes = node.get("conditions")
        if isinstance(nodes, list):
            stack.extend(nodes)
    return count
