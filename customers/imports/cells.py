"""Reading one cell: each column's converter turns the text into a typed value or raises
`CellError` with the reason the user sees ("file line N, column C: <reason>")."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from customers.models import (
    Merchant,
    Tag,
    Tier,
)

# Error messages (the part after "file line N, column C: ").
MSG_REQUIRED = "is required"
MSG_TOO_LONG = "{value} is longer than {max_length} characters"
MSG_BAD_TIMESTAMP = "{value} is not an ISO 8601 timestamp (e.g. 2024-05-31T14:30:00)"
MSG_TIMESTAMP_RANGE = (
    "{value} is out of range (timestamps lie between 0001-01-02 and 9999-12-30 UTC)"
)
MSG_NUL = "contains a NUL character (\\u0000), which cannot be stored"
MSG_BAD_DATE = "{value} is not an ISO date (e.g. 1990-05-31)"
MSG_BAD_BOOLEAN = "{value} is not a boolean (true/false, 1/0, yes/no)"
MSG_BAD_MONEY = "{value} is not an amount (e.g. 12.50)"
MSG_NEGATIVE_MONEY = "{value} is negative"
MSG_MONEY_DECIMALS = "{value} has more than two decimals"
MSG_MONEY_TOO_LARGE = "{value} is too large"
MSG_BAD_INTEGER = "{value} is not a whole number of {minimum} or more"
MSG_INTEGER_TOO_LARGE = "{value} is too large"
MSG_BAD_GENDER = "{value} is not a gender (female, male, other, or empty)"
MSG_BAD_KIND = "{value} is not a transaction kind (purchase or refund)"
MSG_BAD_EMAIL = "{value} is not a valid email address"
MSG_BAD_PHONE = "{value} is not a valid phone number (7 to 15 digits)"
MSG_TAG_TOO_LONG = "tag {value} is longer than {max_length} characters"
MSG_DUPLICATE_KEY = "{value} appears more than once (first on line {first_line})"
MSG_MISSING_REFERENCE = "{what} {value} does not exist (neither in this import nor stored)"
MSG_UNKNOWN_COLUMN = "unknown column (the {file} file has: {expected})"
MSG_MISSING_COLUMN = "required column is missing"
MSG_REPEATED_COLUMN = "column appears more than once in the header"
MSG_EMPTY_FILE = "the file is empty (a header row is required)"
MSG_FIELD_COUNT = "the row has {found} fields, the header has {expected}"
MSG_NOT_UTF8 = "the file is not UTF-8 text ({reason})"
MSG_BAD_CSV = "the row is not valid CSV ({reason})"
MSG_UNKNOWN_FILE = "unknown import file {name!r} (expected one of: {expected})"

_MONEY_RE = re.compile(r"(-)?(\d+)(?:\.(\d*))?")
_PLAIN_MONEY_RE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{0,2})?")
_PHONE_RE = re.compile(r"\+?[\d\s\-.()]+")
_INT_MAX = 2_147_483_647  # PositiveIntegerField is a 4-byte integer on PostgreSQL.
_MONEY_INTEGER_DIGITS = 12  # DecimalField(max_digits=14, decimal_places=2)
_CENT = Decimal("0.01")
#: Timestamps every time zone can show (years 1 to 9999 with a day to spare at each end).
_FIRST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
_LAST_INSTANT = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
logger = logging.getLogger(__name__)

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_GENDERS = frozenset({"female", "male", "other"})
_KINDS = frozenset({"purchase", "refund"})


class CellError(Exception):
    """A cell's value is invalid; the message is the user-facing reason."""


def quoted(raw: str) -> str:
    """The value quoted for an error message (long values shortened, control characters
    escaped)."""
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    shown = "".join(f"\\u{ord(c):04x}" if ord(c) < 32 else c for c in shown)
    return '"' + shown.replace('"', '\\"') + '"'


Converter = Callable[[str], Any]


def text_cell(max_length: int) -> Converter:
    def convert(raw: str) -> str:
        if len(raw) > max_length:
            raise CellError(MSG_TOO_LONG.format(value=quoted(raw), max_length=max_length))
        return raw

    return convert


