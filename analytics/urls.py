from django.urls import path

from analytics import views

app_name = "analytics"

urlpatterns = [
    path("", views.SegmentAnalysisView.as_view(), name="segment_analysis"),
    path("branches/", views.BranchRevenueView.as_view(), name="branch_revenue"),
    path("growth/", views.GrowthView.as_view(), name="growth"),
    path("growth/<int:pk>/changes/", views.GrowthChangesView.as_view(), name="growth_changes"),
    path("overlap/", views.OverlapView.as_view(), name="overlap"),
    path("key-figures/", views.KeyFiguresView.as_view(), name="key_figures"),
]
