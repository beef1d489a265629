"""Patient self-service under /api/v1/me/: permitted cases, denials, errors, audit rows."""

import pytest
from guardian.shortcuts import assign_perm

from audit.models import AuditEvent
from consent import providers
from consent.models import Consent, Exclusion, SharedRecord, StudyVisibility
from tests.conftest import XAVIER_ID, YVONNE_ID, client_for

from .conftest import Study, consent_for, inst

API = "/api/v1"


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-seq").first()


def error(response) -> str:
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"code", "message"}
    return response.json()["error"]["code"]


@pytest.fixture
def xavier(cast):
    return client_for("xavier")


def test_it_shows_the_patients_record(xavier, cast):
    response = xavier.get(f"{API}/me/record/")
    assert response.status_code == 200
    assert response.json()["national_id"] == XAVIER_ID
    assert response.json()["status"] == "active"
    event = last("record.view")
    assert (event.outcome, event.basis, event.patient) == ("permit", "PATIENT", XAVIER_ID)


def test_it_closes_and_reopens_the_record_with_history(xavier, cast):
    assert xavier.post(f"{API}/me/record/close/").json()["status"] == "closed"
    assert SharedRecord.objects.get(patient=cast.xavier).status == "closed"
    assert last("record.close").patient == XAVIER_ID
    response = xavier.post(f"{API}/me/record/close/")
    assert (response.status_code, error(response)) == (409, "ALREADY_CLOSED")
    assert xavier.post(f"{API}/me/record/reopen/").json()["status"] == "active"
    history = xavier.get(f"{API}/me/record/").json()["history"]
    assert [h["status"] for h in history] == ["active", "closed", "active"]


@pytest.mark.parametrize(
    ("username", "institution", "code"),
    [
        ("alice", "CHL", "ROLE_NOT_ALLOWED"),
        ("dora", None, "ROLE_NOT_ALLOWED"),
        ("chl-pacs", "CHL", "ROLE_NOT_ALLOWED"),
    ],
)
def test_other_roles_have_no_me_record(cast, username, institution, code):
    response = client_for(username, institution).get(f"{API}/me/record/")
    assert (response.status_code, error(response)) == (403, code)
    assert last("record.view").outcome == "deny"


def test_it_requires_authentication(cast):
    from rest_framework.test import APIClient

    response = APIClient().get(f"{API}/me/record/")
    assert (response.status_code, error(response)) == (401, "UNAUTHENTICATED")


def test_it_grants_consent_for_some_institutions(xavier, cast):
    response = xavier.post(
        f"{API}/me/consents/",
        {"institutions": ["CHL", "HRS"], "valid_until": "2099-01-31", "allow_emergency": False},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["institutions"], body["allow_emergency"]) == (
        "active",
        ["CHL", "HRS"],
        False,
    )
    assert body["valid_until"].startswith("2099-02-01T00:00:00+01:00") or body[
        "valid_until"
    ].startswith("2099-01-31T23:00:00")
    consent = Consent.objects.get(pk=body["id"])
    assert consent.granted_by == "xavier"
    event = last("consent.grant")
    assert (event.outcome, event.basis_ids, event.patient) == (
        "permit",
        {"consent": consent.pk},
        XAVIER_ID,
    )


def test_it_grants_consent_for_all_members(xavier, cast):
    response = xavier.post(f"{API}/me/consents/", {"institutions": None}, format="json")
    assert response.status_code == 201
    assert response.json()["institutions"] is None
    assert Consent.objects.get(pk=response.json()["id"]).all_members


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "institutions"),
        ({"institutions": ["NOPE"]}, "institutions"),
        ({"institutions": ["chl"]}, "institutions"),
        ({"institutions": []}, "institutions"),
        ({"institutions": None, "valid_until": "2001-01-01"}, "valid_until"),
        ({"institutions": None, "valid_until": "soon"}, "valid_until"),
        ({"institutions": None, "valid_until": "2099-01-01T10:00:00"}, "valid_until"),
        ({"institutions": None, "allow_emergency": "maybe"}, "allow_emergency"),
    ],
)
def test_bad_consent_input_is_a_400_naming_the_field(xavier, cast, body, field):
    response = xavier.post(f"{API}/me/consents/", body, format="json")
    assert (response.status_code, error(response)) == (400, "INVALID")
    assert field in response.json()["error"]["message"]


