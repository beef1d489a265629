"""URLs of the consent API, mounted under /api/v1/."""

from django.urls import path

from consent.api import provisioning

urlpatterns = [
    path("accounts/", provisioning.AccountCreateApi.as_view(), name="account-create"),
    path(
        "practitioners/", provisioning.PractitionerCreateApi.as_view(), name="practitioner-create"
    ),
    path("patients/", provisioning.PatientCreateApi.as_view(), name="patient-create"),
    path(
        "patients/<str:national_id>/identifiers/",
        provisioning.PatientIdentifierCreateApi.as_view(),
        name="patient-identifier-create",
    ),
]
