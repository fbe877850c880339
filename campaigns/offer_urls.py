"""Pages that create and edit offers, content blocks and codes (under /campaigns/offers/)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
