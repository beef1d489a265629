"""Care relationships asserted by hospitals, emergency access and its DPO review."""

import datetime

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from consent.models import Affiliation, CareRelationship, EmergencyAccess, Institution
from tests.conftest import ADMIN, XAVIER_ID, YVONNE_ID, client_for

from .conftest import care, consent_for, exclude

API = "/api/v1"
REASON = "Unconscious patient in the emergency department, history needed."


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-seq").first()


def error(response) -> str:
    assert set(response.json()["error"]) == {"code", "message"}
    return response.json()["error"]["code"]


def assert_care(client, **overrides):
    body = {"patient": XAVIER_ID, "practitioner": "alice", "kind": "admission", **overrides}
    return client.post(f"{API}/care-relationships/", body, format="json")


def test_a_hospital_system_asserts_an_admission_for_its_practitioner(cast, settings):
    response = assert_care(client_for("chl-pacs", "CHL"))
    assert response.status_code == 201, response.json()
    link = CareRelationship.objects.get(pk=response.json()["id"])
    assert (link.kind, link.institution.code, link.asserted_by) == ("admission", "CHL", "chl-pacs")
    assert link.end - link.start == datetime.timedelta(days=settings.CARE_ADMISSION_DAYS)
    event = last("care.assert")
    assert (event.outcome, event.patient, event.basis_ids) == (
        "permit",
        XAVIER_ID,
        {"care_relationship": link.pk},
    )


def test_a_referral_takes_its_own_default_duration(cast, settings):
    settings.CARE_REFERRAL_DAYS = 10
    response = assert_care(client_for("chl-pacs", "CHL"), kind="referral")
    link = CareRelationship.objects.get(pk=response.json()["id"])
    assert link.end - link.start == datetime.timedelta(days=10)


def test_explicit_start_and_end_are_kept(cast):
    start = timezone.now().replace(microsecond=0)
    end = start + datetime.timedelta(days=2)
    response = assert_care(
        client_for("chl-pacs", "CHL"), start=start.isoformat(), end=end.isoformat()
    )
    link = CareRelationship.objects.get(pk=response.json()["id"])
    assert (link.start, link.end) == (start, end)
    bad = assert_care(client_for("chl-pacs", "CHL"), start=end.isoformat(), end=start.isoformat())
    assert (bad.status_code, error(bad)) == (400, "INVALID")
    assert "end" in bad.json()["error"]["message"]


def test_a_hospital_system_cannot_assert_for_another_hospitals_practitioner(cast):
    response = assert_care(client_for("chl-pacs", "CHL"), practitioner="bob")
    assert (response.status_code, error(response)) == (403, "NOT_AFFILIATED")
    assert not CareRelationship.objects.exists()
    event = last("care.assert")
    assert (event.outcome, event.reason_code, event.patient) == (
        "deny",
        "NOT_AFFILIATED",
        XAVIER_ID,
    )


def test_an_ended_affiliation_no_longer_counts(cast):
    Affiliation.objects.filter(practitioner=cast.alice).update(end=timezone.now())
    response = assert_care(client_for("chl-pacs", "CHL"))
    assert error(response) == "NOT_AFFILIATED"


@pytest.mark.parametrize(
    ("username", "institution", "code"),
    [
        ("alice", "CHL", "ROLE_NOT_ALLOWED"),
        ("xavier", None, "ROLE_NOT_ALLOWED"),
        ("dora", None, "ROLE_NOT_ALLOWED"),
    ],
)
def test_only_systems_and_administrators_assert_care(cast, username, institution, code):
    response = assert_care(client_for(username, institution))
    assert (response.status_code, error(response)) == (403, code)


