"""Every segment template of the builder's picker is valid rules."""

from __future__ import annotations

import pytest

from segments import engine
from segments.templates_catalog import TEMPLATES, find_template, template_key

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"] for t in TEMPLATES])
def test_each_template_validates(merchant, template):
    engine.validate_rules(template["rules"], merchant=merchant)

    assert template["description"]


def test_templates_have_unique_keys():
    keys = [template_key(t) for t in TEMPLATES]

    assert len(set(keys)) == len(keys) == 8


def test_find_template_by_key():
    found = find_template("phat-panda-preroll-lovers")

    assert found is not None
    assert found["rules"]["conditions"][0]["op"] == "gt"
    assert find_template("nope") is None
