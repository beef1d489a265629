"""URLs of the consent API, mounted under /api/v1/."""

from django.urls import path, register_converter

from consent.api import access_log, care, emergency, patients, provisioning


class IdConverter:
    """A row id that fits a bigint: longer numbers are a 404, never a database error."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("me/access-log/", access_log.AccessLogApi.as_view(), name="me-access-log-api"),
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
    path(
        "patients/<str:national_id>/emergency-access/",
        emergency.EmergencyAccessCreateApi.as_view(),
        name="emergency-access-create",
    ),
    path("emergency-accesses/", emergency.EmergencyAccessListApi.as_view(), name="emergency-list"),
    path(
        "emergency-accesses/<id:access_id>/review/",
        emergency.EmergencyAccessReviewApi.as_view(),
        name="emergency-review",
    ),
    path("care-relationships/", care.CareRelationshipCreateApi.as_view(), name="care-create"),
    path(
        "care-relationships/<id:link_id>/end/",
        care.CareRelationshipEndApi.as_view(),
        name="care-end",
    ),
    path("me/record/", patients.RecordApi.as_view(), name="me-record"),
    path("me/record/close/", patients.RecordCloseApi.as_view(), name="me-record-close"),
    path("me/record/reopen/", patients.RecordReopenApi.as_view(), name="me-record-reopen"),
    path("me/consents/", patients.ConsentListCreateApi.as_view(), name="me-consents"),
    path(
        "me/consents/<id:consent_id>/revoke/",
        patients.ConsentRevokeApi.as_view(),
        name="me-consent-revoke",
    ),
    path("me/exclusions/", patients.ExclusionListCreateApi.as_view(), name="me-exclusions"),
    path(
        "me/exclusions/<id:exclusion_id>/",
        patients.ExclusionDeleteApi.as_view(),
        name="me-exclusion-delete",
    ),
    path("me/care-relationships/", patients.DeclaredCareApi.as_view(), name="me-care"),
    path("me/studies/<str:study_uid>/hide/", patients.StudyHideApi.as_view(), name="me-study-hide"),
    path(
        "me/studies/<str:study_uid>/unhide/",
        patients.StudyUnhideApi.as_view(),
        name="me-study-unhide",
    ),
    path("me/who-can-see/", patients.WhoCanSeeApi.as_view(), name="me-who-can-see"),
]
