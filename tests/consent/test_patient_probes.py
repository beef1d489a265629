"""A patient account cannot tell a registered national identifier from an unknown one."""

import datetime

import pytest

from audit.models import AuditEvent
from consent import national_id
from tests.conftest import XAVIER_ID, client_for

pytestmark = pytest.mark.django_db

UNKNOWN = national_id.make(datetime.date(1975, 1, 1), 7)


def _call(client, method: str, path: str, headers: dict, nid: str):
    headers = {key: value.format(nid=nid) for key, value in headers.items()}
    body = {"reason": "Unconscious in the emergency department."} if method == "post" else None
    return getattr(client, method)(path.format(nid=nid), body, format="json", **headers)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("get", "/api/v1/patients/{nid}/studies/", {}),
        ("post", "/api/v1/patients/{nid}/emergency-access/", {}),
        ("get", "/api/v1/me/record/", {"HTTP_X_ACT_FOR": "{nid}"}),
        ("get", "/api/v1/me/consents/", {"HTTP_X_ACT_FOR": "{nid}"}),
    ],
)
def test_another_patients_record_answers_as_an_unknown_one(cast, method, path, headers):
    yvonne = client_for("yvonne")
    registered = _call(yvonne, method, path, headers, XAVIER_ID)
    unknown = _call(yvonne, method, path, headers, UNKNOWN)
    assert registered.status_code == unknown.status_code
    assert registered.json() == unknown.json()
    # The audit log keeps the real reason of the registered one.
    reasons = set(AuditEvent.objects.values_list("reason_code", flat=True))
    assert reasons & {"NOT_OWN_RECORD", "NOT_REPRESENTATIVE", "ROLE_NOT_ALLOWED"}


def test_a_patient_still_reads_their_own_record(cast):
    response = client_for("xavier").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    assert response.status_code == 200


def test_opening_a_patient_without_studies_is_in_their_access_log(cast):
    from django.core.cache import cache

    from tests.consent.conftest import care
    from tests.portal.helpers import portal_client

    cache.clear()
    care(cast.alice, cast.xavier)  # Xavier has no study stored yet
    api = client_for("alice", "CHL").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    assert (api.status_code, api.json()["studies"]) == (200, [])
    assert portal_client("alice", "CHL").get(f"/patients/{XAVIER_ID}/").status_code == 200
    lists = AuditEvent.objects.filter(action="patient.studies_list", actor_username="alice")
    assert list(lists.values_list("patient", flat=True)) == [XAVIER_ID, XAVIER_ID]
    log = client_for("xavier").get("/api/v1/me/access-log/").json()["results"]
    assert len([row for row in log if row["action"] == "patient.studies_list"]) == 2
