"""The in-portal Help (the user guides of docs/, rendered and sanitised) and the import
page's sample files (which import together as they are)."""

from __future__ import annotations

import io
import re

import pytest
from django.urls import reverse

from customers.imports import import_files
from customers.imports.samples import SAMPLES
from customers.imports.specs import FILE_ORDER
from customers.models import Customer, LineItem, Transaction
from customers.portal import help as portal_help
from segments.models import Segment
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


# -- Help -------------------------------------------------------------------------------------


def test_the_index_lists_every_guide(staff_client):
    body = staff_client.get(reverse("help_index")).content.decode()

    for slug, title in portal_help.HELP_PAGES:
        assert f'href="{reverse("help", args=[slug])}"' in body
        assert title.replace("'", "&#x27;") in body


@pytest.mark.parametrize("slug", [slug for slug, _ in portal_help.HELP_PAGES])
def test_every_guide_renders_with_links_between_guides_kept_in_the_portal(staff_client, slug):
    response = staff_client.get(reverse("help", args=[slug]))

    body = response.content.decode()
    page = body.split('id="help-page">')[1].split("</article>")[0]
    assert response.status_code == 200
    assert re.search(r"<h1[^>]*>", page)  # the guide itself, not an empty shell
    assert not re.search(r'href="[^"]*\.md', page)  # no link to a file merchants cannot open
    for target in re.findall(r'href="/help/([a-z0-9-]+)/', page):
        assert target in portal_help.TITLES  # a link to another guide stays in Help


def test_a_link_to_another_guide_points_into_help(staff_client):
    page = staff_client.get(reverse("help", args=["segment-builder"])).content.decode()

    assert f'href="{reverse("help", args=["segment-rules"])}"' in page
    assert 'href="segment-rules.md"' not in page


@pytest.mark.parametrize("slug", ["benchmarks", "architecture", "nope", "..%2Fsettings"])
def test_anything_but_a_user_guide_is_not_found(staff_client, slug):
    assert staff_client.get(f"/help/{slug}/").status_code == 404


def test_a_guide_is_sanitised(tmp_path, settings):
    # given: a guide with markup that must not reach a page
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "roles.md").write_text(
        "# Roles\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) "
        '<a href="#" onclick="alert(1)">y</a> <img src=x onerror=alert(1)>\n'
        "\n[rules](segment-rules.md#fields)\n",
        encoding="utf-8",
    )
    settings.BASE_DIR = tmp_path
    portal_help._render.cache_clear()

    try:
        html = str(portal_help.help_page("roles").html)
    finally:
        portal_help._render.cache_clear()

    assert '<h1 id="roles">Roles</h1>' in html
    for bad in ("<script", "javascript:", "onclick", "<img", "onerror"):
        assert bad not in html, bad
    assert f'href="{reverse("help", args=["segment-rules"])}#fields"' in html


def test_help_needs_a_sign_in(client):
    response = client.get(reverse("help", args=["roles"]))

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


# -- Sample files -----------------------------------------------------------------------------


def test_there_is_a_sample_for_every_import_file():
    assert set(SAMPLES) == set(FILE_ORDER)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_a_sample_downloads_as_csv(staff_client, kind):
    response = staff_client.get(reverse("customers:import_sample", args=[kind]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{kind}.csv"'
    assert response.content.decode() == SAMPLES[kind]


def test_an_unknown_sample_is_not_found(staff_client):
    assert staff_client.get("/import/sample/passwords.csv").status_code == 404


def test_the_samples_import_together_as_they_are(merchant):
    files = {kind: io.BytesIO(SAMPLES[kind].encode()) for kind in FILE_ORDER}

    report = import_files(merchant=merchant, files=files)

    assert report.errors == []
    assert Customer.objects.filter(merchant=merchant).count() == 2
    assert Transaction.objects.filter(customer__merchant=merchant).count() == 3
    assert LineItem.objects.filter(transaction__customer__merchant=merchant).count() == 3
    assert {kind: counts.rows for kind, counts in report.counts.items()} == {
        kind: SAMPLES[kind].count("\n") - 1 for kind in FILE_ORDER
    }


def test_each_main_page_links_its_guide(staff_client, merchant):
    customer = CustomerFactory(merchant=merchant)
    segment = Segment.objects.create(merchant=merchant, name="Big", slug="big")
    pages = {
        reverse("customers:list"): "portal",
        reverse("customers:detail", args=[customer.pk]): "portal",
        reverse("segments:list"): "segment-list",
        reverse("segments:detail", args=[segment.pk]): "segment-list",
        reverse("segments:history", args=[segment.pk]): "segment-list",
        reverse("segments:create"): "segment-builder",
        reverse("customers:import"): "import",
    }

    for url, slug in pages.items():
        body = staff_client.get(url).content.decode()
        assert f'href="{reverse("help", args=[slug])}' in body, url
