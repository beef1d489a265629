"""The patient's access log: through the gate, newest first, never someone else's events."""

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from audit.actions import describe, describe_for_patient
from audit.events import Event
from audit.models import AuditEvent
from audit.services import append
from tests.conftest import XAVIER_ID, YVONNE_ID, client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/me/access-log/"


def event(**fields) -> AuditEvent:
    base = {
        "action": "study.retrieve",
        "outcome": "permit",
        "basis": "CONSENT",
        "actor_role": "practitioner",
        "actor_username": "bob",
        "actor_display": "Dr Bob Becker",
        "actor_profession": "physician",
        "acting_institution": "CHEM",
        "patient": XAVIER_ID,
    }
    return append(Event(**(base | fields)))


@pytest.fixture
def history(cast) -> dict[str, AuditEvent]:
    return {
        "retrieve": event(),
        "denied": event(outcome="deny", reason_code="NO_CONSENT", basis=""),
        "emergency": event(action="emergency.declare", basis="EMERGENCY"),
        "other": event(patient=YVONNE_ID),
    }


def seqs(response) -> list[int]:
    return [row["seq"] for row in response.json()["results"]]


def test_it_shows_the_patient_who_did_what_newest_first(history) -> None:
    response = client_for("xavier").get(URL)
    assert response.status_code == 200
    rows = response.json()["results"]
    assert seqs(response) == sorted(seqs(response), reverse=True)
    by_seq = {row["seq"]: row for row in rows}
    emergency = by_seq[history["emergency"].seq]
    assert emergency["emergency"] is True
    assert emergency["who"] == {
        "name": "Dr Bob Becker",
        "role": "practitioner",
        "profession": "physician",
        "institution": "CHEM",
    }
    assert by_seq[history["retrieve"].seq]["what"] == describe_for_patient("study.retrieve")
    assert by_seq[history["retrieve"].seq]["what"] != describe("study.retrieve")
    assert by_seq[history["denied"].seq]["outcome"] == "deny"
    assert by_seq[history["retrieve"].seq]["basis"] == "CONSENT"
    assert history["other"].seq not in by_seq


def test_reading_the_log_is_decided_by_the_gate_and_audited(history) -> None:
    client_for("xavier").get(URL)
    row = AuditEvent.objects.order_by("-seq").first()
    assert (row.action, row.outcome, row.patient) == ("audit.access_log", "permit", XAVIER_ID)


def test_it_refuses_anyone_but_the_patient(history) -> None:
    assert client_for("dora").get(URL).status_code == 403
    refused = AuditEvent.objects.order_by("-seq").first()
    assert (refused.action, refused.outcome) == ("audit.access_log", "deny")
    assert client_for("alice", "CHL").get(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401


def test_it_pages_by_keyset(history) -> None:
    client = client_for("xavier")
    first = client.get(URL, {"page_size": 2})
    assert len(seqs(first)) == 2
    second = client.get(first.json()["next"])
    assert max(seqs(second)) < min(seqs(first))


def test_it_refuses_a_bad_cursor_naming_it(history) -> None:
    response = client_for("xavier").get(URL, {"cursor": "x"})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["message"]


def test_a_legal_representative_reads_the_represented_patients_log(cast, history) -> None:
    client = client_for("yvonne")
    assert client.get(URL, HTTP_X_ACT_FOR=XAVIER_ID).status_code == 404
    assign_perm("consent.act_for_patient", cast.yvonne.user, cast.xavier)
    response = client.get(URL, HTTP_X_ACT_FOR=XAVIER_ID)
    assert response.status_code == 200
    assert history["emergency"].seq in seqs(response)
    assert history["other"].seq not in seqs(response)
    row = AuditEvent.objects.order_by("-seq").first()
    assert (row.actor_username, row.on_behalf_of) == ("yvonne", XAVIER_ID)
