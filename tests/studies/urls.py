"""The root URLconf plus the studies REST URLs, until the lead mounts studies.api_urls."""

from django.urls import include, path

from anim_gateway.urls import urlpatterns as root

urlpatterns = [*root, path("api/v1/", include("studies.api_urls"))]
