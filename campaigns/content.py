"""A campaign's content: placeholders for the customer's fields, and SMS length.

Users write `{{ first_name }}` or, with a fallback for an empty value,
`{{ first_name|default:"friend" }}`. Nothing else is template code: this module substitutes
the known names with plain text and rejects anything else in `{{ }}` or `{% %}` when the
campaign is saved, so no code a user writes is ever executed. Messages are plain text (the
email is sent as text/plain), so values are inserted as they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Every placeholder, with what it stands for (the campaign form lists these).
PLACEHOLDERS: dict[str, str] = {
    "first_name": "The customer's first name",
    "last_name": "The customer's last name",
    "full_name": "First and last name",
    "email": "The customer's email address",
    "phone": "The customer's phone number",
    "external_id": "The customer's id in your systems",
    "points_balance": "Points the customer can spend",
    "lifetime_points": "Points earned over all time",
    "tier": "The customer's tier",
    "home_branch": "The customer's home branch",
    "merchant": "Your business's name",
}

_GETTERS: dict[str, Callable[[Any], object]] = {
    "first_name": lambda c: c.first_name,
    "last_name": lambda c: c.last_name,
    "full_name": lambda c: c.full_name,
    "email": lambda c: c.email,
    "phone": lambda c: c.phone,
    "external_id": lambda c: c.external_id,
    "points_balance": lambda c: f"{c.points_balance:,}",
    "lifetime_points": lambda c: f"{c.lifetime_points:,}",
    "tier": lambda c: c.tier.name if c.tier_id else "",
    "home_branch": lambda c: c.home_branch.name if c.home_branch_id else "",
    "merchant": lambda c: c.merchant.name,
}

#: `{{ name }}` or `{{ name|default:"text" }}`, spaces allowed inside the braces.
_PLACEHOLDER = re.compile(
    r'\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*default\s*:\s*"([^"{}]*)"\s*)?\}\}'
)
#: Anything that looks like template syntax: checked after the placeholders are taken out.
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\}\}|\{%|%\}")

UNKNOWN_PLACEHOLDER = "Unknown placeholder {{{{ {name} }}}} on line {line}: use one of {known}."
BAD_SYNTAX = (
    'Line {line}: "{text}" is not a placeholder. Write {{{{ first_name }}}} or '
    '{{{{ first_name|default:"friend" }}}}; other template code is not allowed.'
)


class ContentError(ValueError):
    """Content with an unknown placeholder or template code; the message says where."""


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def check(text: str) -> list[str]:
    """The errors of a content field: unknown placeholders and stray template syntax, each
    naming its line (empty: fine)."""
    errors: list[str] = []
    known = ", ".join(PLACEHOLDERS)
    for match in _PLACEHOLDER.finditer(text):
        if match.group(1) not in PLACEHOLDERS:
            errors.append(
                UNKNOWN_PLACEHOLDER.format(
                    name=match.group(1), line=_line(text, match.start()), known=known
                )
            )
    rest = _PLACEHOLDER.sub(lambda m: " " * len(m.group(0)), text)
    seen: set[int] = set()
    for match in _TEMPLATE_SYNTAX.finditer(rest):
        line = _line(text, match.start())
        if line not in seen:  # one error per line: "{% if %}" is one mistake, not two
            seen.add(line)
            snippet = text[match.start() : match.start() + 30].split("\n")[0]
            errors.append(BAD_SYNTAX.format(line=line, text=snippet))
    return errors


def render(text: str, customer: Any) -> str:
    """The text with each placeholder replaced by the customer's value (its fallback when the
    value is empty). Raises ContentError on content `check` refuses."""
    errors = check(text)
    if errors:
        raise ContentError(errors[0])

    def value(match: re.Match[str]) -> str:
        got = _GETTERS[match.group(1)](customer)
        shown = "" if got is None else str(got)
        return shown or (match.group(2) or "")

    return _PLACEHOLDER.sub(value, text)


# --- SMS length ----------------------------------------------------------------------------

# The GSM 03.38 default alphabet, and its extension table (each of those counts twice).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsLength:
    """How an SMS text is sent: its encoding, its length in that encoding's units, and the
    number of messages (segments) a phone joins back together."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int
    segments: int

    @property
    def text(self) -> str:
        parts = "1 message" if self.segments == 1 else f"{self.segments} messages"
        return f"{self.units} characters ({self.encoding}), {parts}"


def sms_length(text: str) -> SmsLength:
    """GSM-7 when every character is in the GSM alphabet (160 per single message, 153 per
    part of a longer one; extension characters count twice), else UCS-2 (70, 67 per part;
    characters outside the basic plane count twice)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        units = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        single, part, encoding = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
        single, part, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else math.ceil(units / part)
    return SmsLength(encoding=encoding, units=units, segments=segments)
