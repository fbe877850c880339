"""The owners' webhook pages, under /webhooks/ (namespace `webhooks`)."""

from django.urls import URLPattern, path

from campaigns import webhook_views

app_name = "webhooks"

urlpatterns: list[URLPattern] = [
    path("", webhook_views.WebhookListView.as_view(), name="list"),
    path("new/", webhook_views.WebhookFormView.as_view(), name="new"),
    path("<int:pk>/", webhook_views.WebhookDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", webhook_views.WebhookFormView.as_view(), name="edit"),
    path("<int:pk>/switch/", webhook_views.WebhookSwitchView.as_view(), name="switch"),
    path("<int:pk>/rotate/", webhook_views.WebhookRotateView.as_view(), name="rotate"),
    path("<int:pk>/delete/", webhook_views.WebhookDeleteView.as_view(), name="delete"),
    path(
        "<int:pk>/deliveries/<int:delivery_pk>/",
        webhook_views.WebhookDeliveryView.as_view(),
        name="delivery",
    ),
    path(
        "<int:pk>/deliveries/<int:delivery_pk>/resend/",
        webhook_views.WebhookResendView.as_view(),
        name="resend",
    ),
]
