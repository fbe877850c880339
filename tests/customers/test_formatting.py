"""One way to write numbers for people: counts, money with the merchant's currency and
shares, in pages and in messages (exports keep plain numbers: tested with the exports)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template
from django.urls import reverse

from customers.portal.formatting import format_count, format_money, format_percent
from segments.models import Segment
from segments.views import _segments_text


@pytest.mark.parametrize(
    ("value", "text"),
    [(5002, "5,002"), (1234567, "1,234,567"), (7, "7"), (0, "0"), (None, "—"), ("", "—")],
)
def test_counts_have_thousands_separators(value, text):
    assert format_count(value) == text


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("3686.7"), "CAD", "3,686.70 CAD"),
        (Decimal("-1234.5"), "EUR", "-1,234.50 EUR"),
        (Decimal("0"), "CAD", "0.00 CAD"),
        (12, "", "12.00"),
        (None, "CAD", "—"),
    ],
)
def test_money_has_two_decimals_separators_and_the_currency(amount, currency, text):
    assert format_money(amount, currency) == text


@pytest.mark.parametrize(
    ("ratio", "text"), [(Decimal("0.162"), "16.2%"), (Decimal("1"), "100.0%"), (None, "—")]
)
def test_shares_are_percentages_with_one_decimal(ratio, text):
    assert format_percent(ratio) == text


def test_the_template_filters_write_the_same():
    template = Template(
        "{% load portal_format %}{{ n|count }} | {{ m|money:'CAD' }} | {{ p|percent }}"
    )

    text = template.render(Context({"n": 5002, "m": Decimal("3686.7"), "p": Decimal("0.5")}))

    assert text == "5,002 | 3,686.70 CAD | 50.0%"


def test_messages_count_the_same_way():
    assert _segments_text(1) == "1 segment"
    assert _segments_text(1234) == "1,234 segments"


@pytest.mark.django_db
def test_a_segment_page_writes_its_figures_the_one_way(staff_client, merchant):
    segment = Segment.objects.create(
        merchant=merchant,
        name="Big",
        slug="big",
        member_count=5002,
        avg_spending=Decimal("3686.70"),
        avg_transaction_value=Decimal("1234.5"),
    )

    body = staff_client.get(reverse("segments:detail", args=[segment.pk])).content.decode()

    assert 'id="member-count">5,002<' in body
    assert "3,686.70 CAD" in body and "1,234.50 CAD" in body
    assert "5002" not in body.replace('"5002"', "")  # no bare count anywhere on the page