def test_an_administrator_may_assert_for_anyone(cast, admin_user):
    response = assert_care(client_for("root"), practitioner="bob")
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("overrides", "field", "status"),
    [
        ({"patient": "1234"}, "patient", 400),
        ({"patient": YVONNE_ID[:-1] + "0"}, "patient", 400),
        ({"kind": "declared"}, "kind", 400),
        ({"practitioner": "nobody"}, "practitioner", 400),
        ({"start": "yesterday"}, "start", 400),
    ],
)
def test_bad_care_input_is_a_400_naming_the_field(cast, overrides, field, status):
    response = assert_care(client_for("chl-pacs", "CHL"), **overrides)
    assert (response.status_code, error(response)) == (status, "INVALID")
    assert field in response.json()["error"]["message"]


def test_an_unknown_patient_is_refused_and_audited(cast):
    from consent import national_id

    unknown = national_id.make(datetime.date(2001, 1, 1), 9)
    response = assert_care(client_for("chl-pacs", "CHL"), patient=unknown)
    assert (response.status_code, error(response)) == (400, "INVALID")
    assert last("care.assert").reason_code == "NOT_FOUND"


def test_a_hospital_system_ends_its_own_assertion_once(cast):
    chl = client_for("chl-pacs", "CHL")
    link_id = assert_care(chl).json()["id"]
    response = chl.post(f"{API}/care-relationships/{link_id}/end/")
    assert response.status_code == 200
    assert response.json()["active"] is False
    assert last("care.end").basis_ids == {"care_relationship": link_id}
    again = chl.post(f"{API}/care-relationships/{link_id}/end/")
    assert (again.status_code, error(again)) == (409, "ALREADY_ENDED")


def test_a_hospital_system_cannot_end_another_hospitals_assertion(cast):
    from consent.services import provisioning

    provisioning.account_create(
        actor=ADMIN, username="hrs-pacs", role="system", institution_code="HRS"
    )
    link_id = assert_care(client_for("chl-pacs", "CHL")).json()["id"]
    response = client_for("hrs-pacs", "HRS").post(f"{API}/care-relationships/{link_id}/end/")
    assert (response.status_code, error(response)) == (404, "NOT_FOUND")
    assert CareRelationship.objects.get(pk=link_id).ended_at is None
    missing = client_for("chl-pacs", "CHL").post(f"{API}/care-relationships/999999/end/")
    assert (missing.status_code, error(missing)) == (404, "NOT_FOUND")


# Emergency access.
def declare(client, national_id: str = XAVIER_ID, reason: str = REASON):
    return client.post(
        f"{API}/patients/{national_id}/emergency-access/", {"reason": reason}, format="json"
    )


@pytest.fixture
def with_email(cast):
    cast.xavier.user.email = "xavier@example.org"
    cast.xavier.user.save()
    return cast


