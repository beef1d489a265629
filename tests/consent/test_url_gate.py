"""Every view under /api/v1/ and /dicomweb/ serving patient data goes through the gate.

Views declare it with ``consent.access.serves_patient_data``, which also enforces it at run
time: a marked view that answers 2xx without consulting the gate becomes a 500. A view
that serves no patient data must be on the explicit allowlist below, with the reason.
"""

import pytest
from django.http import JsonResponse
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver

from consent import gate
from consent.access import serves_patient_data

GUARDED_PREFIXES = ("api/v1/", "dicomweb/")

# Route -> why it serves no patient data (or is authorised elsewhere, on purpose).
ALLOWLIST = {
    "api/v1/accounts/": "DPO and system accounts; administrators only; no patient data",
    "api/v1/practitioners/": "practitioner provisioning; no patient data",
    "api/v1/patients/": (
        "provisioning a new patient: the caller supplies the data it gets back; "
        "administrator or the hospital's own system (services.provisioning), audited"
    ),
    "api/v1/patients/<str:national_id>/identifiers/": (
        "provisioning a local identifier (administrator or the hospital's own system), audited"
    ),
    "api/v1/audit/events/": "audit data for the DPO only (audit.permissions.IsDpo), audited",
    "api/v1/audit/verify/": "chain integrity, no patient data; DPO only, audited",
    "api/v1/audit/export/": "audit data for the DPO only (audit.permissions.IsDpo), audited",
}


def walk(patterns, prefix: str = ""):
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route, entry.callback


def marked(callback) -> bool:
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    return bool(
        getattr(callback, "serves_patient_data", False)
        or getattr(view_class, "serves_patient_data", False)
    )


ROUTES = [
    (route, callback)
    for route, callback in walk(get_resolver().url_patterns)
    if route.startswith(GUARDED_PREFIXES)
]


def test_the_walk_finds_the_consent_routes():
    routes = {route for route, _ in ROUTES}
    assert "api/v1/me/consents/" in routes
    assert "api/v1/patients/<str:national_id>/emergency-access/" in routes


@pytest.mark.parametrize(("route", "callback"), ROUTES, ids=[r for r, _ in ROUTES])
def test_every_patient_data_view_is_gate_protected_or_allowlisted(route, callback):
    assert marked(callback) or route in ALLOWLIST, (
        f"{route} is neither marked @serves_patient_data (and gated) nor on the allowlist"
    )


def test_allowlisted_views_are_not_also_marked():
    by_route = dict(ROUTES)
    for route in ALLOWLIST:
        assert route in by_route, f"allowlisted route {route} no longer exists"
        assert not marked(by_route[route])


def test_a_marked_view_that_skips_the_gate_fails_closed():
    @serves_patient_data
    def leaky(request):
        return JsonResponse({"secret": "images"})

    response = leaky(RequestFactory().get("/"))
    assert response.status_code == 500
    assert b"GATE_NOT_CONSULTED" in response.content


def test_a_marked_view_that_consults_the_gate_answers(monkeypatch):
    @serves_patient_data
    def gated(request):
        gate._mark_consulted()
        return JsonResponse({"ok": True})

    assert gated(RequestFactory().get("/")).status_code == 200


def test_a_marked_subclass_of_a_marked_view_is_checked_once():
    from django.views import View

    @serves_patient_data
    class Base(View):
        def get(self, request):
            gate._mark_consulted()
            return JsonResponse({"ok": True})

    @serves_patient_data
    class Child(Base):
        pass

    assert Child.as_view()(RequestFactory().get("/")).status_code == 200
