"""An unreachable database is a 503 that names it, at every door, and is survived."""

import pytest
from django.db import connection

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
    assert client.get(url).status_code != 503


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
