"""The DPO's audit API and the patient's access log: filters, keyset pages, 401/403/400."""

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent

from .conftest import XAVIER, execute

pytestmark = pytest.mark.django_db

YVONNE = "1992110300270"


@dataclass(frozen=True)
class FakeActor:
    """What the project's authentication puts in request.auth (consent.actors.Actor)."""

    role: str
    username: str = ""
    display_name: str = ""
    patient_national_id: str = ""

    def audit_fields(self) -> dict:
        return {"actor_role": self.role, "actor_username": self.username}


def client_as(role: str, **fields: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=None, token=FakeActor(role=role, **fields))
    return client


@pytest.fixture
def dpo() -> APIClient:
    return client_as("dpo", username="dora")


@pytest.fixture
def mixed_log(append_events):
    append_events(3)  # alice at CHL, permit, about Xavier
    append_events(2, patient=YVONNE, acting_institution="CHEM", actor_username="bob")
    append_events(1, outcome="deny", reason_code="NO_CONSENT", basis="")
    append_events(1, basis="EMERGENCY", action="emergency.declare", actor_display="Dr Emma")
    append_events(1, patient="", on_behalf_of=XAVIER, action="consent.grant")


def seqs(response) -> list[int]:
    return [row["seq"] for row in response.json()["results"]]


def test_it_lists_events_newest_first(dpo, mixed_log):
    response = dpo.get("/api/v1/audit/events/")
    assert response.status_code == 200
    assert seqs(response) == [8, 7, 6, 5, 4, 3, 2, 1]
    first = response.json()["results"][0]
    assert first["description"] == "Granted consent to sharing"
    assert first["basis_ids"] == {"consent": 0, "care_relationship": 7}
    assert first["detail"] == {"n": 0, "note": "é ünïcode ✓"}
    assert response.json()["next"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"patient": YVONNE}, [5, 4]),
        ({"actor": "bob"}, [5, 4]),
        ({"institution": "chem"}, [5, 4]),
        ({"action": "emergency.declare"}, [7]),
        ({"outcome": "deny"}, [6]),
        ({"basis": "EMERGENCY"}, [7]),
        ({"patient": XAVIER, "outcome": "permit"}, [7, 3, 2, 1]),
    ],
)
def test_it_filters_events(dpo, mixed_log, query, expected):
    assert seqs(dpo.get("/api/v1/audit/events/", query)) == expected


def test_it_filters_by_a_time_range(dpo, mixed_log):
    times = dict(AuditEvent.objects.values_list("seq", "time"))
    query = {"since": times[3].isoformat(), "until": times[6].isoformat()}
    assert seqs(dpo.get("/api/v1/audit/events/", query)) == [5, 4, 3]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((None, 1), []),  # until the first event: nothing
        ((8, None), [8]),  # since the last event
        ((None, 4), [3, 2, 1]),
        ((2, 3), [2]),
    ],
)
def test_a_time_range_keeps_exactly_its_events(dpo, mixed_log, window, expected):
    times = dict(AuditEvent.objects.values_list("seq", "time"))
    since, until = window
    query = {}
    if since:
        query["since"] = times[since].isoformat()
    if until:
        query["until"] = times[until].isoformat()
    assert seqs(dpo.get("/api/v1/audit/events/", query)) == expected


def test_a_time_range_finds_an_event_out_of_time_order(dpo, mixed_log, triggers_dropped):
    # The clock was set back before event 7: it is dated between events 3 and 4.
    times = dict(AuditEvent.objects.values_list("seq", "time"))
    between = times[3] + (times[4] - times[3]) / 2
    execute("UPDATE audit_auditevent SET time = %s WHERE seq = 7", [between])
    query = {"since": times[3].isoformat(), "until": times[5].isoformat()}
    assert seqs(dpo.get("/api/v1/audit/events/", query)) == [7, 4, 3]


def test_it_pages_by_keyset_with_a_next_link(dpo, mixed_log):
    first = dpo.get("/api/v1/audit/events/", {"page_size": 3})
    assert seqs(first) == [8, 7, 6]
    second = dpo.get(first.json()["next"])
    assert seqs(second) == [5, 4, 3]
    third = dpo.get(second.json()["next"])
    assert seqs(third) == [2, 1]
    assert third.json()["next"] is None


def test_it_keeps_filters_across_pages(dpo, mixed_log):
    first = dpo.get("/api/v1/audit/events/", {"patient": XAVIER, "page_size": 2})
    assert seqs(first) == [7, 6]
    assert seqs(dpo.get(first.json()["next"])) == [3, 2]


