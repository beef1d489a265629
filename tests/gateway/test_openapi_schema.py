"""Real answers of the REST API validate against the OpenAPI schema clients are generated from."""

import json

import pytest
import yaml
from openapi_schema_validator import OAS30ReadValidator
from rest_framework.test import APIClient

from audit.errors import AuditUnavailable
from audit.events import Event
from audit.services import append
from consent import auditing
from tests.conftest import XAVIER_ID, client_for

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def schema() -> dict:
    response = APIClient().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def check(schema: dict, method: str, path: str, response) -> None:
    """The status is documented for the operation, and the body matches its schema."""
    operation = schema["paths"][API + path][method]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} is not documented"
    content = operation["responses"][status].get("content", {})
    media_type = response["Content-Type"].split(";")[0].strip()
    assert media_type in content, f"{method} {path} {status}: {media_type} not documented"
    if media_type.endswith("json"):
        body = content[media_type]["schema"]
        validator = OAS30ReadValidator({"allOf": [body], "components": schema["components"]})
        problems = [
            f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_json(response))
        ]
        assert not problems, f"{method} {path} {status}: {problems}"


def _json(response) -> object:
    if response.streaming:
        return json.loads(b"".join(response.streaming_content))
    return response.json()


def test_the_access_log_is_a_page(cast, schema):
    read = Event(action="study.retrieve", outcome="permit", actor_username="bob", patient=XAVIER_ID)
    append(read)
    response = client_for("xavier").get(f"{API}/me/access-log/?page_size=1")
    assert response.json()["next"]  # a page that has a next one
    check(schema, "get", "/me/access-log/", response)
    last = client_for("xavier").get(f"{API}/me/access-log/?page_size=200")
    assert last.json()["next"] is None
    check(schema, "get", "/me/access-log/", last)


def test_audit_events_are_a_page(cast, schema):
    response = client_for("dora").get(f"{API}/audit/events/?page_size=2")
    assert response.status_code == 200
    assert response.json()["results"]
    check(schema, "get", "/audit/events/", response)


def test_consents_with_no_end_and_not_revoked(cast, schema):
    xavier = client_for("xavier")
    granted = xavier.post(f"{API}/me/consents/", {"institutions": None}, format="json")
    assert (granted.status_code, granted.json()["valid_until"]) == (201, None)
    check(schema, "post", "/me/consents/", granted)
    listed = xavier.get(f"{API}/me/consents/")
    assert listed.json()[0]["revoked_at"] is None
    check(schema, "get", "/me/consents/", listed)


def test_a_declared_care_relationship_has_no_institution(cast, schema):
    xavier = client_for("xavier")
    declared = xavier.post(f"{API}/me/care-relationships/", {"practitioner": "bob"}, format="json")
    assert declared.json()["institution"] is None
    assert declared.json()["ended_at"] is None
    check(schema, "post", "/me/care-relationships/", declared)
    check(schema, "get", "/me/care-relationships/", xavier.get(f"{API}/me/care-relationships/"))


def test_an_exclusion_not_removed(cast, schema):
    xavier = client_for("xavier")
    added = xavier.post(f"{API}/me/exclusions/", {"practitioner": "charlie"}, format="json")
    assert added.json()["removed_at"] is None
    check(schema, "post", "/me/exclusions/", added)
    check(schema, "get", "/me/exclusions/", xavier.get(f"{API}/me/exclusions/"))


def test_a_pending_emergency_access(cast, schema):
    reason = {"reason": "Unconscious patient in the emergency department, history needed."}
    declared = client_for("bob", "CHEM").post(
        f"{API}/patients/{XAVIER_ID}/emergency-access/", reason, format="json"
    )
    assert declared.status_code == 201
    pending = client_for("dora").get(f"{API}/emergency-accesses/?review=pending")
    assert pending.json()[0]["reviewed_at"] is None
    assert pending.json()[0]["patient_notified_at"] is None  # the notice is sent on commit
    check(schema, "get", "/emergency-accesses/", pending)


@pytest.mark.parametrize("fmt", ["csv", "fhir", "dicom"])
def test_the_audit_export_media_types(cast, schema, fmt):
    response = client_for("dora").get(f"{API}/audit/export/?format={fmt}")
    assert response.status_code == 200
    check(schema, "get", "/audit/export/", response)


def test_error_answers_are_documented_with_their_envelope(cast, schema):
    xavier = client_for("xavier")
    text = xavier.post(f"{API}/me/exclusions/", "x", content_type="text/plain")
    answers = [
        ("post", "/me/consents/{consent_id}/revoke/", xavier.post(f"{API}/me/consents/9/revoke/")),
        ("get", "/audit/events/", xavier.get(f"{API}/audit/events/")),
        ("get", "/audit/events/", APIClient().get(f"{API}/audit/events/")),
        ("get", "/audit/events/", client_for("dora").get(f"{API}/audit/events/?nope=1")),
        ("post", "/me/exclusions/", text),
        ("get", "/me/record/", xavier.get(f"{API}/me/record/", HTTP_X_ACT_FOR="1999010100000")),
    ]
    assert [r.status_code for _, _, r in answers] == [404, 403, 401, 400, 415, 404]
    for method, path, response in answers:
        check(schema, method, path, response)


def test_an_unavailable_audit_log_is_documented(cast, schema, monkeypatch):
    xavier = client_for("xavier")

    def unavailable(event):
        raise AuditUnavailable("down")

    monkeypatch.setattr(auditing, "append", unavailable)
    response = xavier.post(f"{API}/me/consents/", {"institutions": None}, format="json")
    assert response.json()["error"]["code"] == "AUDIT_UNAVAILABLE"
    check(schema, "post", "/me/consents/", response)


def test_the_conflicts_each_endpoint_answers(cast, schema):
    xavier = client_for("xavier")
    body = {"practitioner": "charlie"}
    xavier.post(f"{API}/me/exclusions/", body, format="json")
    again = xavier.post(f"{API}/me/exclusions/", body, format="json")
    assert again.json()["error"]["code"] == "ALREADY_EXCLUDED"
    check(schema, "post", "/me/exclusions/", again)
    closed = xavier.post(f"{API}/me/record/reopen/")
    assert closed.json()["error"]["code"] == "ALREADY_ACTIVE"
    check(schema, "post", "/me/record/reopen/", closed)


def test_every_operation_documents_the_errors_it_can_answer(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"400", "401", "403", "500", "503"} <= statuses, (method, path)
            named = "{" in path or "X-Act-For" in [
                p["name"] for p in operation.get("parameters", [])
            ]
            assert ("404" in statuses) == named, (method, path)
            assert ("413" in statuses) == ("requestBody" in operation), (method, path)
            for status in statuses - {"200", "201", "204"}:
                body = operation["responses"][status]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"}


def test_conflicts_are_documented_only_where_the_api_answers_them(schema):
    conflicts = {
        (method, path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "409" in operation["responses"]
    }
    assert conflicts == {
        ("post", f"{API}/accounts/"),
        ("post", f"{API}/practitioners/"),
        ("post", f"{API}/patients/"),
        ("post", f"{API}/patients/{{national_id}}/identifiers/"),
        ("post", f"{API}/care-relationships/{{link_id}}/end/"),
        ("post", f"{API}/patients/{{national_id}}/emergency-access/"),
        ("post", f"{API}/emergency-accesses/{{access_id}}/review/"),
        ("post", f"{API}/me/record/close/"),
        ("post", f"{API}/me/record/reopen/"),
        ("post", f"{API}/me/consents/{{consent_id}}/revoke/"),
        ("post", f"{API}/me/exclusions/"),
    }
