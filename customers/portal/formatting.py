"""One way to write numbers for people, on every page and in every message: counts with
thousands separators ("5,002"), money with two decimals and the merchant's currency
("3,686.70 CAD"), shares as percentages with one decimal ("16.2%"), and "—" for nothing.

Exports keep plain numbers (a spreadsheet formats them itself); these are for reading.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

#: What an empty value shows as.
EMPTY = "—"


def format_count(value: Any) -> str:
    """`5002` -> "5,002"; None -> "—"."""
    if value is None or value == "":
        return EMPTY
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def format_money(amount: Decimal | float | int | None, currency: str = "") -> str:
    """`1234.5, "CAD"` -> "1,234.50 CAD"; None -> "—"."""
    if amount is None or amount == "":
        return EMPTY
    text = f"{Decimal(str(amount)):,.2f}"
    return f"{text} {currency}" if currency else text


def format_percent(ratio: Decimal | float | None) -> str:
    """A share (0 to 1) as a percentage: `0.162` -> "16.2%"; None -> "—"."""
    if ratio is None or ratio == "":
        return EMPTY
    return f"{Decimal(str(ratio)) * 100:.1f}%"


def format_number(value: Any) -> str:
    """Any other number (an average of counts, say): thousands separators, up to two
    decimals as stored: `1234.5` -> "1,234.5"; None -> "—"."""
    if value is None or value == "":
        return EMPTY
    number = Decimal(str(value))
    if number == number.to_integral_value():
        return f"{int(number):,}"
    return f"{number.normalize():,f}"
