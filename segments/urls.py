from django.urls import path

from segments import views

app_name = "segments"

urlpatterns = [
    path("", views.SegmentListView.as_view(), name="list"),
    path("bulk/", views.SegmentBulkView.as_view(), name="bulk"),
    path("ready-made/", views.ReadyMadeView.as_view(), name="ready_made"),
    path("new/", views.SegmentBuilderView.as_view(), name="create"),
    path("builder/editor/", views.BuilderEditorView.as_view(), name="builder_editor"),
    path("builder/preview/", views.BuilderPreviewView.as_view(), name="builder_preview"),
    path("<int:pk>/", views.SegmentDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.SegmentBuilderView.as_view(), name="edit"),
    path(
        "<int:pk>/builder/editor/",
        views.BuilderEditorView.as_view(),
        name="builder_editor_segment",
    ),
    path(
        "<int:pk>/builder/preview/",
        views.BuilderPreviewView.as_view(),
        name="builder_preview_segment",
    ),
    path("<int:pk>/refresh/", views.SegmentRefreshView.as_view(), name="refresh"),
    path("<int:pk>/action/", views.SegmentActionView.as_view(), name="action"),
    path("<int:pk>/remove/", views.SegmentRemoveView.as_view(), name="remove"),
    path("<int:pk>/history/", views.SegmentHistoryView.as_view(), name="history"),
    path(
        "<int:pk>/history/<int:version>/restore/",
        views.SegmentRestoreView.as_view(),
        name="restore",
    ),
    path("<int:pk>/download/<str:fmt>/", views.SegmentDownloadView.as_view(), name="download"),
    path("<int:pk>/members/add/", views.MemberAddView.as_view(), name="member_add"),
    path(
        "<int:pk>/members/<int:customer_pk>/remove/",
        views.MemberRemoveView.as_view(),
        name="member_remove",
    ),
    path("<int:pk>/members/upload/", views.MemberUploadView.as_view(), name="member_upload"),
    path(
        "customer/<int:customer_pk>/",
        views.CustomerSegmentsView.as_view(),
        name="customer_segments",
    ),
    path(
        "customer/<int:customer_pk>/add/",
        views.CustomerAddToSegmentView.as_view(),
        name="customer_add",
    ),
]
