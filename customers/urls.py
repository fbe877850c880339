from django.urls import path

from customers import views
from customers.views import api_tokens, scores

app_name = "customers"

urlpatterns = [
    path("merchant/switch/", views.switch_merchant, name="switch_merchant"),
    path("customers/", views.CustomerListView.as_view(), name="list"),
    path("customers/<int:pk>/", views.CustomerDetailView.as_view(), name="detail"),
    path("scores/", scores.ScoresView.as_view(), name="scores"),
    path("scores/recompute/", scores.ScoreRecomputeView.as_view(), name="score_recompute"),
    path("scores/settings/", scores.ScoreSettingsView.as_view(), name="score_settings"),
    path("scores/model/", scores.ScoreModelView.as_view(), name="score_model"),
    path("scores/transitions/", scores.TransitionsView.as_view(), name="score_transitions"),
    path(
        "scores/transitions/customers/",
        scores.TransitionCustomersView.as_view(),
        name="score_transition_customers",
    ),
    path("api-tokens/", api_tokens.ApiTokensView.as_view(), name="api_tokens"),
    path(
        "api-tokens/<int:pk>/revoke/",
        api_tokens.ApiTokenRevokeView.as_view(),
        name="api_token_revoke",
    ),
    path("import/", views.ImportView.as_view(), name="import"),
    path("import/confirm/", views.ImportConfirmView.as_view(), name="import_confirm"),
    path("import/cancel/", views.ImportCancelView.as_view(), name="import_cancel"),
    path("import/sample/<slug:kind>.csv", views.ImportSampleView.as_view(), name="import_sample"),
]
