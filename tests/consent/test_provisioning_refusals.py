"""Every refused provisioning request is one audit event, a deny with its reason code."""

import json

import pytest

from audit.models import AuditEvent
from consent.models import Patient
from tests.conftest import XAVIER_ID, client_for

from .test_provisioning import NEW_ID, patient_body

pytestmark = pytest.mark.django_db

INSTITUTION = {"root": None, "dora": None, "xavier": None, "chl-pacs": "CHL", "alice": "CHL"}
# Local identifiers the requests below send or collide with: never in an event's message.
LOCAL_IDS = ("CHEM-X1", "CHL-Y1", "CHL-777")


def practitioner_body(**overrides) -> dict:
    body = {
        "username": "dave",
        "display_name": "Dr Dave Dumont",
        "profession": "radiologist",
        "license_number": "LU-D-1",
        "institutions": ["CHL"],
    }
    return body | overrides


def identifiers_of(national_id: str) -> str:
    return f"/api/v1/patients/{national_id}/identifiers/"


REFUSALS = {
    # name: (caller, url, body, status, reason code, audit action, the event's patient)
    "account by a system": (
        "chl-pacs",
        "/api/v1/accounts/",
        {"username": "hrs-pacs", "role": "system", "institution": "HRS"},
        403,
        "FORBIDDEN",
        "account.create",
        "",
    ),
    "account username taken": (
        "root",
        "/api/v1/accounts/",
        {"username": "alice", "role": "dpo"},
        409,
        "USERNAME_TAKEN",
        "account.create",
        "",
    ),
    "system account without institution": (
        "root",
        "/api/v1/accounts/",
        {"username": "x", "role": "system"},
        400,
        "INVALID",
        "account.create",
        "",
    ),
    "account at an unknown institution": (
        "root",
        "/api/v1/accounts/",
        {"username": "x", "role": "system", "institution": "NOPE"},
        400,
        "INVALID",
        "account.create",
        "",
    ),
    "practitioner of another hospital": (
        "chl-pacs",
        "/api/v1/practitioners/",
        practitioner_body(institutions=["HRS"]),
        403,
        "FORBIDDEN",
        "practitioner.create",
        "",
    ),
    "practitioner by the DPO": (
        "dora",
        "/api/v1/practitioners/",
        practitioner_body(),
        403,
        "FORBIDDEN",
        "practitioner.create",
        "",
    ),
    "practitioner license taken": (
        "root",
        "/api/v1/practitioners/",
        practitioner_body(license_number="LIC-alice"),
        409,
        "CONFLICT",
        "practitioner.create",
        "",
    ),
    "practitioner username taken": (
        "root",
        "/api/v1/practitioners/",
        practitioner_body(username="bob"),
        409,
        "USERNAME_TAKEN",
        "practitioner.create",
        "",
    ),
    "practitioner at an unknown institution": (
        "root",
        "/api/v1/practitioners/",
        practitioner_body(institutions=["NOPE"]),
        400,
        "INVALID",
        "practitioner.create",
        "",
    ),
    "patient registered already": (
        "root",
        "/api/v1/patients/",
        patient_body(national_id=XAVIER_ID, birth_date="1980-05-17"),
        409,
        "CONFLICT",
        "patient.create",
        XAVIER_ID,
    ),
    "patient by a system with another hospital's identifier": (
        "chl-pacs",
        "/api/v1/patients/",
        patient_body(identifiers=[{"institution": "HRS", "value": "H1"}]),
        403,
        "FORBIDDEN",
        "patient.create",
        NEW_ID,
    ),
    "patient by a practitioner": (
        "alice",
        "/api/v1/patients/",
        patient_body(),
        403,
        "FORBIDDEN",
        "patient.create",
        NEW_ID,
    ),
    "patient by a patient": (
        "xavier",
        "/api/v1/patients/",
        patient_body(),
        403,
        "FORBIDDEN",
        "patient.create",
        NEW_ID,
    ),
    "patient with an identifier taken": (
        "root",
        "/api/v1/patients/",
        patient_body(identifiers=[{"institution": "CHEM", "value": "CHEM-X1"}]),
        409,
        "CONFLICT",
        "patient.create",
        NEW_ID,
    ),
    "patient username taken": (
        "root",
        "/api/v1/patients/",
        patient_body(username="alice"),
        409,
        "USERNAME_TAKEN",
        "patient.create",
        NEW_ID,
    ),
    "patient birth date contradicting the national_id": (
        "root",
        "/api/v1/patients/",
        patient_body(birth_date="1983-01-02"),
        400,
        "INVALID",
        "patient.create",
        NEW_ID,
    ),
    "patient identifier at an unknown institution": (
        "root",
        "/api/v1/patients/",
        patient_body(identifiers=[{"institution": "NOPE", "value": "1"}]),
        400,
        "INVALID",
        "patient.create",
        NEW_ID,
    ),
    "identifier of an unknown patient": (
        "chl-pacs",
        identifiers_of(NEW_ID),
        {"institution": "CHL", "value": "CHL-777"},
        404,
        "NOT_FOUND",
        "patient.identifier_add",
        "",
    ),
    "identifier of another hospital, unknown patient": (
        "chl-pacs",
        identifiers_of(NEW_ID),
        {"institution": "CHEM", "value": "CHL-777"},
        403,
        "FORBIDDEN",
        "patient.identifier_add",
        "",
    ),
    "identifier of another hospital": (
        "chl-pacs",
        identifiers_of(XAVIER_ID),
        {"institution": "CHEM", "value": "CHL-777"},
        403,
        "FORBIDDEN",
        "patient.identifier_add",
        XAVIER_ID,
    ),
    "identifier taken": (
        "chl-pacs",
        identifiers_of(XAVIER_ID),
        {"institution": "CHL", "value": "CHL-Y1"},
        409,
        "CONFLICT",
        "patient.identifier_add",
        XAVIER_ID,
    ),
    "identifier at an unknown institution": (
        "root",
        identifiers_of(XAVIER_ID),
        {"institution": "NOPE", "value": "CHL-777"},
        400,
        "INVALID",
        "patient.identifier_add",
        XAVIER_ID,
    ),
}


