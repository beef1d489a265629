"""Provisioning: accounts, practitioners, patients, identifiers; bad input and conflicts."""

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from consent.models import Account, Affiliation, Patient, PatientIdentifier, Practitioner
from tests.conftest import XAVIER_ID, client_for

pytestmark = pytest.mark.django_db

NEW_ID = "1983010100159"


def patient_body(**overrides) -> dict:
    body = {
        "national_id": NEW_ID,
        "family_name": "Weber",
        "given_name": "Anna",
        "birth_date": "1983-01-01",
        "sex": "F",
        "identifiers": [{"institution": "CHL", "value": "CHL-777"}],
    }
    return body | overrides


@pytest.fixture
def admin_api(cast, admin_user):
    return client_for("root")


@pytest.fixture
def chl_api(cast):
    return client_for("chl-pacs", "CHL")


def test_it_creates_a_patient_with_an_active_record(admin_api) -> None:
    response = admin_api.post("/api/v1/patients/", patient_body(), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["national_id"] == NEW_ID
    patient = Patient.objects.get(national_id=NEW_ID)
    assert patient.record.status == "active"
    assert patient.record.changes.get().changed_by == "root"
    assert AuditEvent.objects.filter(action="patient.create", patient=NEW_ID).exists()


def test_a_hospital_system_registers_patients_for_its_own_institution(chl_api) -> None:
    assert chl_api.post("/api/v1/patients/", patient_body(), format="json").status_code == 201


def test_a_hospital_system_cannot_register_identifiers_of_another_hospital(chl_api) -> None:
    body = patient_body(identifiers=[{"institution": "HRS", "value": "H1"}])
    response = chl_api.post("/api/v1/patients/", body, format="json")
    assert response.status_code == 403
    assert not Patient.objects.filter(national_id=NEW_ID).exists()


@pytest.mark.parametrize(
    ("national_id", "words"),
    [
        ("1983010100158", "Verhoeff"),
        ("1983010100169", "Luhn"),
        ("19830101001", "13 digits"),
        ("1983133100159", "birth date"),
    ],
)
def test_it_refuses_an_invalid_national_id_naming_the_field(admin_api, national_id, words) -> None:
    response = admin_api.post(
        "/api/v1/patients/", patient_body(national_id=national_id), format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID"
    assert error["message"].startswith("national_id:")
    assert words in error["message"]


def test_it_refuses_a_birth_date_that_contradicts_the_national_id(admin_api) -> None:
    response = admin_api.post(
        "/api/v1/patients/", patient_body(birth_date="1983-01-02"), format="json"
    )
    assert response.status_code == 400
    assert "birth_date" in response.json()["error"]["message"]


def test_it_refuses_an_unknown_institution_and_writes_nothing(admin_api) -> None:
    body = patient_body(identifiers=[{"institution": "NOPE", "value": "1"}])
    response = admin_api.post("/api/v1/patients/", body, format="json")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message == "identifiers.institution: unknown institution code(s) NOPE."
    assert not Patient.objects.filter(national_id=NEW_ID).exists()


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/accounts/", {"username": "x", "role": "system", "institution": "NOPE"}),
        (f"/api/v1/patients/{XAVIER_ID}/identifiers/", {"institution": "NOPE", "value": "1"}),
    ],
)
def test_an_unknown_institution_is_refused_naming_the_field_that_held_it(admin_api, url, body):
    response = admin_api.post(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("institution: unknown institution")


def test_it_answers_409_for_a_duplicate_patient(admin_api) -> None:
    body = patient_body(national_id=XAVIER_ID, birth_date="1980-05-17")
    response = admin_api.post("/api/v1/patients/", body, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"


def test_a_taken_identifier_leaves_no_half_written_patient(admin_api) -> None:
    body = patient_body(identifiers=[{"institution": "CHEM", "value": "CHEM-X1"}])
    assert admin_api.post("/api/v1/patients/", body, format="json").status_code == 409
    assert not Patient.objects.filter(national_id=NEW_ID).exists()
    # The registration's events rolled back with it; the refusal's is the one left.
    assert not AuditEvent.objects.filter(patient=NEW_ID, outcome="permit").exists()


def test_a_taken_patient_username_leaves_nothing_behind(admin_api) -> None:
    response = admin_api.post("/api/v1/patients/", patient_body(username="alice"), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "USERNAME_TAKEN"
    assert not Patient.objects.filter(national_id=NEW_ID).exists()


def test_it_adds_an_identifier_to_a_patient(chl_api) -> None:
    url = f"/api/v1/patients/{XAVIER_ID}/identifiers/"
    response = chl_api.post(url, {"institution": "CHL", "value": "CHL-X9"}, format="json")
    assert response.status_code == 201
    assert PatientIdentifier.objects.filter(value="CHL-X9", patient__national_id=XAVIER_ID).exists()


def test_adding_an_identifier_to_an_unknown_patient_is_404(chl_api) -> None:
    url = "/api/v1/patients/1983010100159/identifiers/"
    response = chl_api.post(url, {"institution": "CHL", "value": "X"}, format="json")
    assert response.status_code == 404


def test_it_creates_a_practitioner_with_affiliations(admin_api) -> None:
    body = {
        "username": "dave",
        "display_name": "Dr Dave Dumont",
        "profession": "radiologist",
        "license_number": "LU-D-1",
        "institutions": ["CHL", "HRS"],
    }
    assert admin_api.post("/api/v1/practitioners/", body, format="json").status_code == 201
    practitioner = Practitioner.objects.get(user__username="dave")
    assert {a.institution.code for a in Affiliation.objects.filter(practitioner=practitioner)} == {
        "CHL",
        "HRS",
    }
    again = admin_api.post("/api/v1/practitioners/", body, format="json")
    assert again.status_code == 409


def test_only_an_administrator_creates_accounts(admin_api, chl_api) -> None:
    body = {"username": "hrs-pacs", "role": "system", "institution": "HRS"}
    assert chl_api.post("/api/v1/accounts/", body, format="json").status_code == 403
    assert admin_api.post("/api/v1/accounts/", body, format="json").status_code == 201
    assert Account.objects.get(user__username="hrs-pacs").institution.code == "HRS"
    assert admin_api.post("/api/v1/accounts/", body, format="json").status_code == 409


def test_a_system_account_needs_an_institution(admin_api) -> None:
    response = admin_api.post(
        "/api/v1/accounts/", {"username": "x", "role": "system"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("institution:")
    assert not get_user_model().objects.filter(username="x").exists()


def test_a_practitioner_may_not_provision(cast) -> None:
    response = client_for("alice", "CHL").post("/api/v1/patients/", patient_body(), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
