"""Portal URLs, mounted at the site root; none collides with /api/, /dicomweb/ or /admin/."""

from django.urls import path

from anim_gateway import portal, portal_account, portal_login
from anim_gateway.portal import portal_view
from audit import pages as audit_pages
from consent import pages as consent_pages
from studies import pages as study_pages

app_name = "portal"

# The audit app may not import consent (import-linter): its pages get request.actor here.
dpo = portal_view("dpo")


urlpatterns = [
    path("", portal.home, name="home"),
    path("login/", portal_login.login_view, name="login"),
    path("login/verify/", portal_login.totp_verify, name="totp-verify"),
    path("login/enrol/", portal_login.totp_enrol, name="totp-enrol"),
    path("login/institution/", portal.choose_institution, name="choose-institution"),
    path("logout/", portal.logout_view, name="logout"),
    path("account/password/", portal_account.password_change, name="password-change"),
    # The patient
    path("me/", consent_pages.me, name="me"),
    path("me/acting-for/", consent_pages.acting_for, name="me-acting-for"),
    path(
        "me/record/close/",
        consent_pages.record_status,
        {"status": "closed"},
        name="me-record-close",
    ),
    path(
        "me/record/reopen/",
        consent_pages.record_status,
        {"status": "active"},
        name="me-record-reopen",
    ),
    path("me/consents/", consent_pages.consent_page, name="me-consents"),
    path(
        "me/consents/<int:consent_id>/revoke/",
        consent_pages.consent_revoke,
        name="me-consent-revoke",
    ),
    path("me/who-can-see/", consent_pages.who_can_see, name="me-who-can-see"),
    path("me/doctors/", consent_pages.doctors, name="me-doctors"),
    path("me/doctors/declare/", consent_pages.care_declare, name="me-care-declare"),
    path("me/doctors/block/", consent_pages.exclusion_add, name="me-exclusion-add"),
    path(
        "me/doctors/blocked/<int:exclusion_id>/unblock/",
        consent_pages.exclusion_remove,
        name="me-exclusion-remove",
    ),
    path("me/studies/", study_pages.my_studies, name="me-studies"),
    path(
        "me/studies/<str:study_uid>/hide/",
        study_pages.my_study_visibility,
        {"hide": True},
        name="me-study-hide",
    ),
    path(
        "me/studies/<str:study_uid>/unhide/",
        study_pages.my_study_visibility,
        {"hide": False},
        name="me-study-unhide",
    ),
    path("me/access-log/", consent_pages.access_log, name="me-access-log"),
    # The practitioner
    path("patients/", study_pages.patient_search, name="patient-search"),
    path("patients/<str:national_id>/", study_pages.patient_studies, name="patient-studies"),
    path(
        "patients/<str:national_id>/studies/<str:study_uid>/",
        study_pages.study_detail,
        name="study-detail",
    ),
    path(
        "patients/<str:national_id>/studies/<str:study_uid>/series/<str:series_uid>/",
        study_pages.series_viewer,
        name="series-viewer",
    ),
    path(
        "patients/<str:national_id>/emergency/",
        study_pages.emergency_form,
        name="emergency-form",
    ),
    path(
        "patients/<str:national_id>/emergency/declare/",
        study_pages.emergency_declare,
        name="emergency-declare",
    ),
    # The DPO
    path("dpo/audit/", dpo(audit_pages.audit_search), name="dpo-audit"),
    path("dpo/verify/", dpo(audit_pages.audit_verify), name="dpo-verify"),
    path("dpo/emergencies/", consent_pages.emergency_reviews, name="dpo-emergencies"),
    path(
        "dpo/emergencies/<int:access_id>/review/",
        consent_pages.emergency_review,
        name="dpo-emergency-review",
    ),
]
