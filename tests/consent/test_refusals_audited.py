"""Every refused attempt lands in the audit log as a deny with its reason: a hospital's
care relationship the service rejects, ending one twice, the DPO's review of an unknown
or already reviewed emergency access."""

import datetime

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from consent.models import CareRelationship, EmergencyAccess
from tests.conftest import XAVIER_ID, client_for

from .conftest import care

pytestmark = pytest.mark.django_db

API = "/api/v1"
REASON = "Unconscious patient in the emergency department, history needed."
DAY = datetime.timedelta(days=1)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def assert_care(**overrides):
    body = {"patient": XAVIER_ID, "practitioner": "alice", "kind": "admission", **overrides}
    return client_for("chl-pacs", "CHL").post(f"{API}/care-relationships/", body, format="json")


def at(delta: datetime.timedelta) -> str:
    return (timezone.now() + delta).isoformat()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"start": at(-400 * DAY)}, "start"),  # backdated beyond CARE_MAX_BACKDATE_DAYS
        ({"start": at(2 * DAY), "end": at(DAY)}, "end"),  # ends before it starts
        ({"end": at(1000 * DAY)}, "end"),  # longer than CARE_MAX_DAYS
    ],
)
def test_a_rejected_care_assertion_is_audited_as_a_deny(cast, overrides, field):
    response = assert_care(**overrides)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "INVALID")
    (event,) = events("care.assert")
    assert (event.outcome, event.reason_code, event.patient) == ("deny", "INVALID", XAVIER_ID)
    assert event.message.startswith(f"{field}:")
    assert (event.actor_username, event.acting_institution) == ("chl-pacs", "CHL")
    assert event.detail["practitioner"] == "alice"
    assert not CareRelationship.objects.exists()


def test_a_care_assertion_for_an_unknown_practitioner_is_audited(cast):
    response = assert_care(practitioner="nobody")
    assert response.status_code == 400
    (event,) = events("care.assert")
    assert (event.outcome, event.reason_code, event.patient) == ("deny", "INVALID", "")
    assert "practitioner" in event.message


def test_an_accepted_care_assertion_is_one_permit(cast):
    assert assert_care().status_code == 201
    assert [e.outcome for e in events("care.assert")] == ["permit"]


def test_ending_a_care_relationship_twice_is_audited_as_a_deny(cast):
    link_id = assert_care().json()["id"]
    client = client_for("chl-pacs", "CHL")
    assert client.post(f"{API}/care-relationships/{link_id}/end/").status_code == 200
    again = client.post(f"{API}/care-relationships/{link_id}/end/")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "ALREADY_ENDED")
    first, second = events("care.end")
    assert (first.outcome, second.outcome) == ("permit", "deny")
    assert (second.reason_code, second.patient) == ("ALREADY_ENDED", XAVIER_ID)
    assert second.detail == {"care_relationship": link_id}


def declared_access(cast) -> EmergencyAccess:
    care(cast.bob, cast.xavier)
    response = client_for("bob", "CHEM").post(
        f"{API}/patients/{XAVIER_ID}/emergency-access/", {"reason": REASON}, format="json"
    )
    assert response.status_code == 201
    return EmergencyAccess.objects.get(pk=response.json()["id"])


def review(access_id: int, outcome: str = "justified"):
    return client_for("dora").post(
        f"{API}/emergency-accesses/{access_id}/review/", {"outcome": outcome}, format="json"
    )


def test_reviewing_an_unknown_emergency_access_is_audited_as_a_deny(cast):
    response = review(999999)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "NOT_FOUND")
    (event,) = events("emergency.review")
    assert (event.outcome, event.reason_code, event.patient) == ("deny", "NOT_FOUND", "")
    assert (event.actor_username, event.detail) == ("dora", {"emergency_access": 999999})


def test_reviewing_an_emergency_access_twice_is_audited_as_a_deny(cast):
    access = declared_access(cast)
    assert review(access.pk).status_code == 200
    again = review(access.pk, "unjustified")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "ALREADY_REVIEWED")
    first, second = events("emergency.review")
    assert (first.outcome, second.outcome) == ("permit", "deny")
    assert (second.reason_code, second.patient) == ("ALREADY_REVIEWED", XAVIER_ID)
    assert second.detail == {"emergency_access": access.pk}
    access.refresh_from_db()
    assert access.review == "justified"


def test_the_dpo_finds_refused_reviews_by_outcome(cast):
    review(999999)
    response = client_for("dora").get(
        f"{API}/audit/events/", {"action": "emergency.review", "outcome": "deny"}
    )
    assert [row["reason_code"] for row in response.json()["results"]] == ["NOT_FOUND"]
