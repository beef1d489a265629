"""A failing flush barrier is a failed audit, so a deny: on PostgreSQL the audit append and
the barrier that waits for its WAL flush go in one pipeline (audit.services
._append_then_barrier); when the barrier errors, the row is not known durable and nothing
may be served. Both read paths (the look-up then the gate, and the study found inside the
gate's fact query) and the three read endpoints, as served (autocommit)."""

import json

import psycopg
import pytest

from audit import services
from audit.models import AuditEvent
from audit.verification import verify_chain
from consent import facts_query
from tests.conftest import client_for, require_postgres

from .conftest import dicom_copy, ingest, share_with_alice

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shared_study(cast, tmp_path):
    """A CHEM study of Xavier that Dr Alice (CHL) may open: he consents, she cares for him."""
    require_postgres()
    share_with_alice(cast)
    return ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))


def requests_of(result) -> dict[str, tuple[str, str]]:
    study = f"/dicomweb/studies/{result.study_uid}"
    instance = f"{study}/series/{result.series_uid}/instances/{result.sop_instance_uid}"
    return {
        "instance": (instance, "application/dicom"),
        "metadata": (f"{study}/metadata", "*/*"),
        "search": (f"/dicomweb/studies?StudyInstanceUID={result.study_uid}", "*/*"),
    }


class _FailingCursor:
    """The barrier's cursor, losing the server as it sends the barrier."""

    def __init__(self, cursor):
        self._cursor = cursor

    def execute(self, *args, **kwargs):
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def break_barrier(monkeypatch, how: str) -> None:
    if how == "statement":
        # The server refuses the barrier statement (as it would on a cancel or a timeout).
        monkeypatch.setattr(services, "_PG_FLUSH_BARRIER", "SELECT 1 / 0")
    else:
        real = services._barrier_cursor
        monkeypatch.setattr(services, "_barrier_cursor", lambda: _FailingCursor(real()))


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("how", ["statement", "cursor"])
@pytest.mark.parametrize("endpoint", ["instance", "metadata", "search"])
@pytest.mark.parametrize("path", ["slow", "fast"])
def test_a_failing_barrier_serves_nothing_and_answers_503(
    shared_study, monkeypatch, path, endpoint, how
):
    if path == "slow":
        monkeypatch.setattr(facts_query, "folds_lookups", lambda: False)
    url, accept = requests_of(shared_study)[endpoint]
    alice = client_for("alice", "CHL")
    assert alice.get(url, HTTP_ACCEPT=accept).status_code == 200  # served while it works
    with monkeypatch.context() as broken:
        break_barrier(broken, how)
        response = alice.get(url, HTTP_ACCEPT=accept)
        body = body_of(response)
    assert response.status_code == 503
    assert json.loads(body) == {
        "error": {
            "code": "AUDIT_UNAVAILABLE",
            "message": "The audit log is unavailable; try later.",
        }
    }
    assert shared_study.study_uid.encode() not in body  # no bytes, no metadata, no result
    # The connection is still usable: the next request is served and audited, and the
    # chain still verifies.
    again = alice.get(url, HTTP_ACCEPT=accept)
    assert again.status_code == 200
    assert shared_study.study_uid.encode() in body_of(again)
    latest = AuditEvent.objects.order_by("-seq").first()
    # A search's event names no single study; a retrieve's names the one it served.
    expected_uid = "" if endpoint == "search" else shared_study.study_uid
    assert (latest.outcome, latest.study_uid) == ("permit", expected_uid)
    assert verify_chain().valid
