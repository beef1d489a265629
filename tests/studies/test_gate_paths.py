"""The practitioner's read path on PostgreSQL (the study, the instance or the QIDO-RS page
looked up inside the gate's own fact query: gate.authorize_found, and gate.authorize_search
on qido_sql.page_lookup windows) decides and audits as the look-up-then-authorize path does.

Each scenario runs through both paths: "slow" is the look-up then ``gate.authorize`` (the
only path on SQLite, forced on PostgreSQL by turning ``facts_query.folds_lookups`` off),
"fast" the folded look-up (PostgreSQL only). A spy checks that the path asked for is the
path taken, so that a test of the fast path cannot silently pass on the slow one.
"""

import json
from dataclasses import dataclass, field

import pytest

from audit.events import EVENT_FIELDS
from audit.models import AuditEvent
from consent import facts_query, gate
from consent.models import Consent
from studies import qido_sql
from tests.conftest import XAVIER_ID, client_for, require_postgres

from .conftest import dicom_copy, ingest, share_with_alice

API = "/api/v1"
REASON = "Unconscious patient in the emergency department, prior imaging needed."


@dataclass
class Path:
    name: str
    found_calls: list = field(default_factory=list)


@pytest.fixture(params=["slow", "fast"])
def path(request, monkeypatch) -> Path:
    """The read path the practitioner's requests take, with a record of fast-path calls."""
    chosen = Path(request.param)
    if chosen.name == "fast":
        require_postgres()
    else:
        monkeypatch.setattr(facts_query, "folds_lookups", lambda: False)
    chosen.found_calls = fast_path_calls(monkeypatch)
    return chosen


def fast_path_calls(monkeypatch) -> list[str]:
    """The names of the fast path's functions, as they are called from now on: the gate's
    folded look-up of one study, and the search's windows as folded look-ups."""
    calls = []
    for module, name in ((gate, "authorize_found"), (qido_sql, "page_lookup")):
        real = getattr(module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


@pytest.fixture
def studies(cast, tmp_path) -> dict:
    """A CHEM study of Xavier, and a CHEM study that could not be linked to any patient."""
    return {
        "xavier": ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240105")),
        "stray": ingest(dicom_copy(tmp_path, patient_id="CHEM-NOBODY", StudyDate="20240106")),
    }


# --- the scenarios: what happened before Dr Alice (CHL) asks for Xavier's CHEM study ------


def break_glass(cast) -> None:
    """No consent, no care relationship: Alice opens an emergency access (break the glass)."""
    response = client_for("alice", "CHL").post(
        f"{API}/patients/{XAVIER_ID}/emergency-access/", {"reason": REASON}, format="json"
    )
    assert response.status_code == 201, response.content


def closed_record(cast) -> None:
    share_with_alice(cast)
    response = client_for("xavier").post(f"{API}/me/record/close/")
    assert response.json()["status"] == "closed"


def exclusion(cast) -> None:
    share_with_alice(cast)
    response = client_for("xavier").post(
        f"{API}/me/exclusions/", {"practitioner": "alice"}, format="json"
    )
    assert response.status_code == 201, response.content


def revoked_consent(cast) -> None:
    share_with_alice(cast)
    consent = Consent.objects.get(patient=cast.xavier)
    response = client_for("xavier").post(f"{API}/me/consents/{consent.pk}/revoke/")
    assert response.json()["status"] == "revoked"


def unreconciled(cast) -> None:
    """Alice cares for Xavier with his consent; the study asked for is CHEM's stray one."""
    share_with_alice(cast)


SCENARIOS = {
    "break_glass": break_glass,
    "closed_record": closed_record,
    "exclusion": exclusion,
    "revoked_consent": revoked_consent,
    "unreconciled": unreconciled,
}

# Per scenario: the study asked for, the HTTP status, and the audit event's outcome,
# reason code, basis and whether it names Xavier.
SINGLE = {
    "break_glass": ("xavier", 200, "permit", "EMERGENCY", "EMERGENCY", True),
    "closed_record": ("xavier", 403, "deny", "RECORD_NOT_ACTIVE", "", True),
    "exclusion": ("xavier", 403, "deny", "EXCLUDED_BY_PATIENT", "", True),
    "revoked_consent": ("xavier", 403, "deny", "NO_CONSENT", "", True),
    "unreconciled": ("stray", 403, "deny", "NOT_SHARED", "", False),
}

# Per scenario: the study a QIDO-RS search asks for, the studies it returns, and its audit
# event's counts (withheld: institution code and reason).
SEARCH = {
    "break_glass": ("xavier", ["xavier"], 1, 1, []),
    "closed_record": ("xavier", [], 1, 0, [["CHEM", "RECORD_NOT_ACTIVE"]]),
    "exclusion": ("xavier", [], 1, 0, [["CHEM", "EXCLUDED_BY_PATIENT"]]),
    "revoked_consent": ("xavier", [], 1, 0, [["CHEM", "NO_CONSENT"]]),
    # CHEM's unlinked study is never in CHL's scope: not found, not even counted.
    "unreconciled": ("stray", [], 0, 0, []),
}


def instance_url(result) -> str:
    return (
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}"
    )