def timestamp_cell(tz: ZoneInfo) -> Converter:
    def convert(raw: str) -> datetime:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise CellError(MSG_BAD_TIMESTAMP.format(value=quoted(raw))) from None
        if value.tzinfo is None:
            # The contract: a timestamp without an offset is merchant-local time.
            value = value.replace(tzinfo=tz)
        try:
            utc = value.astimezone(UTC)
        except OverflowError:  # its UTC instant falls outside years 1 to 9999
            raise CellError(MSG_TIMESTAMP_RANGE.format(value=quoted(raw))) from None
        # A day to spare at each end: every page shows it in some time zone.
        if not _FIRST_INSTANT <= utc <= _LAST_INSTANT:
            raise CellError(MSG_TIMESTAMP_RANGE.format(value=quoted(raw)))
        return value

    return convert


def date_cell(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise CellError(MSG_BAD_DATE.format(value=quoted(raw))) from None


def boolean_cell(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.lower()]
    except KeyError:
        raise CellError(MSG_BAD_BOOLEAN.format(value=quoted(raw))) from None


def money_cell(raw: str) -> str:
    """A valid amount, as the text of a Decimal with two places (staged as numeric)."""
    if _PLAIN_MONEY_RE.fullmatch(raw):
        return raw  # the common case, on millions of rows: no Decimal round trip
    # A strict pattern instead of Decimal() alone, which would also take "1e3", "1_000", "NaN".
    match = _MONEY_RE.fullmatch(raw)
    if match is None:
        raise CellError(MSG_BAD_MONEY.format(value=quoted(raw)))
    sign, whole, fraction = match.groups()
    if sign and (whole.strip("0") or (fraction or "").strip("0")):
        raise CellError(MSG_NEGATIVE_MONEY.format(value=quoted(raw)))
    if fraction and len(fraction.rstrip("0")) > 2:
        raise CellError(MSG_MONEY_DECIMALS.format(value=quoted(raw)))
    if len(whole.lstrip("0")) > _MONEY_INTEGER_DIGITS:
        raise CellError(MSG_MONEY_TOO_LARGE.format(value=quoted(raw)))
    return str(Decimal(f"{whole}.{(fraction or '')[:2]}").quantize(_CENT))


def integer_cell(minimum: int) -> Converter:
    def convert(raw: str) -> int:
        if not raw.isdigit() or not raw.isascii() or (value := int(raw)) < minimum:
            raise CellError(MSG_BAD_INTEGER.format(value=quoted(raw), minimum=minimum))
        if value > _INT_MAX:
            raise CellError(MSG_INTEGER_TOO_LARGE.format(value=quoted(raw)))
        return value

    return convert


def gender_cell(raw: str) -> str:
    value = raw.lower()
    if value not in _GENDERS:
        raise CellError(MSG_BAD_GENDER.format(value=quoted(raw)))
    return value


def kind_cell(raw: str) -> str:
    value = raw.lower()
    if value not in _KINDS:
        raise CellError(MSG_BAD_KIND.format(value=quoted(raw)))
    return value


#: Customer.email's column (EmailField's 254): validate_email allows up to 320 characters,
#: which PostgreSQL's varchar(254) refuses when the rows are merged.
_EMAIL_MAX_LENGTH = 254


def email_cell(raw: str) -> str:
    if len(raw) > _EMAIL_MAX_LENGTH:
        raise CellError(MSG_TOO_LONG.format(value=quoted(raw), max_length=_EMAIL_MAX_LENGTH))
    try:
        validate_email(raw)
    except ValidationError:
        raise CellError(MSG_BAD_EMAIL.format(value=quoted(raw))) from None
    return raw


def phone_cell(raw: str) -> str:
    digits = sum(ch.isdigit() for ch in raw)
    if len(raw) > 32 or _PHONE_RE.fullmatch(raw) is None or not 7 <= digits <= 15:
        raise CellError(MSG_BAD_PHONE.format(value=quoted(raw)))
    return raw


class Names:
    """Tags or tiers of the merchant, by lower-cased name, created on first use.

    The vocabulary of names is small (not one entry per row), so it lives in Python; matching
    with `str.lower()` is Unicode-aware, unlike SQLite's `lower()`.
    """

    def __init__(self, model: type[Tag] | type[Tier], merchant: Merchant) -> None:
        self.model = model
        self.merchant = merchant
        self.ids: dict[str, int] = {
            name.lower(): pk
            for pk, name in model._default_manager.filter(merchant=merchant).values_list(
                "pk", "name"
            )
        }
        self.created = 0

    def resolve(self, name: str) -> int:
        key = name.lower()
        pk = self.ids.get(key)
        if pk is None:
            pk = self.model._default_manager.create(merchant=self.merchant, name=name).pk
            self.ids[key] = pk
            self.created += 1
        return pk
