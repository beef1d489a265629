"""Portal URLs, mounted at the site root; none collides with /api/, /dicomweb/ or /admin/."""

from django.shortcuts import render
from django.urls import path

from anim_gateway import portal

app_name = "portal"


@portal.portal_view("patient", "practitioner", "dpo")
def _coming(request):  # replaced page by page
    return render(request, "portal/error.html", {"message": "Coming soon."})


urlpatterns = [
    path("", portal.home, name="home"),
    path("login/", portal.login_view, name="login"),
    path("login/verify/", portal.totp_verify, name="totp-verify"),
    path("login/enrol/", portal.totp_enrol, name="totp-enrol"),
    path("login/institution/", portal.choose_institution, name="choose-institution"),
    path("logout/", portal.logout_view, name="logout"),
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
        ("dpo/audit/", "dpo-audit"),
        ("dpo/verify/", "dpo-verify"),
        ("dpo/emergencies/", "dpo-emergencies"),
    )
]