def test_it_caps_the_page_size(dpo, append_events):
    append_events(205)
    assert len(seqs(dpo.get("/api/v1/audit/events/", {"page_size": 10_000}))) == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"patient": "12345"}, "patient"),
        ({"action": "study.teleport"}, "action"),
        ({"outcome": "maybe"}, "outcome"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "0"}, "cursor"),
        ({"page_size": "-1"}, "page_size"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_it_answers_400_naming_a_bad_parameter(dpo, query, field):
    response = dpo.get("/api/v1/audit/events/", query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID"
    assert field in error["message"]


def test_it_requires_authentication(db):
    response = APIClient().get("/api/v1/audit/events/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("role", ["practitioner", "patient", "system", "admin"])
def test_it_refuses_everyone_but_the_dpo(role, mixed_log):
    client = client_as(role, username="mallory", patient_national_id=XAVIER)
    for url in ("/api/v1/audit/events/", "/api/v1/audit/verify/", "/api/v1/audit/export/"):
        response = client.get(url, {"format": "csv"} if "export" in url else {})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "FORBIDDEN"


def test_it_audits_a_refused_search(mixed_log):
    client_as("practitioner", username="mallory").get("/api/v1/audit/events/")
    row = AuditEvent.objects.order_by("-seq").first()
    assert (row.action, row.outcome, row.actor_username) == ("audit.search", "deny", "mallory")


def test_it_audits_the_dpos_search_with_its_filters(dpo, mixed_log):
    dpo.get("/api/v1/audit/events/", {"patient": XAVIER, "outcome": "deny"})
    row = AuditEvent.objects.order_by("-seq").first()
    assert (row.action, row.outcome, row.actor_username) == ("audit.search", "permit", "dora")
    assert row.detail == {"filters": {"patient": XAVIER, "outcome": "deny"}, "returned": 1}


def test_it_answers_503_when_the_search_cannot_be_audited(dpo, mixed_log, monkeypatch):
    from audit import api
    from audit.errors import AuditUnavailable

    def broken(event):
        raise AuditUnavailable("down")

    monkeypatch.setattr(api, "append", broken)
    for path in ("/api/v1/audit/events/", "/api/v1/audit/verify/"):
        response = dpo.get(path)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "AUDIT_UNAVAILABLE"
        assert "results" not in response.json()


def test_it_lists_events_in_a_fixed_number_of_queries(
    dpo, append_events, django_assert_num_queries
):
    from django.db import connection

    append_events(60)
    # One SELECT for the page, then the audit row of the search itself (SQLite: savepoint,
    # head, insert, head, release; PostgreSQL: savepoint, release, and one statement on a
    # prepared cursor that Django does not log).
    expected = 3 if connection.vendor == "postgresql" else 6
    with django_assert_num_queries(expected):
        dpo.get("/api/v1/audit/events/", {"page_size": 5})
    with django_assert_num_queries(expected):
        dpo.get("/api/v1/audit/events/", {"page_size": 50})


def test_it_verifies_the_chain_for_the_dpo(dpo, mixed_log):
    response = dpo.get("/api/v1/audit/verify/")
    assert response.status_code == 200
    body = response.json()
    assert (body["valid"], body["events"], body["first_invalid_seq"]) == (True, 8, None)
    assert "checkpoint" in body
    assert AuditEvent.objects.order_by("-seq").first().action == "audit.verify"


def test_it_reports_the_first_invalid_seq(dpo, mixed_log, triggers_dropped):
    from .conftest import execute

    execute("UPDATE audit_auditevent SET actor_username = 'eve' WHERE seq = 4")
    body = dpo.get("/api/v1/audit/verify/").json()
    assert (body["valid"], body["first_invalid_seq"]) == (False, 4)


# --- the patient's access log ----------------------------------------------------------------


# --- through the project's real authentication ------------------------------------------------


def test_it_serves_the_real_dpo_token_and_refuses_a_practitioner_token(cast, api_as):
    assert api_as("dora").get("/api/v1/audit/events/").status_code == 200
    assert api_as("alice", "CHL").get("/api/v1/audit/events/").status_code == 403


def test_it_serves_a_real_patient_their_access_log(cast, api_as):
    response = api_as("xavier").get("/api/v1/me/access-log/")
    assert response.status_code == 200
    # Registering the patient was audited about their record.
    assert any(r["action"] == "patient.create" for r in response.json()["results"])