def metadata_url(result) -> str:
    return f"/dicomweb/studies/{result.study_uid}/metadata"


ENDPOINTS = {"instance": instance_url, "metadata": metadata_url}


def last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-seq").first()


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_study_or_instance_is_decided_and_audited_alike(cast, studies, path, scenario, endpoint):
    SCENARIOS[scenario](cast)
    which, status, outcome, reason, basis, names_xavier = SINGLE[scenario]
    target = studies[which]
    alice = client_for("alice", "CHL")  # issuing the token is audited too
    before = AuditEvent.objects.count()
    response = alice.get(
        ENDPOINTS[endpoint](target),
        HTTP_ACCEPT="application/dicom" if endpoint == "instance" else "*/*",
    )
    body = body_of(response)
    assert response.status_code == status, body[:300]
    assert path.found_calls == (["authorize_found"] if path.name == "fast" else [])
    if status == 200:
        if endpoint == "instance":
            assert body[128:132] == b"DICM"
        else:
            assert json.loads(body)[0]["0020000D"]["Value"] == [target.study_uid]
    else:
        assert b"DICM" not in body
        assert json.loads(body)["error"]["code"] == reason
    assert AuditEvent.objects.count() == before + 1  # one decision, one event
    event = last_event()
    action = "study.retrieve" if endpoint == "instance" else "study.metadata"
    assert (event.action, event.outcome, event.reason_code, event.basis) == (
        action,
        outcome,
        reason,
        basis,
    )
    assert (event.actor_username, event.acting_institution) == ("alice", "CHL")
    assert event.study_uid == target.study_uid
    assert event.patient == (XAVIER_ID if names_xavier else "")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_search_is_decided_and_audited_alike(cast, studies, path, scenario):
    SCENARIOS[scenario](cast)
    which, shown, in_scope, permitted, withheld = SEARCH[scenario]
    query = {"StudyInstanceUID": studies[which].study_uid}
    alice = client_for("alice", "CHL")
    before = AuditEvent.objects.count()
    response = alice.get("/dicomweb/studies", query)
    assert response.status_code == 200
    assert path.found_calls == (["page_lookup"] if path.name == "fast" else [])
    found = [s["0020000D"]["Value"][0] for s in json.loads(response.content or b"[]")]
    assert found == [studies[name].study_uid for name in shown]
    assert AuditEvent.objects.count() == before + 1
    event = last_event()
    assert (event.action, event.outcome, event.reason_code) == ("study.search", "permit", "")
    counts = [event.detail[k] for k in ("decided", "studies", "permitted", "withheld", "hidden")]
    assert counts == [in_scope, permitted, permitted, withheld, 0]
    assert event.detail["keys"] == ["StudyInstanceUID"]
    assert event.patient == (XAVIER_ID if in_scope else "")


# Everything an audit event says about the decision (not where it sits in the chain, nor
# which request it was).
DECISION_FIELDS = [f for f in EVENT_FIELDS if f not in ("client_address", "request_id")]


def answered(client, url: str, accept: str = "*/*") -> tuple[int, bytes, str | None, dict]:
    """The response's status, body and Warning header (more search results follow), and
    the audit event it wrote (there must be one)."""
    before = AuditEvent.objects.count()
    response = client.get(url, HTTP_ACCEPT=accept)
    body = body_of(response)
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.order_by("-seq").values(*DECISION_FIELDS).first()
    return response.status_code, body, response.get("Warning"), event


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_both_paths_give_the_same_answer_and_the_same_event(
    cast, studies, scenario, monkeypatch, tmp_path
):
    """One scenario, the same requests through the slow path then the fast path: the same
    status, the same body (bytes served or error) and the same audit event, field by field."""
    require_postgres()
    SCENARIOS[scenario](cast)
    target = studies[SINGLE[scenario][0]]
    # An older study of Xavier's too, so that a page of one can be followed by another.
    ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20231231"))
    alice = client_for("alice", "CHL")
    requests = [
        (instance_url(target), "application/dicom"),
        (metadata_url(target), "*/*"),
        (f"/dicomweb/studies?StudyInstanceUID={studies[SEARCH[scenario][0]].study_uid}", "*/*"),
        # Pages of one, cut from the studies Alice may see.
        *((f"/dicomweb/studies?limit=1&offset={offset}", "*/*") for offset in range(3)),
    ]
    calls = fast_path_calls(monkeypatch)
    with monkeypatch.context() as slow:
        slow.setattr(facts_query, "folds_lookups", lambda: False)
        slow_answers = [answered(alice, url, accept) for url, accept in requests]
    assert calls == []
    fast_answers = [answered(alice, url, accept) for url, accept in requests]
    assert calls[:2] == ["authorize_found", "authorize_found"]
    assert len(calls) >= 6  # a window or more per search
    assert set(calls[2:]) == {"page_lookup"}
    for (url, _), slow_answer, fast_answer in zip(
        requests, slow_answers, fast_answers, strict=True
    ):
        assert fast_answer == slow_answer, url
