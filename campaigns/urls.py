from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("offers/", views.OfferListView.as_view(), name="offers"),
    path(
        "customer/<int:customer_pk>/visible/",
        views.CustomerVisibleView.as_view(),
        name="customer_visible",
    ),
]
