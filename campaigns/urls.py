from django.urls import include, path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("", views.CampaignListView.as_view(), name="list"),
    path("new/", views.CampaignFormView.as_view(), name="new"),
    path("rules/", views.ContactRulesView.as_view(), name="rules"),
    path("<int:pk>/", views.CampaignDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.CampaignFormView.as_view(), name="edit"),
    path("<int:pk>/audience/", views.CampaignAudienceView.as_view(), name="audience"),
    path("<int:pk>/progress/", views.CampaignProgressView.as_view(), name="progress"),
    path("<int:pk>/results/", views.CampaignResultsView.as_view(), name="results"),
    path("<int:pk>/deliveries/", views.CampaignDeliveriesView.as_view(), name="deliveries"),
    path("<int:pk>/send/", views.CampaignSendView.as_view(), name="send"),
    path("<int:pk>/schedule/", views.CampaignScheduleView.as_view(), name="schedule"),
    path("<int:pk>/unschedule/", views.CampaignUnscheduleView.as_view(), name="unschedule"),
    path("<int:pk>/test/", views.CampaignTestView.as_view(), name="test"),
    path("<int:pk>/duplicate/", views.CampaignDuplicateView.as_view(), name="duplicate"),
    path("<int:pk>/delete/", views.CampaignDeleteView.as_view(), name="delete"),
    path("offers/", views.OfferListView.as_view(), name="offers"),
    # Creating and editing offers, content blocks and codes (same namespace).
    path("offers/", include("campaigns.offer_urls")),
    path(
        "customer/<int:customer_pk>/visible/",
        views.CustomerVisibleView.as_view(),
        name="customer_visible",
    ),
]
