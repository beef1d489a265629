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


# django-guardian's object-permission pages (GuardedModelAdmin): who may act for a patient.


def _guardian_pages(patient, user, group) -> list[str]:
    base = f"/admin/consent/patient/{patient.pk}/permissions/"
    return [base, f"{base}user-manage/{user.pk}/", f"{base}group-manage/{group.pk}/"]


@pytest.fixture
def represented(cast):
    """Yvonne's login acts for Xavier; a group exists to be shown."""
    from django.contrib.auth.models import Group

    from consent.services import representation
    from tests.conftest import ADMIN

    representation.representation_grant(actor=ADMIN, patient=cast.xavier, user=cast.yvonne.user)
    return Group.objects.create(name="parents")


def test_the_patient_admin_is_the_only_one_with_object_permission_pages():
    from django.contrib import admin
    from guardian.admin import GuardedModelAdminMixin

    from consent.admin import AuditedPermissionPages
    from consent.models import Patient

    guarded = {
        model
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, GuardedModelAdminMixin)
        and model_admin.include_object_permissions_urls
    }
    assert guarded == {Patient}
    assert isinstance(admin.site._registry[Patient], AuditedPermissionPages)


def test_every_object_permission_page_is_an_audit_event_about_the_patient(
    admin_client_verified, admin_user, cast, represented
):
    for page in _guardian_pages(cast.xavier, cast.yvonne.user, represented):
        assert admin_client_verified.get(page).status_code == 200, page
    events = AuditEvent.objects.filter(action="admin.view").order_by("seq")
    assert [(event.patient, event.actor_username) for event in events] == [
        (XAVIER_ID, admin_user.username)
    ] * 3
    shown = {"model": "patient", "object": str(cast.xavier.pk), "page": "permissions"}
    assert [event.detail for event in events] == [
        shown,
        shown | {"user": "yvonne"},
        shown | {"group": "parents"},
    ]
    log = client_for("xavier").get("/api/v1/me/access-log/").json()["results"]
    assert [row["action"] for row in log if row["action"] == "admin.view"] == ["admin.view"] * 3


def test_no_audit_event_no_object_permission_page(
    admin_client_verified, cast, represented, monkeypatch
):
    from consent import admin as consent_admin

    def unavailable(*args, **kwargs):
        raise AuditUnavailable("down")

    monkeypatch.setattr(consent_admin, "audit_event", unavailable)
    for page in _guardian_pages(cast.xavier, cast.yvonne.user, represented):
        response = admin_client_verified.get(page)
        assert response.status_code == 503, page
        assert b"yvonne" not in response.content


ODD_IDS = ["999999", "abc", "\u00b2", "99999999999999999999999"]


@pytest.mark.parametrize("user_id", ODD_IDS)
def test_an_unknown_login_on_the_permission_page_is_a_404_and_still_audited(
    admin_client_verified, cast, user_id
):
    url = f"/admin/consent/patient/{cast.xavier.pk}/permissions/user-manage/{user_id}/"
    assert admin_client_verified.get(url).status_code == 404
    event = AuditEvent.objects.filter(action="admin.view").get()
    assert (event.patient, event.detail["user"]) == (XAVIER_ID, "")


@pytest.mark.parametrize("object_id", ODD_IDS)
@pytest.mark.parametrize("page", ["change/", "permissions/"])
def test_an_unknown_patient_id_is_answered_not_a_500(admin_client_verified, cast, object_id, page):
    response = admin_client_verified.get(f"/admin/consent/patient/{object_id}/{page}")
    assert response.status_code in (302, 404)  # change/: the admin's "does not exist" redirect
    assert AuditEvent.objects.filter(action="admin.view").get().patient == ""
