"""The administration's pages of consent records are audited reads, refused without the log."""

import datetime

import pytest
from django.utils import timezone

from audit.errors import AuditUnavailable
from audit.models import AuditEvent
from consent.models import EmergencyAccess, Institution, StudyVisibility
from tests.conftest import XAVIER_ID, client_for

pytestmark = pytest.mark.django_db

REASON = "Unconscious after a road accident, prior CT needed."


@pytest.fixture
def records(cast):
    hidden = StudyVisibility.objects.create(
        patient=cast.xavier, study_uid="1.2.826.0.1.3680043.8.498.4242", hidden_by="xavier"
    )
    emergency = EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=cast.xavier,
        reason=REASON,
        expires_at=timezone.now() + datetime.timedelta(hours=4),
    )
    return {"hidden": hidden, "emergency": emergency}


def _admin_views() -> list[tuple[str, str]]:
    events = AuditEvent.objects.filter(action="admin.view").order_by("seq")
    return [(event.patient, event.detail["object"]) for event in events]


def test_every_page_of_consent_records_is_an_audit_event(
    admin_client_verified, admin_user, cast, records
):
    pages = [
        "/admin/consent/studyvisibility/",
        f"/admin/consent/emergencyaccess/{records['emergency'].pk}/change/",
        f"/admin/consent/patient/{cast.xavier.pk}/change/",
        "/admin/consent/carerelationship/",
    ]
    for page in pages:
        assert admin_client_verified.get(page).status_code == 200, page
    assert _admin_views() == [
        ("", "list"),
        (XAVIER_ID, str(records["emergency"].pk)),
        (XAVIER_ID, str(cast.xavier.pk)),
        ("", "list"),
    ]
    actors = AuditEvent.objects.filter(action="admin.view").values_list(
        "actor_username", "actor_role"
    )
    assert set(actors) == {(admin_user.username, "admin")}
    # The patient sees it in their own access log.
    log = client_for("xavier").get("/api/v1/me/access-log/").json()["results"]
    assert [row["action"] for row in log if row["action"] == "admin.view"] == ["admin.view"] * 2


def test_no_audit_event_no_page(admin_client_verified, records, monkeypatch):
    from consent import admin as consent_admin

    def unavailable(*args, **kwargs):
        raise AuditUnavailable("down")

    monkeypatch.setattr(consent_admin, "audit_event", unavailable)
    url = f"/admin/consent/emergencyaccess/{records['emergency'].pk}/change/"
    response = admin_client_verified.get(url)
    assert response.status_code == 503
    assert REASON.encode() not in response.content


def test_an_administration_read_is_exported_as_a_query():
    from audit.exports.codes import QUERY, kind_of

    assert kind_of("admin.view") == QUERY
