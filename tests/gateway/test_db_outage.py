"""An unreachable database is a 503 that names it, at every door, and is survived."""

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, connection

from anim_gateway.errors import api_exception_handler, database_unreachable
from tests.conftest import client_for, require_postgres
from tests.portal.helpers import portal_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_down(monkeypatch):
    """PostgreSQL is not there (stopped, or a restart in progress): the next connection
    attempt is refused, as a closed port refuses it."""
    require_postgres()

    def stop() -> None:
        connection.close()
        monkeypatch.setitem(connection.settings_dict, "PORT", "1")

    def start() -> None:
        monkeypatch.undo()
        connection.close()  # the refused attempt's state; the next request connects afresh

    yield stop, start
    start()


@pytest.mark.parametrize(
    ("username", "institution", "url"),
    [
        ("alice", "CHL", "/dicomweb/studies"),
        ("alice", "CHL", "/api/v1/patients/00000000000000/studies/"),
        ("xavier", None, "/api/v1/me/record/"),
        ("dora", None, "/api/v1/audit/events/"),
    ],
)
def test_an_api_answers_503_naming_the_database_and_recovers(
    cast, database_down, username, institution, url
):
    stop, start = database_down
    client = client_for(username, institution)
    client.raise_request_exception = False
    stop()
    response = client.get(url)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    start()
    assert client.get(url).status_code < 500


def test_a_portal_page_answers_503_naming_the_database_and_recovers(cast, database_down):
    stop, start = database_down
    client = portal_client("xavier")
    client.raise_request_exception = False
    assert client.get("/me/").status_code == 200
    stop()
    response = client.get("/me/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    start()
    assert client.get("/me/").status_code == 200


def _wrapped(cause: BaseException | None, message: str = "") -> OperationalError:
    """A database error as Django raises it: its driver's error as the cause."""
    exc = OperationalError(message or str(cause))
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "unreachable"),
    [
        (_wrapped(psycopg.OperationalError("connection refused")), True),  # no SQLSTATE
        (_wrapped(psycopg.errors.AdminShutdown("terminating connection")), True),  # 57P01
        (_wrapped(psycopg.errors.ConnectionFailure("lost")), True),  # 08006
        (InterfaceError("connection already closed"), True),
        (_wrapped(None, "database is locked"), True),  # SQLite, busy
        (_wrapped(psycopg.errors.ProgramLimitExceeded("index row too big")), False),  # a fault
        (_wrapped(psycopg.errors.ObjectNotInPrerequisiteState("not ready")), False),
        (_wrapped(None, "no such table: studies_study"), False),  # SQLite, a fault
    ],
)
def test_only_a_database_that_cannot_be_reached_is_a_503(exc, unreachable):
    assert database_unreachable(exc) is unreachable
    response = api_exception_handler(exc, {"view": None})
    assert response.status_code == (503 if unreachable else 500)