def test_a_physician_declares_an_emergency_and_the_patient_is_told(
    with_email, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = declare(client_for("bob", "CHEM"))
    assert response.status_code == 201, response.json()
    access = EmergencyAccess.objects.get(pk=response.json()["id"])
    assert access.expires_at - access.start == datetime.timedelta(
        hours=settings.EMERGENCY_ACCESS_HOURS
    )
    assert (access.review, access.institution.code) == ("pending", "CHEM")
    event = last("emergency.declare")
    assert (event.outcome, event.basis, event.basis_ids["emergency_access"]) == (
        "permit",
        "EMERGENCY",
        access.pk,
    )
    assert REASON not in str(event.detail)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["xavier@example.org"]
    assert "Dr Bob Becker at CHEM" in mail.outbox[0].body
    assert "Xavier" not in mail.outbox[0].body


def bob_opens_xaviers_hrs_study(cast):
    """The gate's decision on Dr Bob (CHEM) opening Xavier's HRS study; raises on a deny."""
    from consent import gate

    from .conftest import actor, study

    return gate.authorize(
        actor(cast.bob.user, "CHEM"),
        gate.VIEW_IMAGES,
        patient=cast.xavier,
        study=study("1.9", "HRS", cast.xavier),
        audit_action="study.retrieve",
    )


def test_the_emergency_then_opens_the_patients_studies(with_email):
    declare(client_for("bob", "CHEM"))
    assert bob_opens_xaviers_hrs_study(with_email).basis == "EMERGENCY"


def test_the_patients_later_refusal_of_emergencies_closes_them(with_email):
    from consent import gate

    declare(client_for("bob", "CHEM"))
    refusal = {"institutions": ["CHL"], "allow_emergency": False}
    response = client_for("xavier").post(f"{API}/me/consents/", refusal, format="json")
    assert response.status_code == 201
    with pytest.raises(gate.AccessDenied):
        bob_opens_xaviers_hrs_study(with_email)
    assert last("study.retrieve").reason_code == "NO_CONSENT"


def test_a_refusal_ends_the_open_emergency_accesses_for_good(with_email):
    from consent import gate

    declared = declare(client_for("bob", "CHEM")).json()
    refusal = {"institutions": ["CHL"], "allow_emergency": False}
    xavier = client_for("xavier")
    granted = xavier.post(f"{API}/me/consents/", refusal, format="json").json()
    access = EmergencyAccess.objects.get(pk=declared["id"])
    assert access.expires_at <= timezone.now()
    assert last("consent.grant").detail["emergency_accesses_ended"] == [access.pk]
    # Revoking the refusal does not reopen it: a new emergency needs a new declaration.
    assert xavier.post(f"{API}/me/consents/{granted['id']}/revoke/").status_code == 200
    with pytest.raises(gate.AccessDenied):
        bob_opens_xaviers_hrs_study(with_email)
    # Still listed for the DPO's review.
    listed = client_for("dora").get(f"{API}/emergency-accesses/?review=pending").json()
    assert [row["id"] for row in listed] == [access.pk]


def test_the_declarations_time_is_written_as_the_lists(with_email):
    declared = declare(client_for("bob", "CHEM")).json()
    listed = client_for("dora").get(f"{API}/emergency-accesses/").json()
    (row,) = [r for r in listed if r["id"] == declared["id"]]
    assert declared["expires_at"] == row["expires_at"]


def test_a_short_reason_is_a_400(cast, settings):
    response = declare(
        client_for("bob", "CHEM"), reason="x" * (settings.EMERGENCY_REASON_MIN_LENGTH - 1)
    )
    assert (response.status_code, error(response)) == (400, "INVALID")
    assert "reason" in response.json()["error"]["message"]
    assert not EmergencyAccess.objects.exists()


def test_an_emergency_the_patient_refused_is_refused(cast):
    consent_for(cast.xavier, allow_emergency=False)
    response = declare(client_for("bob", "CHEM"))
    assert (response.status_code, error(response)) == (403, "EMERGENCY_REFUSED")
    assert last("emergency.declare").reason_code == "EMERGENCY_REFUSED"
    assert not EmergencyAccess.objects.exists()


def test_an_excluded_physician_cannot_declare_an_emergency(cast):
    exclude(cast.xavier, cast.bob)
    assert error(declare(client_for("bob", "CHEM"))) == "EXCLUDED_BY_PATIENT"


def test_a_profession_without_emergency_rights_cannot_declare(cast):
    from tests.conftest import Cast

    Cast._practitioner(cast, "nina", "Nina Nilles", "nurse", ["CHDN"])
    assert error(declare(client_for("nina", "CHDN"))) == "PROFESSION_NOT_ALLOWED"


@pytest.mark.parametrize("value", ["1234", "00000000000000", "1980051700000"])
def test_an_unknown_or_malformed_patient_is_a_404_and_audited(cast, value):
    response = declare(client_for("bob", "CHEM"), national_id=value)
    assert (response.status_code, error(response)) == (404, "NOT_FOUND")
    assert last("emergency.declare").outcome == "deny"


@pytest.mark.parametrize(
    ("username", "institution"), [("xavier", None), ("dora", None), ("chl-pacs", "CHL")]
)
def test_only_practitioners_declare_emergencies(cast, username, institution):
    assert declare(client_for(username, institution)).status_code == 403


def test_the_dpo_reviews_the_pending_queue(cast):
    access_id = declare(client_for("bob", "CHEM")).json()["id"]
    dora = client_for("dora")
    pending = dora.get(f"{API}/emergency-accesses/?review=pending").json()
    assert [a["id"] for a in pending] == [access_id]
    assert pending[0]["reason"] == REASON
    assert last("emergency.list").basis == "DPO"
    response = dora.post(
        f"{API}/emergency-accesses/{access_id}/review/",
        {"outcome": "justified", "note": "Checked with the ED."},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["review"], response.json()["reviewed_by"]) == ("justified", "dora")
    assert last("emergency.review").detail == {"outcome": "justified"}
    assert dora.get(f"{API}/emergency-accesses/?review=pending").json() == []
    again = dora.post(
        f"{API}/emergency-accesses/{access_id}/review/", {"outcome": "unjustified"}, format="json"
    )
    assert (again.status_code, error(again)) == (409, "ALREADY_REVIEWED")


def test_review_input_is_validated(cast):
    dora = client_for("dora")
    bad = dora.get(f"{API}/emergency-accesses/?review=maybe")
    assert (bad.status_code, error(bad)) == (400, "INVALID")
    missing = dora.post(
        f"{API}/emergency-accesses/999999/review/", {"outcome": "justified"}, format="json"
    )
    assert (missing.status_code, error(missing)) == (404, "NOT_FOUND")
    wrong = dora.post(f"{API}/emergency-accesses/1/review/", {"outcome": "fine"}, format="json")
    assert (wrong.status_code, error(wrong)) == (400, "INVALID")
    assert "outcome" in wrong.json()["error"]["message"]


@pytest.mark.parametrize(
    ("username", "institution"), [("alice", "CHL"), ("xavier", None), ("chl-pacs", "CHL")]
)
def test_only_the_dpo_sees_the_review_queue(cast, username, institution):
    response = client_for(username, institution).get(f"{API}/emergency-accesses/?review=pending")
    assert (response.status_code, error(response)) == (403, "ROLE_NOT_ALLOWED")


def test_a_practitioner_acts_only_for_the_tokens_institution(cast):
    # Bob's token is bound to CHEM; nothing in a request can make him act for CHL.
    with pytest.raises(Exception, match="not affiliated"):
        client_for("bob", "CHL")
    Affiliation.objects.create(
        practitioner=cast.bob, institution=Institution.objects.get(code="CHL")
    )
    client = client_for("bob", "CHL")
    Affiliation.objects.filter(practitioner=cast.bob, institution__code="CHL").update(
        end=timezone.now()
    )
    assert error(declare(client)) == "NOT_AFFILIATED"


def test_a_practitioner_cannot_reach_another_patient_by_changing_the_id(cast):
    care(cast.bob, cast.xavier)
    exclude(cast.yvonne, cast.bob)
    assert declare(client_for("bob", "CHEM")).status_code == 201
    response = declare(client_for("bob", "CHEM"), national_id=YVONNE_ID)
    assert error(response) == "EXCLUDED_BY_PATIENT"
    assert last("emergency.declare").patient == YVONNE_ID


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "2000-01-01T00:00:00Z", "end": "9999-01-01T00:00:00Z"}, "start"),
        ({"end": "2099-01-01T00:00:00Z"}, "end"),
        ({"start": "9999-12-31T00:00:00Z"}, "start"),
    ],
)
def test_a_hospital_cannot_assert_an_unbounded_or_backdated_relationship(cast, body, field):
    from consent.models import CareRelationship
    from tests.conftest import XAVIER_ID, client_for

    system = client_for("chl-pacs", "CHL")
    payload = {"patient": XAVIER_ID, "practitioner": "alice", "kind": "admission"} | body
    response = system.post("/api/v1/care-relationships/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{field}:")
    assert not CareRelationship.objects.exists()