def test_it_lists_consents_including_revoked_ones(xavier, cast):
    first = consent_for(cast.xavier, ["CHL"])
    consent_for(cast.xavier)
    consent_for(cast.yvonne)
    assert xavier.post(f"{API}/me/consents/{first.pk}/revoke/").status_code == 200
    consents = xavier.get(f"{API}/me/consents/").json()
    assert len(consents) == 2
    assert {c["status"] for c in consents} == {"active", "revoked"}
    assert last("consent.list").outcome == "permit"


def test_it_revokes_once_and_records_who_and_how(xavier, cast):
    consent = consent_for(cast.xavier)
    response = xavier.post(f"{API}/me/consents/{consent.pk}/revoke/")
    assert response.json()["status"] == "revoked"
    consent.refresh_from_db()
    assert (consent.revoked_by, consent.revoke_channel) == ("xavier", "api")
    assert last("consent.revoke").basis_ids == {"consent": consent.pk}
    again = xavier.post(f"{API}/me/consents/{consent.pk}/revoke/")
    assert (again.status_code, error(again)) == (409, "ALREADY_REVOKED")


def test_a_patient_cannot_revoke_another_patients_consent(xavier, cast):
    other = consent_for(cast.yvonne)
    response = xavier.post(f"{API}/me/consents/{other.pk}/revoke/")
    assert (response.status_code, error(response)) == (404, "NOT_FOUND")
    other.refresh_from_db()
    assert other.revoked_at is None


def test_an_unknown_consent_is_a_404(xavier, cast):
    response = xavier.post(f"{API}/me/consents/999999/revoke/")
    assert (response.status_code, error(response)) == (404, "NOT_FOUND")


def test_it_blocks_and_unblocks_a_practitioner(xavier, cast):
    response = xavier.post(f"{API}/me/exclusions/", {"practitioner": "charlie"}, format="json")
    assert response.status_code == 201
    exclusion_id = response.json()["id"]
    assert last("exclusion.add").detail == {"practitioner": "charlie"}
    again = xavier.post(f"{API}/me/exclusions/", {"practitioner": "charlie"}, format="json")
    assert (again.status_code, error(again)) == (409, "ALREADY_EXCLUDED")
    assert xavier.delete(f"{API}/me/exclusions/{exclusion_id}/").status_code == 204
    exclusion = Exclusion.objects.get(pk=exclusion_id)
    assert (exclusion.removed_by, exclusion.removed_at is not None) == ("xavier", True)
    assert last("exclusion.remove").outcome == "permit"
    gone = xavier.delete(f"{API}/me/exclusions/{exclusion_id}/")
    assert (gone.status_code, error(gone)) == (404, "NOT_FOUND")
    assert len(xavier.get(f"{API}/me/exclusions/").json()) == 1


def test_blocking_an_unknown_practitioner_is_a_400(xavier, cast):
    response = xavier.post(f"{API}/me/exclusions/", {"practitioner": "nobody"}, format="json")
    assert (response.status_code, error(response)) == (400, "INVALID")
    assert "practitioner" in response.json()["error"]["message"]


