"""The builder pages over HTTP: editor edits, live count and funnel, save, paste JSON."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from segments.models import Segment, SegmentVersion
from tests.factories import (
    CustomerFactory,
    LineItemFactory,
    ProductFactory,
    TagFactory,
    TransactionFactory,
)
from tests.segments.conftest import builder_form

pytestmark = pytest.mark.django_db

PHAT_PANDA = {
    "field": "purchased",
    "products": {"product_types": ["preroll"], "brands": ["Phat Panda"]},
    "op": "gt",
    "value": 15,
    "last_within_days": 14,
}


def bought(customer, product, units: int, days_ago: int) -> None:
    txn = TransactionFactory(
        customer=customer,
        occurred_at=timezone.now() - dt.timedelta(days=days_ago),
        total=Decimal("10.00") * units,
    )
    LineItemFactory(transaction=txn, product=product, quantity=units)


@pytest.fixture
def prerolls(merchant):
    """Two recent Phat Panda preroll lovers (20 and 16 units), and three who are not."""
    panda = ProductFactory(merchant=merchant, product_type="preroll", brand="Phat Panda")
    other = ProductFactory(merchant=merchant, product_type="preroll", brand="Other Co")
    edible = ProductFactory(merchant=merchant, product_type="edible", brand="Phat Panda")
    lovers = [CustomerFactory(merchant=merchant, external_id=f"LOVER-{i}") for i in (1, 2)]
    bought(lovers[0], panda, 10, 20)
    bought(lovers[0], panda, 10, 3)
    bought(lovers[1], panda, 16, 5)
    bought(CustomerFactory(merchant=merchant, external_id="FEW"), panda, 5, 2)
    bought(CustomerFactory(merchant=merchant, external_id="LONG-AGO"), panda, 20, 60)
    bought(CustomerFactory(merchant=merchant, external_id="OTHER-BRAND"), other, 20, 2)
    bought(CustomerFactory(merchant=merchant, external_id="EDIBLES"), edible, 20, 2)
    return lovers


def rules(*conditions, match="all"):
    return {"match": match, "conditions": list(conditions)}


def test_new_builder_page_shows_the_catalogue_and_the_merchants_names(
    staff_client, merchant, prerolls
):
    response = staff_client.get(reverse("segments:create"))

    assert response.status_code == 200
    body = response.content.decode()
    assert '<optgroup label="Purchases">' in body
    assert 'value="purchased"' in body
    assert "Choose a field" in body
    # picking `purchased` shows the merchant's own product types and brands
    edited = staff_client.post(
        reverse("segments:builder_editor"),
        {"rules_json": response.context["rules_json"], "c:r.0:field": "purchased"},
    )
    html = edited.content.decode()
    # the live count follows once the new editor is in the page
    assert edited["HX-Trigger-After-Settle"] == "rules-changed"
    assert 'name="c:r.0:products.brands"' in html
    assert '<option value="Phat Panda">' in html and '<option value="Other Co">' in html
    assert '<option value="edible">' in html


def test_template_prefills_name_and_rules(staff_client, merchant):
    response = staff_client.get(reverse("segments:create"), {"template": "bronze-spend-500"})

    assert response.context["form"].initial["name"] == "Bronze: spend 500+"
    assert json.loads(response.context["rules_json"])["conditions"] == [
        {"field": "total_spend", "op": "gte", "value": 500}
    ]


def test_editor_applies_an_add_condition_edit(staff_client, merchant):
    start = rules({"field": "age", "op": "gte", "value": 21})

    response = staff_client.post(
        reverse("segments:builder_editor"),
        {
            "rules_json": json.dumps(start),
            "c:r.0:field": "age",
            "c:r.0:op": "gte",
            "c:r.0:value": "30",
            "action": "add_condition:r",
        },
    )

    tree = json.loads(response.context["rules_json"])
    assert tree["conditions"] == [
        {"field": "age", "op": "gte", "value": 30},
        {"field": "", "op": "", "value": None},
    ]
    # the new, empty condition is a neutral prompt, not an error
    assert response.context["root"].children[1].errors == []
    assert response.context["root"].children[1].prompt == "Choose a field."


def test_live_count_and_funnel(staff_client, merchant, prerolls):
    TagFactory(merchant=merchant, name="local")
    tree = rules(PHAT_PANDA, {"field": "orders_count", "op": "gte", "value": 2})

    response = staff_client.post(
        reverse("segments:builder_preview"), {"rules_json": json.dumps(tree)}
    )

    assert response.context["count"] == 1  # LOVER-1 has two orders, LOVER-2 one
    steps = [(s.count, s.cumulative) for s in response.context["steps"]]
    assert steps == [(2, 2), (1, 1)]
    assert response.context["total"] == 6
    assert 'id="live-count-value">1<' in response.content.decode()


def test_live_count_reads_the_widgets_as_typed(staff_client, merchant, prerolls):
    tree = rules(PHAT_PANDA)

    response = staff_client.post(
        reverse("segments:builder_preview"),
        {
            "rules_json": json.dumps(tree),
            "c:r.0:field": "purchased",
            "c:r.0:op": "gt",
            "c:r.0:value": "4",
            "c:r.0:products.product_types": "preroll",
            "c:r.0:products.brands": "Phat Panda",
            "c:r.0:last_within_days": "14",
            "action": "add_condition:r",  # the count ignores edits
        },
    )

    assert response.context["count"] == 3


def test_live_count_shows_errors_of_an_invalid_tree(staff_client, merchant):
    tree = rules({"field": "total_spend", "op": "gtee", "value": 1})

    response = staff_client.post(
        reverse("segments:builder_preview"), {"rules_json": json.dumps(tree)}
    )

    # the panel speaks the merchant's language; the JSON view keeps the contract's paths
    assert response.context["errors"] == [
        'Condition 1: Operator: "gtee" is not an operator of total_spend.'
    ]
    assert response.context["incomplete"] is False
    assert "count" not in response.context
    assert response.context["contract_errors"] == [
        'conditions[0].op: "gtee" is not an operator of total_spend'
    ]


def test_saving_valid_rules_creates_a_segment_and_version(
    staff_client, merchant, prerolls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("segments:create"),
            {**builder_form(), "rules_json": json.dumps(rules(PHAT_PANDA))},
        )

    segment = Segment.objects.get(merchant=merchant)
    assert response.status_code == 302
    assert response["Location"] == reverse("segments:detail", args=[segment.pk])
    assert segment.slug == "phat-panda-fans"
    assert segment.rules == rules(PHAT_PANDA)
    assert SegmentVersion.objects.filter(segment=segment, version=1).exists()
    segment.refresh_from_db()
    assert segment.member_count == 2  # the first refresh ran in-process on commit


def test_invalid_rules_save_nothing_and_show_path_errors(staff_client, merchant):
    tree = rules(
        {"field": "age", "op": "gte", "value": 21},
        {"field": "age", "op": "between", "value": [30, 20]},
    )

    response = staff_client.post(
        reverse("segments:create"), {**builder_form(), "rules_json": json.dumps(tree)}
    )

    assert response.status_code == 400
    assert not Segment.objects.exists()
    body = response.content.decode()
    assert "Nothing was saved" in body
    assert "Condition 2: The first value must not be above the second." in body
    assert "conditions[1].value: expected low &lt;= high, got [30, 20]" in body  # JSON view
    assert response.context["root"].children[1].errors == [
        "The first value must not be above the second."
    ]


def test_a_taken_slug_is_a_form_error(staff_client, merchant):
    tree = json.dumps(rules({"field": "age", "op": "gte", "value": 21}))
    staff_client.post(reverse("segments:create"), {**builder_form(slug="fans"), "rules_json": tree})

    response = staff_client.post(
        reverse("segments:create"),
        {**builder_form(name="Other fans", slug="fans"), "rules_json": tree},
    )

    assert response.status_code == 400
    assert "slug" in response.context["form"].errors
    assert Segment.objects.count() == 1


def test_a_second_segment_of_the_same_name_is_refused_not_renamed(staff_client, merchant):
    # given a segment named "Phat Panda fans"
    tree = json.dumps(rules({"field": "age", "op": "gte", "value": 21}))
    staff_client.post(reverse("segments:create"), {**builder_form(), "rules_json": tree})

    # when another is saved under the same name, in another case
    response = staff_client.post(
        reverse("segments:create"),
        {**builder_form(name="PHAT PANDA FANS"), "rules_json": tree},
    )

    # then it is refused with the reason next to the name, and nothing is saved
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == [
        'There is already a segment named "PHAT PANDA FANS": choose another name.'
    ]
    assert list(Segment.objects.values_list("slug", flat=True)) == ["phat-panda-fans"]


def test_duplicating_twice_numbers_the_copies(staff_client, merchant):
    from segments import services

    original = services.segment_create(merchant=merchant, name="Fans", kind="manual")
    first = services.segment_duplicate(segment=original)
    second = services.segment_duplicate(segment=original)

    assert (first.name, second.name) == ("Fans (copy)", "Fans (copy 2)")


def test_edit_updates_rules_and_writes_a_version(staff_client, merchant):
    tree = json.dumps(rules({"field": "age", "op": "gte", "value": 21}))
    staff_client.post(reverse("segments:create"), {**builder_form(), "rules_json": tree})
    segment = Segment.objects.get()
    url = reverse("segments:edit", args=[segment.pk])

    page = staff_client.get(url)
    response = staff_client.post(
        url,
        {
            **builder_form(name="Older fans"),
            "rules_json": page.context["rules_json"],
            "c:r.0:field": "age",
            "c:r.0:op": "gte",
            "c:r.0:value": "40",
        },
    )

    segment.refresh_from_db()
    assert response.status_code == 302
    assert segment.name == "Older fans"
    assert segment.rules["conditions"][0]["value"] == 40
    assert segment.versions.count() == 2


def test_paste_json_replaces_the_tree(staff_client, merchant):
    pasted = rules({"field": "total_spend", "op": "gte", "value": 1000})

    response = staff_client.post(
        reverse("segments:builder_editor"),
        {
            "rules_json": json.dumps(rules({"field": "age", "op": "gte", "value": 1})),
            "action": "paste",
            "paste_json": json.dumps(pasted),
        },
    )

    assert json.loads(response.context["rules_json"]) == pasted


def test_invalid_pasted_json_keeps_the_tree_and_shows_paths(staff_client, merchant):
    current = rules({"field": "age", "op": "gte", "value": 1})
    pasted = rules({"field": "total_spend", "op": "gtee", "value": 1})

    response = staff_client.post(
        reverse("segments:builder_editor"),
        {"rules_json": json.dumps(current), "action": "paste", "paste_json": json.dumps(pasted)},
    )

    assert json.loads(response.context["rules_json"]) == current
    assert response.context["state"].paste_errors == [
        'conditions[0].op: "gtee" is not an operator of total_spend'
    ]
    assert "is not an operator of total_spend" in response.content.decode()

    broken = staff_client.post(
        reverse("segments:builder_editor"),
        {"rules_json": json.dumps(current), "action": "paste", "paste_json": "{oops"},
    )
    assert "The pasted text cannot be read: rules: not JSON" in broken.content.decode()
