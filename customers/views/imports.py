"""The import upload page: upload contract CSV files, preview counts and errors, then import."""

from __future__ import annotations

from django.views.generic import TemplateView

from customers.tenancy import MerchantRequiredMixin


class ImportView(MerchantRequiredMixin, TemplateView):
    template_name = "customers/import.html"