@pytest.mark.parametrize(
    ("caller", "url", "body", "status", "code", "action", "patient"),
    REFUSALS.values(),
    ids=REFUSALS.keys(),
)
def test_a_refusal_is_one_deny_event_with_its_reason(
    cast, admin_user, caller, url, body, status, code, action, patient
):
    client = client_for(caller, INSTITUTION[caller])
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    response = client.post(url, body, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    event = AuditEvent.objects.filter(seq__gt=last).get()  # exactly one
    assert (event.action, event.outcome, event.reason_code) == (action, "deny", code)
    assert (event.patient, event.actor_username) == (patient, caller)
    # A national identifier is in the patient field only, as for a registration; a hospital's
    # patient number nowhere.
    words = event.message + json.dumps(event.detail)
    assert not any(number in words for number in (NEW_ID, XAVIER_ID, *LOCAL_IDS))
    assert event.message


def test_the_patient_sees_a_refused_registration_in_their_access_log(cast, admin_user):
    body = patient_body(national_id=XAVIER_ID, birth_date="1980-05-17")
    assert client_for("root").post("/api/v1/patients/", body, format="json").status_code == 409
    log = client_for("xavier").get("/api/v1/me/access-log/").json()["results"]
    registrations = [row["outcome"] for row in log if row["action"] == "patient.create"]
    assert sorted(registrations) == ["deny", "permit"]


def _audit_down(monkeypatch) -> None:
    from audit.errors import AuditUnavailable

    def unavailable(event):
        raise AuditUnavailable("the audit table cannot be written")

    monkeypatch.setattr("consent.auditing.append", unavailable)


def test_a_refusal_the_log_cannot_record_is_a_503(cast, admin_user, monkeypatch):
    client = client_for("root")
    body = patient_body(national_id=XAVIER_ID, birth_date="1980-05-17")
    count = AuditEvent.objects.count()
    _audit_down(monkeypatch)
    response = client.post("/api/v1/patients/", body, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AUDIT_UNAVAILABLE"
    assert AuditEvent.objects.count() == count


def test_a_registration_the_log_cannot_record_is_a_503_and_registers_nothing(
    cast, admin_user, monkeypatch
):
    client = client_for("root")
    _audit_down(monkeypatch)
    response = client.post("/api/v1/patients/", patient_body(), format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AUDIT_UNAVAILABLE"
    assert not Patient.objects.filter(national_id=NEW_ID).exists()


RACES = [name for name, refusal in REFUSALS.items() if refusal[3] == 409]


@pytest.mark.parametrize("name", RACES)
def test_a_duplicate_registered_by_a_concurrent_request_is_the_same_409(
    cast, admin_user, monkeypatch, name
):
    """Two requests registering the same value at once both pass the check before either
    inserts: the later insert breaks the unique constraint, and its answer must be the
    check's 409 (audited), not a 500. Simulated by a check that finds nothing."""
    from django.db.models import QuerySet

    caller, url, body, status, code, action, _patient = REFUSALS[name]
    client = client_for(caller, INSTITUTION[caller])
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    monkeypatch.setattr(QuerySet, "exists", lambda self: False)
    response = client.post(url, body, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    # Who the event is about is the refusal test's (every check here finds nothing).
    events = AuditEvent.objects.filter(seq__gt=last)
    assert [(e.action, e.outcome, e.reason_code) for e in events] == [(action, "deny", code)]
