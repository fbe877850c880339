"""In-portal help: the user guides of `docs/`, rendered from Markdown for people who cannot
open the repository (merchants' staff).

Only the pages in `HELP_PAGES` are served (developer documents such as benchmarks and
deployment are not); links between them are rewritten to their help pages. The HTML comes
from Python-Markdown and is sanitised with nh3 (an allowlist of tags and attributes), and
each page is rendered once per change of its file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import markdown  # type: ignore[import-untyped]
import nh3
from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views import View

#: (slug: the file docs/<slug>.md, title), in the order the help index lists them.
HELP_PAGES: tuple[tuple[str, str], ...] = (
    ("portal", "Customers: the list, search, filters and exports"),
    ("import", "Importing data: the CSV files"),
    ("segment-builder", "Building a segment: the rule builder"),
    ("segment-rules", "Segment rules: every field and operator"),
    ("customer-scores", "Customer scores: lifecycle stages, RFM and tiers"),
    ("segment-list", "The segment list and a segment's page"),
    ("segments", "Segments: refresh, freshness and manual members"),
    ("segment-downloads", "Downloading a segment's members"),
    ("reports", "Reports: what each one shows and how it is computed"),
    ("campaigns", "Campaigns: audience, sending, results and lift"),
    ("campaign-channels", "Campaign channels: email, SMS, push and providers"),
    ("webhooks", "Webhooks: events, signatures, retries and the delivery log"),
    ("roles", "Roles: who may do what"),
)
TITLES = dict(HELP_PAGES)
_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "a", "ul", "ol", "li", "table", "thead",
    "tbody", "tr", "th", "td", "code", "pre", "em", "strong", "blockquote", "hr", "br",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}} | {
    tag: {"id"} for tag in ("h1", "h2", "h3", "h4", "h5", "h6")
}
_DOC_LINK = re.compile(r'href="(?:docs/)?([a-z0-9-]+)\.md(#[^"]*)?"')


@dataclass(frozen=True)
class HelpPage:
    slug: str
    title: str
    html: SafeString


def docs_dir() -> Path:
    return Path(settings.BASE_DIR) / "docs"


@lru_cache(maxsize=32)
def _render(slug: str, mtime: float) -> str:
    text = (docs_dir() / f"{slug}.md").read_text(encoding="utf-8")
    html = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])

    def link(match: re.Match[str]) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        if target in TITLES:
            return f'href="{reverse("help", args=[target])}{anchor}"'
        return 'href="#"'

    html = _DOC_LINK.sub(link, html)
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, link_rel="noopener")


def help_page(slug: str) -> HelpPage:
    """One help page, rendered; Http404 for anything that is not a user guide."""
    if slug not in TITLES:
        raise Http404("No such help page.")
    path = docs_dir() / f"{slug}.md"
    html = _render(slug, path.stat().st_mtime)
    return HelpPage(slug=slug, title=TITLES[slug], html=mark_safe(html))  # noqa: S308 - nh3


class HelpIndexView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "help/index.html", {"pages": HELP_PAGES})


class HelpPageView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return render(request, "help/page.html", {"page": help_page(slug), "pages": HELP_PAGES})
