"""Schemathesis fuzzes every REST operation of `/api/schema/` as each role: whatever it
sends, the answer is never a 5xx, and its status, content type, headers and body are
the ones the schema documents."""

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from consent.services.tokens import token_issue
from tests.studies.conftest import (  # noqa: F401 (autouse fixtures: private storage, inline tasks)
    dicom_copy,
    ingest,
    inline_tasks,
    private_storage,
    share_with_alice,
)

pytestmark = pytest.mark.django_db

# Who sends the requests: (username, institution) of the cast in tests/conftest.py, or nobody.
ROLES = {
    "practitioner": ("alice", "CHL"),
    "system": ("chl-pacs", "CHL"),
    "patient": ("xavier", None),
    "dpo": ("dora", None),
    "administrator": ("root", None),
    "anonymous": None,
}

# What the schema promises. Left out: positive_data_acceptance and negative_data_rejection,
# which read the schema as the whole validation (it cannot say that a national identifier's
# check digits fail, or that only a patient may send X-Act-For, see docs/api-notes.md).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# A fixed, modest number of requests: derandomized, the same ones on every run.
EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 8, schemathesis.GenerationMode.NEGATIVE: 4}
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,  # nothing kept between runs: every run sends the same requests
    deadline=None,  # behaviour, not timing
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
def wsgi_app() -> Iterator[object]:
    """The gateway's own WSGI entry point, its requests inside the test's transaction: Django
    would close the connection at the end of each request (as its test client, we keep it)."""
    from anim_gateway.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield application
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(cast, admin_user, tmp_path) -> None:
    """Xavier's CT study at CHEM, shared with Dr Alice at CHL, so that lists are not empty."""
    share_with_alice(cast)
    ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240105"))


def bearer(role: str) -> dict[str, str]:
    if ROLES[role] is None:
        return {}
    username, institution = ROLES[role]
    token = token_issue(username=username, institution_code=institution, days=1)
    return {"Authorization": f"Bearer {token}"}


def fuzz(operation, mode: schemathesis.GenerationMode, headers: dict[str, str]) -> None:
    """Send the operation's generated requests; the first that breaks a check raises."""

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES[mode])
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    send()


@pytest.mark.parametrize("role", list(ROLES))
def test_every_rest_operation_answers_as_its_schema_says(world, wsgi_app, role):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    headers = bearer(role)
    failures = []
    for result in schema.include(path_regex="^/api/v1/").get_all_operations():
        operation = result.ok()
        for mode in EXAMPLES:
            try:
                fuzz(operation, mode, headers)
            except BaseExceptionGroup as group:  # schemathesis's FailureGroup
                failures.append(f"{operation.label} ({mode.value}): {group}")
    assert not failures, "\n\n".join(failures)
