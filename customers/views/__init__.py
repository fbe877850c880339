"""Portal views of the customers app: the customer pages, and the import upload page."""

from customers.views.imports import (
    ImportCancelView,
    ImportConfirmView,
    ImportSampleView,
    ImportView,
)
from customers.views.portal import CustomerDetailView, CustomerListView, switch_merchant

__all__ = [
    "CustomerDetailView",
    "CustomerListView",
    "ImportCancelView",
    "ImportConfirmView",
    "ImportSampleView",
    "ImportView",
    "switch_merchant",
]
