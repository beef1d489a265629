"""A search returning several patients' studies is audited for each of them: the patient's
access log and the DPO's search by patient show the search that found their studies."""

import json

import pytest

from audit import services
from audit.errors import AuditUnavailable
from audit.models import AuditEvent
from consent.models import EmergencyAccess
from tests.conftest import XAVIER_ID, YVONNE_ID, client_for
from tests.consent.conftest import care, consent_for

from .conftest import dicom_copy, ingest

pytestmark = pytest.mark.django_db

ALL_DATES = "19000101-20991231"


@pytest.fixture
def unshared(cast, tmp_path):
    """Xavier's two CHEM studies and Yvonne's CHL one; Alice (CHL) cares for both, and may
    see Yvonne's study; Xavier has not consented to sharing (yet)."""
    care(cast.alice, cast.xavier)
    care(cast.alice, cast.yvonne)
    xavier = [
        ingest(dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1", StudyDate=d)).study_uid
        for d in ("20240310", "20240110")
    ]
    yvonne = ingest(dicom_copy(tmp_path, patient_id="CHL-Y1", StudyDate="20240210"), "CHL")
    return {XAVIER_ID: xavier, YVONNE_ID: [yvonne.study_uid]}


@pytest.fixture
def two_patients(cast, unshared):
    """As ``unshared``, and Xavier consents: Alice may see all three studies."""
    consent_for(cast.xavier)
    return unshared


def search(client, **params) -> list[str]:
    response = client.get("/dicomweb/studies", params)
    assert response.status_code == 200, response.content
    return [s["0020000D"]["Value"][0] for s in json.loads(response.content or b"[]")]


def search_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="study.search").order_by("seq"))


def test_each_patient_whose_studies_were_returned_gets_an_event(two_patients):
    found = search(client_for("alice", "CHL"), StudyDate=ALL_DATES)
    summary, *per_patient = search_events()
    assert (summary.patient, summary.detail["permitted"]) == ("", 3)
    assert {e.patient: e.detail["returned"] for e in per_patient} == two_patients
    assert sorted(found) == sorted(uid for uids in two_patients.values() for uid in uids)
    for event in per_patient:
        assert (event.outcome, event.actor_username, event.acting_institution) == (
            "permit",
            "alice",
            "CHL",
        )
        assert event.request_id == summary.request_id
    bases = {e.patient: e.basis for e in per_patient}
    assert bases == {XAVIER_ID: "CONSENT", YVONNE_ID: "LOCAL"}


def test_only_the_patients_on_the_page_get_an_event(two_patients):
    found = search(client_for("alice", "CHL"), StudyDate=ALL_DATES, limit=1, offset=1)
    assert found == [two_patients[YVONNE_ID][0]]
    _summary, *per_patient = search_events()
    assert [(e.patient, e.detail["returned"]) for e in per_patient] == [
        (YVONNE_ID, two_patients[YVONNE_ID])
    ]


def test_a_patient_whose_studies_were_withheld_gets_none(unshared):
    assert search(client_for("alice", "CHL"), StudyDate=ALL_DATES) == unshared[YVONNE_ID]
    # All the studies decided were not one patient's: a summary, and Yvonne's event.
    summary, *per_patient = search_events()
    assert summary.patient == ""
    assert summary.detail["withheld"] == [["CHEM", "NO_CONSENT"]]
    assert [e.patient for e in per_patient] == [YVONNE_ID]


def test_a_search_of_one_patient_is_one_event_about_them(two_patients):
    search(client_for("alice", "CHL"), PatientID="CHEM-X1")
    (event,) = search_events()
    assert event.patient == XAVIER_ID


def test_the_patient_reads_the_search_in_their_access_log(two_patients):
    search(client_for("alice", "CHL"), StudyDate=ALL_DATES)
    rows = client_for("yvonne").get("/api/v1/me/access-log/").json()["results"]
    searches = [row for row in rows if row["action"] == "study.search"]
    assert len(searches) == 1
    assert searches[0]["who"]["name"] == "Dr Alice Arend"


def test_the_dpo_finds_the_search_by_patient(two_patients):
    search(client_for("alice", "CHL"), StudyDate=ALL_DATES)
    response = client_for("dora").get("/api/v1/audit/events/", {"patient": XAVIER_ID})
    actions = [row["action"] for row in response.json()["results"]]
    assert actions.count("study.search") == 1


def test_a_study_seen_under_an_emergency_is_flagged_on_its_patients_event(unshared):
    response = client_for("alice", "CHL").post(
        f"/api/v1/patients/{XAVIER_ID}/emergency-access/",
        {"reason": "Unconscious patient in the emergency department, history needed."},
        format="json",
    )
    assert response.status_code == 201
    search(client_for("alice", "CHL"), StudyDate=ALL_DATES)
    event = AuditEvent.objects.filter(action="study.search", patient=XAVIER_ID).get()
    access = EmergencyAccess.objects.get()
    assert (event.basis, event.basis_ids["emergency_access"]) == ("EMERGENCY", access.pk)


def test_when_the_events_cannot_be_written_the_search_is_refused(monkeypatch, two_patients):
    def unavailable(events):
        raise AuditUnavailable("down")

    monkeypatch.setattr(services, "append_many", unavailable)
    monkeypatch.setattr("consent.auditing.append_many", unavailable)
    response = client_for("alice", "CHL").get("/dicomweb/studies", {"StudyDate": ALL_DATES})
    assert response.status_code == 503
    assert search_events() == []


def test_a_failure_to_name_the_patients_is_a_deny(monkeypatch, two_patients):
    from consent import gate

    def broken(*args, **kwargs):
        raise RuntimeError("the national identifiers could not be read")

    monkeypatch.setattr(gate, "_per_patient_events", broken)
    response = client_for("alice", "CHL").get("/dicomweb/studies", {"StudyDate": ALL_DATES})
    assert response.status_code == 403
    (event,) = search_events()
    assert (event.outcome, event.reason_code, event.patient) == ("error", "GATE_ERROR", "")


def test_a_patients_studies_permitted_on_different_bases_get_an_event_each(
    cast, tmp_path, two_patients
):
    from consent.models import Institution, PatientIdentifier

    chl = Institution.objects.get(code="CHL")
    PatientIdentifier.objects.create(patient=cast.xavier, institution=chl, value="CHL-X1")
    local = ingest(dicom_copy(tmp_path, patient_id="CHL-X1", StudyDate="20240401"), "CHL")
    search(client_for("alice", "CHL"), StudyDate=ALL_DATES)
    xavier = AuditEvent.objects.filter(action="study.search", patient=XAVIER_ID)
    by_basis = {e.basis: (e.detail["returned"], e.basis_ids) for e in xavier}
    assert by_basis["LOCAL"][0] == [local.study_uid]
    assert by_basis["CONSENT"][0] == two_patients[XAVIER_ID]
    assert by_basis["CONSENT"][1]["consent"] == cast.xavier.consents.get().pk
    assert "consent" not in by_basis["LOCAL"][1]
