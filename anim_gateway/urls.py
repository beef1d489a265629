"""Root URL configuration."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from django_otp.admin import OTPAdminSite
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# The administration needs the second factor too (enrolled at the first portal log-in).
admin.site.__class__ = OTPAdminSite

# The page shows no patient data: the schema and its docs are open to anyone, as before.
# Swagger UI comes from the drf-spectacular-sidecar package's static files (no CDN: hospital
# networks may have no Internet), and the page runs under the portal's policy: its set-up
# script is a file (the split view) and its stylesheet too (api_docs/swagger_ui.html).
docs_view = SpectacularSwaggerSplitView.as_view(
    url_name="schema", permission_classes=[], template_name="api_docs/swagger_ui.html"
)

handler400 = "anim_gateway.errors.error_400"
handler403 = "anim_gateway.errors.error_403"
handler404 = "anim_gateway.errors.error_404"
handler500 = "anim_gateway.errors.error_500"

# The administration's "Change password" leads to the portal's page, which counts wrong
# passwords in the log-in throttle, audits, and ends the user's other sessions.
admin_password_change = RedirectView.as_view(pattern_name="portal:password-change")

urlpatterns = [
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path("api/docs/", docs_view, name="api-docs"),
    path("api/v1/", include("consent.urls")),
    path("api/v1/", include("audit.urls")),
    path("api/v1/", include("studies.api_urls")),
    path("dicomweb/", include("studies.urls")),
    path("", include("anim_gateway.portal_urls")),
]
