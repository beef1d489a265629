"""Any portal page whose audit event cannot be written answers 503 "audit log unavailable"."""

import pytest
from django.db import DatabaseError
from django.test import Client

from audit import services
from consent.models import RecordStatus
from tests.conftest import XAVIER_ID
from tests.portal.helpers import PASSWORD, set_password

pytestmark = pytest.mark.django_db

UNAVAILABLE = "The audit log is unavailable"  # the gate's words, and the portal's


@pytest.fixture
def audit_down(monkeypatch):
    """Every audit append fails in the database, as on a full disk or a lost table."""

    def fail(*args: object, **kwargs: object) -> None:
        raise DatabaseError("could not extend file")

    def down() -> None:
        for name in ("_append_locked", "_append_postgresql", "_append_many_postgresql"):
            monkeypatch.setattr(services, name, fail)

    return down


def answer(client: Client, method: str, path: str):
    client.raise_request_exception = False  # as a browser meets it
    return getattr(client, method)(path, HTTP_ACCEPT="text/html")


@pytest.mark.parametrize(
    ("username", "institution", "method", "path"),
    [
        ("xavier", None, "get", "/me/"),  # a gate decision
        ("xavier", None, "post", "/me/record/close/"),  # a service's change
        ("xavier", None, "get", "/dpo/audit/"),  # a role refused
        ("alice", "CHL", "get", f"/patients/{XAVIER_ID}/"),
        ("dora", None, "get", "/dpo/audit/"),  # the DPO's own search
        ("dora", None, "post", "/dpo/verify/"),
        ("dora", None, "get", "/dpo/emergencies/"),
    ],
)
def test_a_page_that_cannot_be_audited_is_a_503_saying_so(
    portal_as, audit_down, username, institution, method, path
):
    client = portal_as(username, institution)
    audit_down()
    response = answer(client, method, path)
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert UNAVAILABLE in response.content.decode()


def test_a_record_close_that_cannot_be_audited_changes_nothing(portal_as, cast, audit_down):
    client = portal_as("xavier")
    audit_down()
    assert answer(client, "post", "/me/record/close/").status_code == 503
    cast.xavier.record.refresh_from_db()
    assert cast.xavier.record.status == RecordStatus.ACTIVE


@pytest.mark.parametrize("password", [PASSWORD, "not-the-password"])
def test_a_log_in_that_cannot_be_audited_is_a_503(cast, audit_down, password):
    set_password("xavier")
    audit_down()
    client = Client(raise_request_exception=False)
    response = client.post(
        "/login/", {"username": "xavier", "password": password}, HTTP_ACCEPT="text/html"
    )
    assert response.status_code == 503
    assert UNAVAILABLE in response.content.decode()
    assert "_auth_user_id" not in client.session  # a log-in unaudited is no log-in
    assert client.get("/me/").url == "/login/?next=/me/"


def test_the_api_keeps_its_json_answer(api_as, cast, audit_down):
    client = api_as("xavier")
    audit_down()
    response = client.post("/api/v1/me/record/close/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AUDIT_UNAVAILABLE"
