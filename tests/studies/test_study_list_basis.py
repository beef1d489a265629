"""A practitioner's list of one patient's studies is audited with the basis (and basis ids)
its studies were permitted on, like every other gated read: the DPO's search by basis and
the patient's access log find an emergency (break-glass) list."""

import pytest

from audit.models import AuditEvent
from consent.models import EmergencyAccess, Institution, PatientIdentifier
from tests.conftest import XAVIER_ID, YVONNE_ID, client_for
from tests.consent.conftest import care, consent_for

from .conftest import dicom_copy, ingest

pytestmark = pytest.mark.django_db

REASON = "Unconscious patient in the emergency department, history needed."


@pytest.fixture
def chem_study(cast, tmp_path):
    """A CHEM study of Xavier's; Xavier has neither consented nor a care relationship."""
    return ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240105"))


def declare_emergency(national_id: str = XAVIER_ID) -> EmergencyAccess:
    response = client_for("alice", "CHL").post(
        f"/api/v1/patients/{national_id}/emergency-access/", {"reason": REASON}, format="json"
    )
    assert response.status_code == 201, response.content
    return EmergencyAccess.objects.get(pk=response.json()["id"])


def list_studies(national_id: str = XAVIER_ID) -> list[str]:
    response = client_for("alice", "CHL").get(f"/api/v1/patients/{national_id}/studies/")
    assert response.status_code == 200, response.content
    return [s["study_uid"] for s in response.json()["studies"]]


def list_events(patient: str = XAVIER_ID) -> list[AuditEvent]:
    rows = AuditEvent.objects.filter(action="patient.studies_list", patient=patient)
    return list(rows.order_by("seq"))


def test_an_emergency_list_is_audited_with_its_basis_and_access(chem_study):
    access = declare_emergency()
    assert list_studies() == [chem_study.study_uid]
    (event,) = list_events()
    assert (event.outcome, event.basis) == ("permit", "EMERGENCY")
    assert event.basis_ids["emergency_access"] == access.pk


def test_the_dpo_finds_an_emergency_list_by_its_basis(chem_study):
    declare_emergency()
    list_studies()
    response = client_for("dora").get(
        "/api/v1/audit/events/", {"basis": "EMERGENCY", "action": "patient.studies_list"}
    )
    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert (row["patient"], row["actor_username"]) == (XAVIER_ID, "alice")


def test_the_patient_reads_the_emergency_list_with_its_basis(chem_study):
    declare_emergency()
    list_studies()
    rows = client_for("xavier").get("/api/v1/me/access-log/").json()["results"]
    (row,) = [r for r in rows if r["action"] == "patient.studies_list"]
    assert (row["basis"], row["emergency"]) == ("EMERGENCY", True)


def test_an_emergency_list_of_a_patient_without_studies_has_its_basis(cast):
    access = declare_emergency()
    assert list_studies() == []
    (event,) = list_events()
    assert (event.basis, event.basis_ids["emergency_access"]) == ("EMERGENCY", access.pk)


def test_a_list_on_consent_names_the_consent_and_the_care_relationship(cast, chem_study):
    consent = consent_for(cast.xavier)
    link = care(cast.alice, cast.xavier)
    list_studies()
    (event,) = list_events()
    assert event.basis == "CONSENT"
    assert (event.basis_ids["consent"], event.basis_ids["care_relationship"]) == (
        consent.pk,
        link.pk,
    )


def test_studies_permitted_on_different_bases_get_an_event_each(cast, tmp_path, chem_study):
    consent_for(cast.xavier)
    care(cast.alice, cast.xavier)
    chl = Institution.objects.get(code="CHL")
    PatientIdentifier.objects.create(patient=cast.xavier, institution=chl, value="CHL-X1")
    local = ingest(dicom_copy(tmp_path, patient_id="CHL-X1", StudyDate="20240401"), "CHL")
    list_studies()
    events = list_events()
    assert {e.basis: e.detail["returned"] for e in events} == {
        "LOCAL": [local.study_uid],
        "CONSENT": [chem_study.study_uid],
    }
    # Written together, about the patient, each with the list's counts.
    assert len({e.request_id for e in events}) == 1
    assert all(e.detail["permitted"] == 2 for e in events)


def test_a_list_whose_studies_were_all_withheld_has_the_basis_of_the_list(cast, chem_study):
    link = care(cast.alice, cast.xavier)
    body = client_for("alice", "CHL").get(f"/api/v1/patients/{XAVIER_ID}/studies/").json()
    assert body["withheld"] == [{"institution": "CHEM", "reason": "NO_CONSENT"}]
    (event,) = list_events()
    assert (event.basis, event.basis_ids["care_relationship"]) == ("CARE_RELATIONSHIP", link.pk)


def test_the_patients_own_list_has_the_patient_basis(cast, chem_study):
    response = client_for("xavier").get("/api/v1/me/studies/")
    assert response.status_code == 200
    (event,) = list_events()
    assert (event.actor_username, event.basis) == ("xavier", "PATIENT")


def test_a_search_of_one_patient_has_its_basis(cast, chem_study):
    access = declare_emergency()
    response = client_for("alice", "CHL").get("/dicomweb/studies", {"PatientID": "CHEM-X1"})
    assert response.status_code == 200
    (event,) = AuditEvent.objects.filter(action="study.search")
    assert (event.patient, event.basis) == (XAVIER_ID, "EMERGENCY")
    assert event.basis_ids["emergency_access"] == access.pk


def test_another_patients_list_is_unaffected(cast, tmp_path):
    care(cast.alice, cast.yvonne)
    ingest(dicom_copy(tmp_path, patient_id="CHL-Y1", StudyDate="20240210"), "CHL")
    list_studies(YVONNE_ID)
    (event,) = list_events(YVONNE_ID)
    assert event.basis == "LOCAL"
