"""A practitioner has at most one open emergency access per patient and institution: a
second declaration while one is open is a 409 naming it, audited, and opens nothing."""

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from consent.models import Affiliation, EmergencyAccess, Institution
from tests.conftest import XAVIER_ID, YVONNE_ID, client_for

pytestmark = pytest.mark.django_db

REASON = "Unconscious patient in the emergency department, history needed."


def declare(client, national_id: str = XAVIER_ID):
    return client.post(
        f"/api/v1/patients/{national_id}/emergency-access/", {"reason": REASON}, format="json"
    )


def test_a_second_declaration_while_one_is_open_is_a_409(cast):
    client = client_for("bob", "CHEM")
    first = declare(client)
    assert first.status_code == 201
    again = declare(client)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "EMERGENCY_ALREADY_OPEN")
    assert f"id {first.json()['id']}" in again.json()["error"]["message"]
    assert EmergencyAccess.objects.count() == 1
    events = AuditEvent.objects.filter(action="emergency.declare").order_by("seq")
    assert [(e.outcome, e.reason_code) for e in events] == [
        ("permit", ""),
        ("deny", "EMERGENCY_ALREADY_OPEN"),
    ]
    assert events[1].patient == XAVIER_ID


def test_once_it_has_ended_a_new_one_may_be_declared(cast):
    client = client_for("bob", "CHEM")
    assert declare(client).status_code == 201
    EmergencyAccess.objects.update(expires_at=timezone.now())
    assert declare(client).status_code == 201
    assert EmergencyAccess.objects.count() == 2


def test_another_patient_or_practitioner_is_not_concerned(cast):
    assert declare(client_for("bob", "CHEM")).status_code == 201
    assert declare(client_for("bob", "CHEM"), YVONNE_ID).status_code == 201
    assert declare(client_for("alice", "CHL")).status_code == 201


def test_an_access_at_another_institution_does_not_count(cast):
    # An access opened at CHEM does not open the studies to Bob acting for CHL.
    Affiliation.objects.create(
        practitioner=cast.bob, institution=Institution.objects.get(code="CHL")
    )
    assert declare(client_for("bob", "CHEM")).status_code == 201
    assert declare(client_for("bob", "CHL")).status_code == 201


def test_the_portal_says_so_and_opens_nothing(cast):
    from tests.portal.helpers import portal_client

    alice = portal_client("alice")
    url = f"/patients/{XAVIER_ID}/emergency/declare/"
    assert alice.post(url, {"reason": REASON}).status_code == 302
    page = alice.post(url, {"reason": REASON}, follow=True)
    assert "open already" in page.content.decode()
    assert EmergencyAccess.objects.count() == 1
