"""The instants a computation or an evaluation may be made at (`as_of`), and the parsing of
the `--as-of` option the commands share (`compute_scores`, `segment_preview`)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from customers.models import Merchant

#: Far enough from the ends of the calendar for every offset a rule may take (100 years of
#: days, 151 years of age, a year of birthdays).
AS_OF_MIN = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
AS_OF_MAX = dt.datetime(9998, 12, 31, tzinfo=dt.UTC)
AS_OF_RANGE_ERROR = "as_of must lie between 1900-01-01 and 9998-12-31"


def parse_as_of(text: str, merchant: Merchant) -> dt.datetime:
    """An ISO 8601 instant within the range; without an offset, merchant-local time.
    Raises ValueError with a message for the user."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f'"{text}" is not an ISO 8601 date-time') from None
    if timezone.is_naive(value):
        value = value.replace(tzinfo=merchant.tzinfo)
    try:
        in_range = AS_OF_MIN <= value <= AS_OF_MAX
    except OverflowError:  # an offset that moves year 1 or 9999 off the calendar
        in_range = False
    if not in_range:
        raise ValueError(AS_OF_RANGE_ERROR)
    return value
