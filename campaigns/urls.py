from django.urls import include, path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("offers/", views.OfferListView.as_view(), name="offers"),
    # Creating and editing offers, content blocks and codes (same namespace).
    path("offers/", include("campaigns.offer_urls")),
    path(
        "customer/<int:customer_pk>/visible/",
        views.CustomerVisibleView.as_view(),
        name="customer_visible",
    ),
]
