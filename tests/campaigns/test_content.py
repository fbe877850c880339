"""A campaign's content: placeholders rendered as plain text, refused when unknown or when
they are template code, and the length of an SMS."""

from __future__ import annotations

import pytest

from campaigns import content
from customers.models import Customer, Merchant, Tier


def person(**fields):
    merchant = Merchant(name="Green Leaf", slug="green-leaf")
    values = {"first_name": "Ana", "last_name": "Ruiz", "external_id": "C1", "points_balance": 120}
    values.update(fields)
    return Customer(merchant=merchant, **values)


def test_placeholders_are_replaced_with_the_customers_values():
    text = "Hi {{ first_name }} {{last_name}}, {{ points_balance }} points at {{ merchant }}."
    assert content.render(text, person()) == "Hi Ana Ruiz, 120 points at Green Leaf."


def test_an_empty_value_takes_the_fallback_and_a_missing_relation_is_empty():
    customer = person(first_name="")
    assert content.render('Hi {{ first_name|default:"friend" }}!', customer) == "Hi friend!"
    assert content.render("Tier: {{ tier }}.", customer) == "Tier: ."
    customer.tier = Tier(pk=1, name="Gold")
    assert content.render("Tier: {{ tier }}.", customer) == "Tier: Gold."


def test_values_are_inserted_as_text_never_evaluated():
    customer = person(first_name="{{ email }}{% load x %}")
    assert content.render("Hi {{ first_name }}", customer) == "Hi {{ email }}{% load x %}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi {{ frist_name }}", "Unknown placeholder {{ frist_name }} on line 1"),
        ("ok\n{% if vip %}x{% endif %}", 'Line 2: "{% if vip %}x{% endif %}" is not a placeholder'),
        ("Hi {{ first_name }", 'Line 1: "{{ first_name }" is not a placeholder'),
        ("{{ first_name|upper }}", "is not a placeholder"),
        ("{{ user.password }}", "is not a placeholder"),
    ],
)
def test_unknown_placeholders_and_template_code_are_errors_naming_the_line(text, expected):
    errors = content.check(text)
    assert len(errors) == 1
    assert expected in errors[0]
    with pytest.raises(content.ContentError):
        content.render(text, person())


def test_plain_braces_and_percent_signs_are_fine():
    assert content.check("50% off {this} weekend") == []


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters count twice
        ("é" * 10, "GSM-7", 10, 1),
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("🎉" + "a" * 68, "UCS-2", 70, 1),  # outside the basic plane: two units
        ("", "GSM-7", 0, 1),
    ],
)
def test_sms_length_and_parts(text, encoding, units, segments):
    length = content.sms_length(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)


def test_sms_length_in_words():
    assert content.sms_length("a" * 200).text == "200 characters (GSM-7), 2 messages"


def test_points_are_written_with_thousands_separators():
    assert content.render("{{ points_balance }}", person(points_balance=12338)) == "12,338"
