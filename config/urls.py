from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from analytics.views import DashboardView
from config.api import api_urls
from customers.portal.help import HelpIndexView, HelpPageView


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Browsers ask for /favicon.ico on pages without an icon link (the admin, files). The
    # static URL is looked up per request: with hashed static files it needs the manifest.
    return HttpResponsePermanentRedirect(static("favicon.svg"))


admin.site.site_header = "Segment Portal support"
admin.site.site_title = "Segment Portal admin"
admin.site.index_title = "Every merchant's data"

urlpatterns = [
    path("", DashboardView.as_view(), name="home"),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("api/v1/", api_urls()),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("help/", HelpIndexView.as_view(), name="help_index"),
    path("help/<slug:slug>/", HelpPageView.as_view(), name="help"),
    path("segments/", include("segments.urls")),
    path("reports/", include("analytics.urls")),
    path("campaigns/", include("campaigns.urls")),
    path("webhooks/", include("campaigns.webhook_urls")),
    path("", include("customers.urls")),
]
