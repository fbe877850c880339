"""Portal views of the customers app: the customer pages, and the import upload page."""

from customers.views.imports import ImportView
from customers.views.portal import CustomerDetailView, CustomerListView, switch_merchant

__all__ = ["CustomerDetailView", "CustomerListView", "ImportView", "switch_merchant"]