def test_it_declares_the_patients_own_physician_for_15_months(xavier, cast):
    response = xavier.post(f"{API}/me/care-relationships/", {"practitioner": "bob"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["practitioner"], body["institution"]) == ("declared", "bob", None)
    assert last("care.declare").detail["kind"] == "declared"
    assert len(xavier.get(f"{API}/me/care-relationships/").json()) == 1


@pytest.fixture
def studies():
    """The studies app's lookup, replaced by a table for these tests."""
    table: dict[str, Study] = {}
    previous = providers._lookup
    providers.register_study_lookup(table.get)
    yield table
    providers._lookup = previous


def test_it_hides_and_unhides_the_patients_own_study(xavier, cast, studies):
    studies["1.2.3"] = Study("1.2.3", inst("CHEM").pk, cast.xavier.pk)
    response = xavier.post(f"{API}/me/studies/1.2.3/hide/")
    assert response.json() == {"study_uid": "1.2.3", "hidden": True}
    assert StudyVisibility.objects.filter(study_uid="1.2.3", unhidden_at__isnull=True).exists()
    assert last("study.hide").study_uid == "1.2.3"
    assert xavier.post(f"{API}/me/studies/1.2.3/unhide/").json()["hidden"] is False
    assert last("study.unhide").study_uid == "1.2.3"


def test_hiding_another_patients_study_is_a_404(xavier, cast, studies):
    studies["1.2.4"] = Study("1.2.4", inst("CHL").pk, cast.yvonne.pk)
    for uid in ("1.2.4", "9.9.9"):
        response = xavier.post(f"{API}/me/studies/{uid}/hide/")
        assert (response.status_code, error(response)) == (404, "NOT_FOUND")
        assert last("study.hide").outcome == "deny"
    assert not StudyVisibility.objects.exists()


# Legal representatives: X-Act-For with django-guardian's consent.act_for_patient.
def test_a_representative_acts_for_the_represented_patient(cast):
    assign_perm("consent.act_for_patient", cast.yvonne.user, cast.xavier)
    client = client_for("yvonne")
    response = client.post(
        f"{API}/me/consents/", {"institutions": None}, format="json", HTTP_X_ACT_FOR=XAVIER_ID
    )
    assert response.status_code == 201
    assert Consent.objects.get(pk=response.json()["id"]).patient == cast.xavier
    event = last("consent.grant")
    assert (event.actor_username, event.on_behalf_of, event.patient) == (
        "yvonne",
        XAVIER_ID,
        XAVIER_ID,
    )


def test_acting_for_a_patient_without_the_permission_is_refused(cast):
    client = client_for("yvonne")
    response = client.get(f"{API}/me/record/", HTTP_X_ACT_FOR=XAVIER_ID)
    # The answer of an unknown patient: a patient account may not learn who is registered.
    assert (response.status_code, error(response)) == (404, "NOT_FOUND")
    event = last("record.view")
    assert (event.outcome, event.reason_code, event.on_behalf_of) == (
        "deny",
        "NOT_REPRESENTATIVE",
        XAVIER_ID,
    )


def test_acting_for_an_unknown_patient_is_a_404(cast):
    response = client_for("yvonne").get(f"{API}/me/record/", HTTP_X_ACT_FOR="1234")
    assert (response.status_code, error(response)) == (404, "NOT_FOUND")
    assert last("record.view").detail == {"act_for": "unknown"}


def test_acting_for_oneself_is_the_plain_case(cast):
    response = client_for("yvonne").get(f"{API}/me/record/", HTTP_X_ACT_FOR=YVONNE_ID)
    assert response.json()["national_id"] == YVONNE_ID


def test_who_can_see_explains_each_institution(xavier, cast):
    from .conftest import care, exclude

    consent_for(cast.xavier, ["CHL"])
    care(cast.alice, cast.xavier)
    care(cast.charlie, cast.xavier)
    exclude(cast.xavier, cast.bob)
    response = xavier.get(f"{API}/me/who-can-see/")
    assert response.status_code == 200
    body = response.json()
    by_code = {i["institution"]: i for i in body["institutions"]}
    assert body["record_status"] == "active"
    assert by_code["CHL"]["other_hospitals_studies_visible"] is True
    assert by_code["CHL"]["practitioners"][0]["username"] == "alice"
    assert by_code["HRS"]["other_hospitals_studies_visible"] is False
    assert "not consented" in by_code["HRS"]["why"]
    hrs_charlie = by_code["HRS"]["practitioners"][0]
    assert (
        hrs_charlie["own_studies"]["visible"],
        hrs_charlie["other_hospitals_studies"]["reason"],
    ) == (
        True,
        "NO_CONSENT",
    )
    assert by_code["CHEM"]["excluded"] == [{"username": "bob", "display_name": "Dr Bob Becker"}]
    assert last("record.view").detail == {"view": "who_can_see"}


def test_who_can_see_names_an_open_emergency_access(xavier, cast):
    reason = "Unconscious patient in the emergency department, history needed."
    body = {"reason": reason}
    declared = client_for("bob", "CHEM").post(
        f"{API}/patients/{XAVIER_ID}/emergency-access/", body, format="json"
    )
    assert declared.status_code == 201
    chem = {
        i["institution"]: i for i in xavier.get(f"{API}/me/who-can-see/").json()["institutions"]
    }["CHEM"]
    assert chem["other_hospitals_studies_visible"] is True
    assert "emergency" in chem["why"]
    assert "not consented" not in chem["why"]


def test_who_can_see_counts_hidden_studies_and_a_closed_record(xavier, cast):
    from .conftest import hide

    hide(cast.xavier, "1.2.5")
    xavier.post(f"{API}/me/record/close/")
    body = xavier.get(f"{API}/me/who-can-see/").json()
    assert (body["hidden_studies"], body["record_status"]) == (1, "closed")
    assert all("closed" in i["why"] for i in body["institutions"])


def test_who_can_see_is_for_patients_only(cast):
    response = client_for("alice", "CHL").get(f"{API}/me/who-can-see/")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/me/consents/99999999999999999999999999/revoke/"),
        ("delete", "/me/exclusions/99999999999999999999999999/"),
        ("post", "/me/consents/abc/revoke/"),
    ],
)
def test_an_id_that_cannot_exist_is_a_404_not_a_database_error(xavier, method, url):
    response = getattr(xavier, method)(f"{API}{url}")
    assert (response.status_code, error(response)) == (404, "NOT_FOUND")


