"""Root URL configuration."""

from django.contrib import admin
from django.urls import include, path
from django_otp.admin import OTPAdminSite
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from anim_gateway.middleware import with_policy

# The administration needs the second factor too (enrolled at the first portal log-in).
admin.site.__class__ = OTPAdminSite

# Swagger UI comes from its CDN (drf-spectacular's default) and styles itself inline; the
# split view serves its set-up script as a file. The page shows no patient data.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://cdn.jsdelivr.net; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

handler400 = "anim_gateway.errors.json_400"
handler403 = "anim_gateway.errors.json_403"
handler404 = "anim_gateway.errors.json_404"
handler500 = "anim_gateway.errors.json_500"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path(
        "api/docs/",
        with_policy(DOCS_POLICY)(
            SpectacularSwaggerSplitView.as_view(url_name="schema", permission_classes=[])
        ),
        name="api-docs",
    ),
    path("api/v1/", include("consent.urls")),
    path("api/v1/", include("audit.urls")),
    path("api/v1/", include("studies.api_urls")),
    path("dicomweb/", include("studies.urls")),
    path("", include("anim_gateway.portal_urls")),
]
