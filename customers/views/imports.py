"""The import upload page: upload contract CSV files, preview counts and errors, then import.

Flow (like the admin's two-step "delete selected"):

1. GET `customers:import`: one optional file input per contract file.
2. POST there: the files are saved under `var/imports/<token>/` and imported as a DRY RUN;
   the preview shows the counts per file, or the errors, and nothing is written.
3. POST `customers:import_confirm` with the token: the real import, then the result.
   POST `customers:import_cancel` deletes the files.

The token names files on disk, so it is never trusted alone: the session records which
merchant and user each token was issued to, and confirm/cancel answer 404 for any other.
All writes go through `customers.imports.import_files()` for `request.merchant`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views import View
from django.views.generic import FormView

from customers.imports import (
    FILE_ORDER,
    SAMPLES,
    ImportReport,
    import_files,
    upload_discard,
    upload_paths,
    upload_store,
)
from customers.portal.permissions import Action
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant

SESSION_KEY = "customer_import_uploads"

MSG_NO_FILE = "Choose at least one file to import."
MSG_IMPORTED = "Import done: {summary}."
MSG_CANCELLED = "Import cancelled; the uploaded files were deleted."
MSG_UNKNOWN_UPLOAD = "No such upload for this merchant."

FILE_HELP = {
    "branches": "code, name",
    "products": "sku, name; optional product_type, brand, category, price",
    "customers": "external_id, joined_at; optional names, email, phone, tags, tier, ...",
    "transactions": "external_id, customer_external_id, occurred_at, total; optional ...",
    "items": "transaction_external_id, sku, quantity, amount",
    "redemptions": "external_id, customer_external_id, reward, redeemed_at; optional points",
}


class ImportSampleView(MerchantRequiredMixin, View):
    """GET: a sample of one contract file (`<kind>.csv`), to fill in or to try the import
    with: the samples import together as they are."""

    permission = Action.IMPORT_DATA

    def get(self, request: HttpRequest, kind: str) -> HttpResponse:
        if kind not in SAMPLES:
            raise Http404("No such import file.")
        response = HttpResponse(SAMPLES[kind], content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{kind}.csv"'
        return response


class ImportUploadForm(forms.Form):
    """One optional CSV file per contract file; at least one is required."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for kind in FILE_ORDER:
            self.fields[kind] = forms.FileField(
                required=False,
                label=f"{kind}.csv",
                help_text=format_html(
                    '{} · <a href="{}" download>sample {}.csv</a>',
                    FILE_HELP[kind],
                    reverse("customers:import_sample", args=[kind]),
                    kind,
                ),
                widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not any(cleaned.get(kind) for kind in FILE_ORDER):
            raise forms.ValidationError(MSG_NO_FILE)
        return cleaned


def _uploads(request: HttpRequest) -> dict[str, dict[str, int]]:
    uploads: dict[str, dict[str, int]] = request.session.get(SESSION_KEY, {})
    return uploads


def _remember(request: HttpRequest, token: str) -> None:
    uploads = _uploads(request)
    uploads[token] = {"merchant": current_merchant(request).pk, "user": int(request.user.pk or 0)}
    request.session[SESSION_KEY] = uploads


def _forget(request: HttpRequest, token: str) -> None:
    uploads = _uploads(request)
    uploads.pop(token, None)
    request.session[SESSION_KEY] = uploads


def _owned_token(request: HttpRequest) -> str:
    """The POSTed token, if this session issued it to this user for the current merchant."""
    token = request.POST.get("token", "")
    entry = _uploads(request).get(token)
    if (
        entry is None
        or entry.get("merchant") != current_merchant(request).pk
        or entry.get("user") != request.user.pk
    ):
        raise Http404(MSG_UNKNOWN_UPLOAD)
    return token


def _rows(report: ImportReport) -> list[dict[str, Any]]:
    return [
        {"file": f"{kind}.csv", "counts": report.counts[kind]}
        for kind in FILE_ORDER
        if kind in report.counts
    ]


class ImportView(MerchantRequiredMixin, FormView):
    """Upload, then a dry-run preview of the current merchant's import."""

    permission = Action.IMPORT_DATA
    template_name = "customers/import.html"
    form_class = ImportUploadForm

    def form_valid(self, form: ImportUploadForm) -> HttpResponse:
        files = {kind: form.cleaned_data[kind] for kind in FILE_ORDER if form.cleaned_data[kind]}
        token = upload_store(files)
        try:
            report = import_files(
                merchant=current_merchant(self.request), files=upload_paths(token), dry_run=True
            )
        except Exception:
            upload_discard(token)  # "busy, try again" (or an error): the files must be sent again
            raise
        if report.ok:
            _remember(self.request, token)
        else:
            # Nothing to confirm: the files must be fixed and uploaded again.
            upload_discard(token)
        return render(
            self.request,
            "customers/import_preview.html",
            {"report": report, "rows": _rows(report), "token": token if report.ok else ""},
        )


class ImportConfirmView(MerchantRequiredMixin, View):
    """Run the previewed import for real."""

    permission = Action.IMPORT_DATA

    def post(self, request: HttpRequest) -> HttpResponse:
        token = _owned_token(request)
        paths = upload_paths(token)
        if not paths:
            _forget(request, token)
            raise Http404(MSG_UNKNOWN_UPLOAD)
        report = import_files(merchant=current_merchant(request), files=paths, dry_run=False)
        upload_discard(token)
        _forget(request, token)
        if report.ok:
            summary = "; ".join(c.summary() for c in report.counts.values())
            messages.success(request, MSG_IMPORTED.format(summary=summary))
            return render(
                request, "customers/import_result.html", {"report": report, "rows": _rows(report)}
            )
        # The data changed between the preview and now: show the errors like a preview.
        return render(
            request,
            "customers/import_preview.html",
            {"report": report, "rows": _rows(report), "token": ""},
        )


class ImportCancelView(MerchantRequiredMixin, View):
    """Delete the uploaded files of a previewed import."""

    permission = Action.IMPORT_DATA

    def post(self, request: HttpRequest) -> HttpResponse:
        token = _owned_token(request)
        upload_discard(token)
        _forget(request, token)
        messages.info(request, MSG_CANCELLED)
        return redirect("customers:import")
