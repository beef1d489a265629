"""X-Act-For: one's own national identifier however written is one's own record; an unknown
one is refused and audited as the request it came with."""

import pytest

from audit.models import AuditEvent
from tests.conftest import XAVIER_ID, client_for

pytestmark = pytest.mark.django_db

API = "/api/v1"
UNKNOWN = "1999010100000"
BODIES = {
    ("post", "/me/consents/"): {"institutions": None},
    ("post", "/me/exclusions/"): {"practitioner": "alice"},
}


def written(number: str, how: str) -> str:
    """The identifier as a person may write it: 1980.05.17.001-66, 1980 0517 00166..."""
    if how == "dots":
        return f"{number[:4]}.{number[4:6]}.{number[6:8]}.{number[8:11]}-{number[11:]}"
    return f"{number[:4]} {number[4:8]} {number[8:]}"


@pytest.mark.parametrize("how", ["dots", "spaces"])
def test_ones_own_identifier_written_otherwise_is_ones_own_record(cast, how):
    response = client_for("xavier").get(f"{API}/me/record/", HTTP_X_ACT_FOR=written(XAVIER_ID, how))
    assert response.status_code == 200, response.content
    assert response.json()["national_id"] == XAVIER_ID
    event = AuditEvent.objects.filter(action="record.view").get()
    assert (event.outcome, event.patient, event.on_behalf_of) == ("permit", XAVIER_ID, "")


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("get", "/me/record/", "record.view"),
        ("get", "/me/consents/", "consent.list"),
        ("post", "/me/consents/", "consent.grant"),
        ("post", "/me/exclusions/", "exclusion.add"),  # a valid body: see BODIES
        ("get", "/me/studies/", "patient.studies_list"),
        ("get", "/me/access-log/", "audit.access_log"),
        ("post", "/me/record/close/", "record.close"),
    ],
)
def test_an_unknown_patient_in_x_act_for_is_audited_as_the_request(cast, method, path, action):
    client = client_for("yvonne")
    body = BODIES.get((method, path), {})
    response = getattr(client, method)(f"{API}{path}", body, format="json", HTTP_X_ACT_FOR=UNKNOWN)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "NOT_FOUND")
    (event,) = AuditEvent.objects.filter(outcome="deny")
    assert (event.action, event.reason_code, event.detail) == (
        action,
        "NOT_FOUND",
        {"act_for": "unknown"},
    )
