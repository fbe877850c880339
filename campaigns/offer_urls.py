"""Pages that create and edit offers, content blocks and codes (under /campaigns/offers/,
in the `campaigns` namespace)."""

from django.urls import URLPattern, path

from campaigns import offer_views

urlpatterns: list[URLPattern] = [
    path("new/", offer_views.OfferFormView.as_view(), name="offer_new"),
    path("<int:pk>/", offer_views.OfferDetailView.as_view(), name="offer_detail"),
    path("<int:pk>/edit/", offer_views.OfferFormView.as_view(), name="offer_edit"),
    path(
        "<int:pk>/codes/generate/",
        offer_views.OfferCodesGenerateView.as_view(),
        name="offer_codes_generate",
    ),
    path(
        "<int:pk>/codes/upload/",
        offer_views.OfferCodesUploadView.as_view(),
        name="offer_codes_upload",
    ),
    path("<int:pk>/switch/", offer_views.OfferToggleView.as_view(), name="offer_toggle"),
    path("content/new/", offer_views.ContentFormView.as_view(), name="content_new"),
    path("content/<int:pk>/edit/", offer_views.ContentFormView.as_view(), name="content_edit"),
    path(
        "content/<int:pk>/switch/", offer_views.ContentToggleView.as_view(), name="content_toggle"
    ),
]
