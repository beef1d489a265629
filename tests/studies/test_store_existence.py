"""Storing into a study UID of another institution: the answer is the same whether the
study is hidden by its patient, visible to the sender, or withheld from it (F7 of the
security review), at STOW-RS and C-STORE alike; the audit keeps what was attempted."""

import json

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from audit.models import AuditEvent
from studies.models import Instance, Study
from tests.conftest import client_for

from .conftest import dicom_copy, ingest
from .test_dicomweb import alice, stow, xavier_studies  # noqa: F401 (fixtures)
from .test_listener import _associate, listener  # noqa: F401 (a fixture)

FOREIGN = "These UIDs cannot be stored for your institution."


@pytest.fixture
def chem_studies(cast, xavier_studies, tmp_path):  # noqa: F811
    """CHEM studies as Alice (CHL) meets them: the one Xavier hid (404 to her, as an
    unknown UID), one she may see, and one withheld from her (its patient unknown to the
    network: never shared, 403)."""
    unshared = ingest(dicom_copy(tmp_path, patient_id="CHEM-Z9"))
    return {
        "hidden": xavier_studies["hidden"],
        "visible": xavier_studies["shown"],
        "withheld": unshared,
    }


def _answer(response) -> tuple:
    """What a STOW-RS response tells its sender, less the instance's own UIDs."""
    body = json.loads(response.content)
    failed = body.get("00081198", {}).get("Value", [])
    for item in failed:
        item.pop("00081155")
        item.pop("00081150")
    return response.status_code, body.get("00081190"), failed, body.get("00081199")


def test_the_hidden_study_is_answered_as_an_unknown_one_by_wado(alice, chem_studies):  # noqa: F811
    """The premise: to Alice, the hidden study's UID reads as an unknown one."""
    hidden = alice.get(f"/dicomweb/studies/{chem_studies['hidden'].study_uid}/metadata")
    unknown = alice.get(f"/dicomweb/studies/{generate_uid()}/metadata")
    assert hidden.status_code == unknown.status_code == 404
    assert alice.get(f"/dicomweb/studies/{chem_studies['withheld'].study_uid}").status_code == 403


@pytest.mark.parametrize("sender", ["alice", "chl-pacs"])
@pytest.mark.parametrize("to_url", [False, True], ids=["studies", "studies-uid"])
def test_storing_into_a_hidden_study_is_refused_as_into_any_study_of_another_institution(
    cast,
    alice,  # noqa: F811
    chem_studies,
    tmp_path,
    sender,
    to_url,
):
    client = alice if sender == "alice" else client_for("chl-pacs", "CHL")
    instances = Instance.objects.count()
    answers = {}
    for name, study in chem_studies.items():
        # Xavier's own PatientID at CHEM, so nothing but the UID tells them apart.
        data = dicom_copy(tmp_path, study_uid=study.study_uid, patient_id="CHEM-X1")
        path = f"/dicomweb/studies/{study.study_uid}" if to_url else "/dicomweb/studies"
        answers[name] = _answer(stow(client, [data.read_bytes()], path))
    assert answers["hidden"] == answers["visible"] == answers["withheld"]
    status, retrieve_url, (failed,), stored = answers["hidden"]
    assert (status, retrieve_url, stored) == (409, {"vr": "UR"}, None)
    assert failed["00081197"]["Value"] == [0x0124]
    assert failed["00091001"]["Value"] == [FOREIGN]
    # Nothing was stored; the audit keeps each attempt, with the study it aimed at.
    assert Instance.objects.count() == instances
    events = AuditEvent.objects.filter(reason_code="UIDS_OF_ANOTHER_INSTITUTION")
    assert [e.study_uid for e in events.order_by("seq")] == [
        s.study_uid for s in chem_studies.values()
    ]
    assert {(e.outcome, e.acting_institution) for e in events} == {("deny", "CHL")}


def test_a_series_or_instance_of_the_hidden_study_gets_the_same_answer(
    alice,  # noqa: F811
    chem_studies,
    tmp_path,
):
    hidden, visible = chem_studies["hidden"], chem_studies["visible"]
    answers = []
    for study in (hidden, visible):
        series = dicom_copy(tmp_path, series_uid=study.series_uid, patient_id="CHEM-X1")
        instance = dicom_copy(tmp_path, SOPInstanceUID=study.sop_instance_uid)
        answers.append([_answer(stow(alice, [f.read_bytes()])) for f in (series, instance)])
    assert answers[0] == answers[1]
    assert {a[2][0]["00091001"]["Value"][0] for a in answers[0]} == {FOREIGN}


def test_an_unknown_uid_is_not_refused_but_stored(alice, chem_studies, tmp_path):  # noqa: F811
    """What F7 compares the refusal with: an unknown Study Instance UID is not refused at
    all; it makes a study of the sender's institution. So a sender who already holds a
    study's UID learns, from storing under it, that another institution holds it, hidden
    or not, and no refusal can be worded to hide that: the UID is the study's key in the
    network (docs/api-notes.md, STOW-RS)."""
    uid = generate_uid()
    data = dicom_copy(tmp_path, study_uid=uid, patient_id="CHEM-X1")
    response = stow(alice, [data.read_bytes()])
    assert response.status_code == 200
    assert Study.objects.get(study_uid=uid).institution.code == "CHL"


@pytest.mark.django_db(transaction=True)
def test_c_store_answers_the_hidden_and_a_visible_study_alike(listener, cast, tmp_path):  # noqa: F811
    from .conftest import hide

    hidden = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    visible = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    hide(cast.xavier, hidden.study_uid)
    assoc = _associate(listener, calling="CHL_PACS")
    statuses = [
        assoc.send_c_store(
            dcmread(dicom_copy(tmp_path, study_uid=study.study_uid, patient_id="CHEM-X1"))
        )
        for study in (hidden, visible)
    ]
    assoc.release()
    assert [(s.Status, s.ErrorComment) for s in statuses] == [(0x0124, FOREIGN)] * 2
    assert Instance.objects.count() == 2
