from django.urls import path

from customers import views

app_name = "customers"

urlpatterns = [
    path("merchant/switch/", views.switch_merchant, name="switch_merchant"),
    path("customers/", views.CustomerListView.as_view(), name="list"),
    path("customers/<int:pk>/", views.CustomerDetailView.as_view(), name="detail"),
    path("import/", views.ImportView.as_view(), name="import"),
    path("import/confirm/", views.ImportConfirmView.as_view(), name="import_confirm"),
    path("import/cancel/", views.ImportCancelView.as_view(), name="import_cancel"),
    path("import/sample/<slug:kind>.csv", views.ImportSampleView.as_view(), name="import_sample"),
]
