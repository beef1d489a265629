"""REST URLs of the studies app, mounted by the root URLconf under /api/v1/."""

from django.urls import path

from studies.api.portal import MyStudiesApi, PatientStudiesApi

urlpatterns = [
    path(
        "patients/<str:national_id>/studies/",
        PatientStudiesApi.as_view(),
        name="patient-studies",
    ),
    path("me/studies/", MyStudiesApi.as_view(), name="my-studies"),
]