def test_a_malformed_body_is_a_400(xavier):
    response = xavier.post(f"{API}/me/consents/", "{not json", content_type="application/json")
    assert (response.status_code, error(response)) == (400, "INVALID")


def test_a_consent_until_the_last_representable_day_is_a_400_not_a_500(cast):
    from tests.conftest import client_for

    response = client_for("xavier").post(
        "/api/v1/me/consents/", {"institutions": None, "valid_until": "9999-12-31"}, format="json"
    )
    assert response.status_code == 400
    assert "valid_until" in response.json()["error"]["message"]


def test_an_unavailable_audit_log_is_a_503_and_nothing_is_granted(cast, monkeypatch):
    from audit.errors import AuditUnavailable
    from consent import auditing
    from consent.models import Consent
    from tests.conftest import client_for

    client = client_for("xavier")

    def unavailable(event):
        raise AuditUnavailable("down")

    monkeypatch.setattr(auditing, "append", unavailable)
    response = client.post("/api/v1/me/consents/", {"institutions": None}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AUDIT_UNAVAILABLE"
    assert not Consent.objects.exists()


def test_a_refusal_after_the_gate_permitted_is_audited_as_a_deny(cast):
    from audit.models import AuditEvent
    from tests.conftest import YVONNE_ID, client_for

    mine = client_for("xavier").post("/api/v1/me/consents/", {"institutions": None}, format="json")
    other = client_for("yvonne").post(f"/api/v1/me/consents/{mine.json()['id']}/revoke/")
    assert other.status_code == 404
    event = AuditEvent.objects.order_by("-seq").first()
    assert (event.action, event.outcome, event.patient) == ("consent.revoke", "deny", YVONNE_ID)
    assert event.reason_code == "NOT_FOUND"
