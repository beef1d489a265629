"""GET patients/{national_id}/studies/ and GET me/studies/: gated lists with withheld reasons."""

import pytest

from audit.models import AuditEvent
from consent.models import Consent, Institution
from tests.conftest import XAVIER_ID, client_for

from .conftest import dicom_copy, hide, ingest, share_with_alice


@pytest.fixture
def xavier_studies(cast, tmp_path):
    """Xavier: a CHEM CT (2024-01-05), a CHEM MR he hid, an HRS CT made under his CHEM MRN."""
    ct = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240105"))
    mr = ingest(dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1", StudyDate="20240210"))
    hrs = ingest(
        dicom_copy(tmp_path, patient_id="CHEM-X1", issuer="CHEM", StudyDate="20240301"), "HRS"
    )
    hide(cast.xavier, mr.study_uid)
    return {"ct": ct, "mr": mr, "hrs": hrs}


def test_it_lists_what_the_practitioner_may_see_newest_first(cast, xavier_studies):
    share_with_alice(cast)
    response = client_for("alice", "CHL").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    assert response.status_code == 200
    body = response.json()
    assert [s["study_uid"] for s in body["studies"]] == [
        xavier_studies["hrs"].study_uid,
        xavier_studies["ct"].study_uid,
    ]
    first = body["studies"][0]
    assert first["institution"] == "HRS"
    assert first["date"] == "2024-03-01"
    assert first["modalities"] == ["CT"]
    assert (first["series_count"], first["instance_count"]) == (1, 1)
    assert body["withheld"] == []
    assert xavier_studies["mr"].study_uid not in response.content.decode()


def test_it_names_the_institutions_whose_studies_are_withheld(cast, xavier_studies):
    share_with_alice(cast)
    consent = Consent.objects.get()
    consent.all_members = False
    consent.save()
    # Shared with HRS only: Alice acts at CHL, which the consent no longer covers.
    consent.institutions.set(Institution.objects.filter(code="HRS"))
    response = client_for("alice", "CHL").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    body = response.json()
    assert body["studies"] == []
    assert body["withheld"] == [
        {"institution": "CHEM", "reason": "NO_CONSENT"},
        {"institution": "HRS", "reason": "NO_CONSENT"},
    ]


def test_it_audits_one_event_per_list(cast, xavier_studies):
    share_with_alice(cast)
    client_for("alice", "CHL").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    event = AuditEvent.objects.get(action="patient.studies_list")
    assert (event.outcome, event.patient) == ("permit", XAVIER_ID)


def test_it_refuses_a_practitioner_without_care_relationship(cast, xavier_studies):
    response = client_for("bob", "CHEM").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "NO_CARE_RELATIONSHIP"


def test_an_unknown_patient_is_a_404(cast):
    response = client_for("alice", "CHL").get("/api/v1/patients/1999010100000/studies/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_the_patient_sees_all_their_studies_with_the_hidden_flag(cast, xavier_studies):
    response = client_for("xavier").get("/api/v1/me/studies/")
    assert response.status_code == 200
    studies = {s["study_uid"]: s["hidden"] for s in response.json()["studies"]}
    assert studies == {
        xavier_studies["hrs"].study_uid: False,
        xavier_studies["mr"].study_uid: True,
        xavier_studies["ct"].study_uid: False,
    }


def test_a_practitioner_has_no_own_studies(cast):
    response = client_for("alice", "CHL").get("/api/v1/me/studies/")
    assert response.status_code == 403


def test_another_patient_sees_only_their_own(cast, xavier_studies, tmp_path):
    ingest(dicom_copy(tmp_path, patient_id="CHL-Y1"), "CHL")
    response = client_for("yvonne").get("/api/v1/me/studies/")
    assert len(response.json()["studies"]) == 1


def _queries(client, path: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


@pytest.mark.parametrize("path", [f"/api/v1/patients/{XAVIER_ID}/studies/", "/dicomweb/studies"])
def test_the_number_of_queries_does_not_grow_with_the_studies(cast, tmp_path, path):
    share_with_alice(cast)
    alice = client_for("alice", "CHL")
    ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    few = _queries(alice, path)
    for _ in range(5):
        ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))
        ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", issuer="CHEM"), "HRS")
    assert _queries(alice, path) == few
