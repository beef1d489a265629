"""Portal URLs, mounted at the site root; none collides with /api/, /dicomweb/ or /admin/."""

from django.shortcuts import render
from django.urls import path

from anim_gateway import portal
from anim_gateway.portal import portal_view
from audit import pages as audit_pages

app_name = "portal"

# The audit app may not import consent (import-linter): its pages get request.actor here.
dpo = portal_view("dpo")


@portal_view("patient", "practitioner", "dpo")
def _coming(request):  # replaced page by page
    return render(request, "portal/error.html", {"message": "Coming soon."})


urlpatterns = [
    path("", portal.home, name="home"),
    path("login/", portal.login_view, name="login"),
    path("login/verify/", portal.totp_verify, name="totp-verify"),
    path("login/enrol/", portal.totp_enrol, name="totp-enrol"),
    path("login/institution/", portal.choose_institution, name="choose-institution"),
    path("logout/", portal.logout_view, name="logout"),
    path("dpo/audit/", dpo(audit_pages.audit_search), name="dpo-audit"),
    path("dpo/verify/", dpo(audit_pages.audit_verify), name="dpo-verify"),
] + [
    path(route, _coming, name=name)
    for route, name in (
        ("me/", "me"),
        ("me/consents/", "me-consents"),
        ("me/who-can-see/", "me-who-can-see"),
        ("me/studies/", "me-studies"),
        ("me/blocked/", "me-exclusions"),
        ("me/access-log/", "me-access-log"),
        ("patients/", "patient-search"),
        ("dpo/emergencies/", "dpo-emergencies"),
    )
]
