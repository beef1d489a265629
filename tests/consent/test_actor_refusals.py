"""A practitioner refused for who they are (checks 1 and 2 of the rule: no affiliation at
the acting institution, a profession that may not act) gets the same 403 for a registered
patient or study, an unknown one and a hidden one: the answer does not tell which exist."""

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from consent import gate
from consent.gate import AccessDenied
from consent.models import Affiliation
from tests.conftest import XAVIER_ID, Cast, client_for
from tests.studies.conftest import dicom_copy, hide, ingest

from .conftest import actor, care, consent_for, study

pytestmark = pytest.mark.django_db

UNKNOWN_ID = "1999010100000"  # well formed, registered to nobody
REASON = "Unconscious patient in the emergency department, history needed."


def unaffiliated_alice():
    """Alice's token, bound to CHL, after her affiliation there ended."""
    client = client_for("alice", "CHL")
    Affiliation.objects.filter(practitioner__user__username="alice").update(end=timezone.now())
    return client


def nurse(cast):
    Cast._practitioner(cast, "nina", "Nina Nilles", "nurse", ["CHL"])
    return client_for("nina", "CHL")


def answers(responses) -> set[tuple[int, bytes]]:
    return {(r.status_code, r.content) for r in responses}


def denials(action: str) -> list[tuple[str, str, str]]:
    rows = AuditEvent.objects.filter(action=action).order_by("seq")
    return list(rows.values_list("outcome", "reason_code", "patient"))


@pytest.mark.parametrize("national_id", [XAVIER_ID, UNKNOWN_ID, "1234"])
def test_an_unaffiliated_practitioner_gets_one_answer_for_any_patient(cast, national_id):
    care(cast.alice, cast.xavier)
    response = unaffiliated_alice().get(f"/api/v1/patients/{national_id}/studies/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "NOT_AFFILIATED"
    expected = XAVIER_ID if national_id == XAVIER_ID else ""
    assert denials("patient.studies_list") == [("deny", "NOT_AFFILIATED", expected)]


def test_the_answers_for_a_registered_and_an_unknown_patient_are_identical(cast):
    client = unaffiliated_alice()
    responses = [
        client.get(f"/api/v1/patients/{value}/studies/") for value in (XAVIER_ID, UNKNOWN_ID)
    ]
    assert len(answers(responses)) == 1


def test_a_profession_that_may_not_declare_gets_one_answer_for_any_patient(cast):
    client = nurse(cast)
    responses = [
        client.post(
            f"/api/v1/patients/{value}/emergency-access/", {"reason": REASON}, format="json"
        )
        for value in (XAVIER_ID, UNKNOWN_ID)
    ]
    assert answers(responses) == {(responses[0].status_code, responses[0].content)}
    assert responses[0].status_code == 403
    assert responses[0].json()["error"]["code"] == "PROFESSION_NOT_ALLOWED"
    assert denials("emergency.declare") == [
        ("deny", "PROFESSION_NOT_ALLOWED", XAVIER_ID),
        ("deny", "PROFESSION_NOT_ALLOWED", ""),
    ]


def test_an_affiliated_practitioner_still_gets_a_404_for_an_unknown_patient(cast):
    response = client_for("alice", "CHL").get(f"/api/v1/patients/{UNKNOWN_ID}/studies/")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "NOT_FOUND")


