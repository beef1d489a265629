"""Every error leaves with the documented shape, and the schema and docs answer."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_malformed_json_is_400_invalid(cast) -> None:
    response = client_for("dora").generic(
        "POST", "/api/v1/patients/", "{not json", content_type="application/json"
    )
    error = assert_error(response, 400, "INVALID")
    assert "Malformed" in error["message"]


def test_a_wrong_content_type_is_415(cast) -> None:
    response = client_for("dora").generic(
        "POST", "/api/v1/patients/", "a=b", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_a_json_list_instead_of_an_object_is_400(cast, admin_user) -> None:
    response = client_for("root").post("/api/v1/patients/", [1, 2], format="json")
    assert_error(response, 400, "INVALID")


def test_a_wrong_method_is_405(cast) -> None:
    assert_error(client_for("dora").get("/api/v1/patients/"), 405, "METHOD_NOT_ALLOWED")


def test_an_unknown_url_is_a_json_404() -> None:
    assert_error(APIClient().get("/api/v1/nothing-here/"), 404, "NOT_FOUND")


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.django_db
def test_a_browser_on_the_portal_gets_an_error_page_not_json() -> None:
    response = APIClient().get("/me/consent-typo/", HTTP_ACCEPT=BROWSER)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"There is no page at this address." in response.content
    assert b"Back to the start" in response.content


@pytest.mark.parametrize("path", ["/api/v1/nothing-here/", "/dicomweb/nothing-here"])
def test_api_and_dicomweb_clients_get_json_even_from_a_browser(path) -> None:
    assert_error(APIClient().get(path, HTTP_ACCEPT=BROWSER), 404, "NOT_FOUND")


@pytest.mark.django_db
def test_a_portal_page_that_fails_answers_a_plain_page(cast, monkeypatch) -> None:
    from anim_gateway import portal_login

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(portal_login, "render", explode)
    client = APIClient(raise_request_exception=False)
    response = client.get("/login/", HTTP_ACCEPT=BROWSER)
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert b"Something went wrong" in response.content
    assert b"boom" not in response.content


def test_the_openapi_schema_and_docs_answer() -> None:
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/patients/" in schema.json()["paths"]
    assert client.get("/api/docs/").status_code == 200


def test_a_server_error_has_the_same_shape(cast, monkeypatch) -> None:
    from consent.services import provisioning

    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(provisioning, "account_create", explode)
    client = client_for("dora")
    client.raise_request_exception = False
    response = client.post("/api/v1/accounts/", {"username": "a", "role": "dpo"}, format="json")
    error = assert_error(response, 500, "SERVER_ERROR")
    assert "boom" not in error["message"]


def test_every_response_carries_a_request_id() -> None:
    response = APIClient().get("/api/schema/", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    unsafe = APIClient().get("/api/schema/", HTTP_X_REQUEST_ID="bad id\n")
    assert unsafe["X-Request-ID"] != "bad id\n"


def test_the_openapi_schema_generates_without_warnings(tmp_path) -> None:
    from django.core.management import call_command

    # --fail-on-warn: every view documents its input and output.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    assert "/api/v1/me/access-log/" in (tmp_path / "s.yml").read_text()
