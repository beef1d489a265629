"""Every portal page that serves patient data is marked and so enforced by consent.gate."""

import pytest
from django.urls import URLPattern, get_resolver

# Route -> why it serves no patient data.
ALLOWLIST = {
    "": "redirects by role",
    "login/": "log-in form",
    "login/verify/": "second factor",
    "login/enrol/": "second factor enrolment",
    "login/institution/": "acting institution choice",
    "logout/": "log-out",
    "account/password/": "the user's own password",
    "me/acting-for/": "stores whom the patient acts for; the gate checks it on every page",
    "patients/": "search form only; the next page goes through the gate",
    "patients/<str:national_id>/emergency/": "empty form; the declaration is gated",
    "dpo/audit/": "audit app (may not import consent): DPO only, audited as audit.search",
    "dpo/verify/": "hash chain verification; no patient data",
}


def portal_routes():
    """(route, view) of every page under the portal's include, mounted at the root."""
    [portal] = [e for e in get_resolver().url_patterns if getattr(e, "namespace", "") == "portal"]
    prefix = str(portal.pattern)
    for entry in portal.url_patterns:
        assert isinstance(entry, URLPattern), "the portal has no nested includes"
        yield prefix + str(entry.pattern), entry.callback


ROUTES = list(portal_routes())


def test_the_walk_finds_the_portal_pages():
    routes = {route for route, _ in ROUTES}
    assert {"me/consents/", "patients/<str:national_id>/", "dpo/emergencies/"} <= routes


@pytest.mark.parametrize(("route", "callback"), ROUTES, ids=[r or "/" for r, _ in ROUTES])
def test_every_portal_page_is_gated_or_allowlisted(route, callback):
    marked = getattr(callback, "serves_patient_data", False)
    assert marked != (route in ALLOWLIST), f"{route}: mark it @serves_patient_data or allowlist it"


@pytest.mark.parametrize("prefix", ["api/", "dicomweb/", "admin/", "static/"])
def test_no_portal_page_collides_with_another_prefix(prefix):
    assert not [route for route, _ in ROUTES if route.startswith(prefix)]