@pytest.fixture
def studies(cast, tmp_path):
    """Two CHEM studies of Xavier's, the second hidden; Alice may see the first."""
    consent_for(cast.xavier)
    care(cast.alice, cast.xavier)
    seen = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240105"))
    hidden = ingest(dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1"))
    hide(cast.xavier, hidden.study_uid)
    return {"seen": seen.study_uid, "hidden": hidden.study_uid, "unknown": "1.2.3.4.5.6.7"}


@pytest.mark.parametrize("path", ["/dicomweb/studies/{}/metadata", "/dicomweb/studies/{}"])
def test_an_unaffiliated_practitioner_gets_one_answer_for_any_study(studies, path):
    client = unaffiliated_alice()
    responses = {name: client.get(path.format(uid)) for name, uid in studies.items()}
    assert len(answers(responses.values())) == 1
    assert responses["seen"].status_code == 403
    reasons = AuditEvent.objects.filter(outcome="deny").values_list("reason_code", flat=True)
    assert list(reasons) == ["NOT_AFFILIATED"] * 3


def test_a_profession_that_may_not_view_images_gets_one_answer_for_any_study(cast, studies):
    client = nurse(cast)
    responses = [client.get(f"/dicomweb/studies/{uid}/metadata") for uid in studies.values()]
    assert len(answers(responses)) == 1
    assert responses[0].status_code == 403
    assert responses[0].json()["error"]["code"] == "PROFESSION_NOT_ALLOWED"


def test_a_study_of_another_patient_than_the_one_named_gets_the_same_answer(cast):
    Affiliation.objects.filter(practitioner=cast.alice).update(end=timezone.now())
    who = actor(cast.alice.user, "CHL")
    denied = []
    for patient in (cast.xavier, cast.yvonne):  # the study is Xavier's
        with pytest.raises(AccessDenied) as info:
            gate.authorize(
                who,
                gate.VIEW_IMAGES,
                patient=patient,
                study=study("1.2.3.4", "CHEM", cast.xavier),
                audit_action="study.retrieve",
            )
        denied.append((info.value.status_code, info.value.code, info.value.message))
    assert denied[0] == denied[1]
    assert denied[0][:2] == (403, "NOT_AFFILIATED")


def test_a_hidden_study_stays_unknown_to_an_affiliated_practitioner(studies):
    response = client_for("alice", "CHL").get(f"/dicomweb/studies/{studies['hidden']}/metadata")
    assert response.status_code == 404


def searches(client, studies) -> list:
    """A search of everything, by patient, and by each study's UID (seen, hidden, unknown)."""
    params = [{}, {"PatientID": "CHEM-X1"}, {"PatientID": "NOBODY"}]
    params += [{"StudyInstanceUID": uid} for uid in studies.values()]
    return [client.get("/dicomweb/studies", query) for query in params]


def test_an_unaffiliated_practitioner_s_search_is_refused_before_any_study(studies):
    client = unaffiliated_alice()
    responses = searches(client, studies)
    assert len(answers(responses)) == 1  # whatever the search, whichever study exists
    assert responses[0].status_code == 403
    # The body a study of theirs, or an unknown one, gets at WADO-RS and the REST API.
    retrieved = client.get(f"/dicomweb/studies/{studies['unknown']}/metadata")
    listed = client.get(f"/api/v1/patients/{UNKNOWN_ID}/studies/")
    assert responses[0].json() == retrieved.json() == listed.json()
    assert responses[0].json()["error"]["code"] == "NOT_AFFILIATED"
    # One deny per search, about no patient and no study: none was decided.
    events = AuditEvent.objects.filter(action="study.search").order_by("seq")
    assert [(e.outcome, e.reason_code, e.patient, e.study_uid) for e in events] == [
        ("deny", "NOT_AFFILIATED", "", "")
    ] * len(responses)
    assert all("withheld" not in e.detail and "decided" not in e.detail for e in events)


def test_a_profession_that_may_not_list_studies_is_refused_any_search(cast, studies, settings):
    # A matrix in which nurses may not even list studies (settings, DESIGN.md rule 2).
    settings.PROFESSION_ACTIONS = {**settings.PROFESSION_ACTIONS, "nurse": []}
    care(cast.alice, cast.xavier)
    responses = searches(nurse(cast), studies)
    assert len(answers(responses)) == 1
    assert (responses[0].status_code, responses[0].json()["error"]["code"]) == (
        403,
        "PROFESSION_NOT_ALLOWED",
    )
    assert denials("study.search") == [("deny", "PROFESSION_NOT_ALLOWED", "")] * len(responses)


def test_a_nurse_still_searches_the_studies_she_may_list(cast, studies):
    client = nurse(cast)
    care(cast.alice, cast.xavier)  # not hers: her search is answered, with nothing in it
    response = client.get("/dicomweb/studies")
    assert response.status_code == 200
    assert denials("study.search") == [("permit", "", "")]
