"""Safe defaults on every response: a Content-Security-Policy that allows no inline script or
style (and templates that need none), and exports no cache keeps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_pages_carry_a_strict_content_security_policy(staff_client):
    response = staff_client.get(reverse("customers:list"))

    policy = response["Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_the_sign_in_page_has_the_policy_too(client):
    assert "script-src 'self'" in client.get(reverse("login"))["Content-Security-Policy"]


def test_json_answers_carry_a_policy_that_allows_nothing(client):
    # A JSON document loads nothing and is framed by nothing (config.api.JSON_POLICY): an
    # error answer (no token) and the schema alike.
    for path in ("/api/v1/customers/c-1", "/api/v1/openapi.json", "/api/v1/no/such/route"):
        response = client.get(path)
        assert response["Content-Type"].startswith("application/json"), path
        assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_the_api_docs_page_has_the_portals_policy(client):
    # An HTML page under /api/v1/ (Swagger UI, its script a file of this site)
    policy = client.get("/api/v1/docs")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy


@pytest.mark.parametrize("path", sorted(p for p in TEMPLATES.rglob("*.html")), ids=str)
def test_templates_hold_no_inline_script_style_or_evaluated_htmx(path):
    text = path.read_text()
    # <script> only with src= (json_script's data blocks are rendered by a filter, not here)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline <script>"
    assert not re.search(r"\sstyle=", text), "style attribute"
    assert "<style" not in text
    assert "hx-on" not in text, "hx-on is evaluated as code"
    for trigger in re.findall(r'hx-trigger="([^"]*)"', text):
        assert "[" not in trigger, f"htmx trigger filter (evaluated as code): {trigger}"


@pytest.mark.parametrize("url_name", ["customers:list", "segments:list"])
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_exports_are_never_cached(staff_client, url_name, fmt):
    response = staff_client.get(reverse(url_name), {"_export": fmt})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def test_pages_themselves_may_vary_by_htmx(staff_client):
    response = staff_client.get(reverse("segments:list"))
    assert "Cache-Control" not in response or "no-store" not in response["Cache-Control"]
    assert "HX-Request" in response["Vary"]


def test_a_body_over_the_limit_is_a_clear_400_not_a_500(staff_client, settings):
    settings.DEBUG = False
    huge = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)

    response = staff_client.post(reverse("segments:builder_preview"), {"rules_json": huge})

    assert response.status_code == 400
    assert "too large" in response.content.decode()


def test_too_many_fields_is_a_clear_400(staff_client, settings):
    fields = {f"c:r.{i}:value": "1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}

    response = staff_client.post(reverse("segments:builder_editor"), fields)

    assert response.status_code == 400
    assert "too many fields" in response.content.decode()
