"""The patient's pages: record status, consents, who can see, doctors, acting for a child."""

import datetime

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.timezone import localtime
from guardian.shortcuts import assign_perm, remove_perm

from audit.models import AuditEvent
from consent.models import CareRelationship, Consent, Exclusion, SharedRecord, StudyVisibility
from tests.conftest import XAVIER_ID
from tests.portal.helpers import PASSWORD, set_password

pytestmark = pytest.mark.django_db


@pytest.fixture
def xavier(portal_as):
    return portal_as("xavier")


def test_it_shows_the_record_status(xavier):
    response = xavier.get("/me/")
    assert response.status_code == 200
    assert b"My shared record" in response.content
    assert XAVIER_ID.encode() in response.content
    assert AuditEvent.objects.filter(action="record.view", patient=XAVIER_ID).exists()


def test_it_closes_and_reopens_the_record(xavier, cast):
    response = xavier.post("/me/record/close/", follow=True)
    assert b"Your shared record is closed" in response.content
    assert SharedRecord.objects.get(patient=cast.xavier).status == "closed"
    event = AuditEvent.objects.filter(action="record.close").get()
    assert (event.actor_username, event.patient) == ("xavier", XAVIER_ID)
    xavier.post("/me/record/reopen/")
    assert SharedRecord.objects.get(patient=cast.xavier).status == "active"


def test_it_refuses_a_form_without_csrf_token(cast):
    set_password("xavier")
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    token = page.cookies["csrftoken"].value
    client.post(
        "/login/", {"username": "xavier", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert client.post("/me/record/close/").status_code == 403
    assert SharedRecord.objects.get(patient=cast.xavier).status == "active"


def test_it_grants_consent_to_all_members_and_revokes_it(xavier, cast):
    response = xavier.post("/me/consents/", {"scope": "all", "allow_emergency": "on"}, follow=True)
    assert b"Consent granted" in response.content
    consent = Consent.objects.get(patient=cast.xavier)
    assert consent.all_members
    assert consent.allow_emergency
    assert consent.channel == "portal"
    assert b"Active" in response.content
    response = xavier.post(f"/me/consents/{consent.pk}/revoke/", follow=True)
    assert b"Consent revoked" in response.content
    consent.refresh_from_db()
    assert consent.revoked_by == "xavier"
    assert list(
        AuditEvent.objects.filter(patient=XAVIER_ID, action__startswith="consent.")
        .order_by("seq")
        .values_list("action", flat=True)
    ) == ["consent.grant", "consent.list", "consent.revoke", "consent.list"]


def test_it_grants_consent_to_chosen_hospitals_until_a_date(xavier, cast):
    xavier.post(
        "/me/consents/",
        {"scope": "some", "institutions": ["CHL", "HRS"], "valid_until": "2099-12-31"},
    )
    consent = Consent.objects.get(patient=cast.xavier)
    assert sorted(i.code for i in consent.institutions.all()) == ["CHL", "HRS"]
    assert not consent.all_members
    assert not consent.allow_emergency
    # Through the whole chosen day, in Luxembourg time (periods exclude their end).
    assert localtime(consent.valid_until).isoformat() == "2100-01-01T00:00:00+01:00"


def test_a_last_day_in_the_past_is_refused_on_its_field(xavier, cast):
    yesterday = timezone.localdate() - datetime.timedelta(days=1)
    response = xavier.post("/me/consents/", {"scope": "all", "valid_until": yesterday})
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "valid_until": ["The last day cannot be in the past."]
    }
    assert b"must be in the future" not in response.content  # not the service's words
    assert not Consent.objects.exists()


def test_today_is_a_last_day(xavier, cast):
    xavier.post("/me/consents/", {"scope": "all", "valid_until": timezone.localdate()})
    assert Consent.objects.filter(patient=cast.xavier).exists()


def test_it_asks_for_hospitals_when_the_patient_chooses_some(xavier, cast):
    response = xavier.post("/me/consents/", {"scope": "some"})
    assert response.status_code == 200
    assert b"Choose at least one hospital" in response.content
    assert not Consent.objects.exists()


def test_it_cannot_revoke_another_patients_consent(xavier, portal_as, cast):
    yvonne = portal_as("yvonne")
    yvonne.post("/me/consents/", {"scope": "all"})
    consent = Consent.objects.get(patient=cast.yvonne)
    response = xavier.post(f"/me/consents/{consent.pk}/revoke/", follow=True)
    assert b"No such consent" in response.content
    consent.refresh_from_db()
    assert consent.revoked_at is None


def test_it_explains_who_can_see_the_images(xavier, cast):
    response = xavier.get("/me/who-can-see/")
    assert response.status_code == 200
    assert b"You have not consented to sharing with CHL" in response.content
    xavier.post("/me/consents/", {"scope": "all"})
    xavier.post("/me/doctors/declare/", {"practitioner": "alice"})
    response = xavier.get("/me/who-can-see/")
    overview = {i["institution"]: i for i in response.context["overview"]["institutions"]}
    assert overview["CHL"]["other_hospitals_studies_visible"]
    assert b"Dr Alice Arend" in response.content


def test_it_blocks_and_unblocks_a_practitioner(xavier, cast):
    response = xavier.post("/me/doctors/block/", {"practitioner": "bob"}, follow=True)
    assert b"Dr Bob Becker is blocked" in response.content
    exclusion = Exclusion.objects.get(patient=cast.xavier, practitioner=cast.bob)
    xavier.post(f"/me/doctors/blocked/{exclusion.pk}/unblock/")
    exclusion.refresh_from_db()
    assert exclusion.removed_by == "xavier"


def test_it_declares_the_patients_own_doctor(xavier, cast):
    xavier.post("/me/doctors/declare/", {"practitioner": "alice"})
    link = CareRelationship.objects.get(patient=cast.xavier)
    assert (link.practitioner, link.kind) == (cast.alice, "declared")
    assert b"Dr Alice Arend" in xavier.get("/me/doctors/").content


def test_it_refuses_the_patient_pages_to_a_practitioner(portal_as):
    assert portal_as("alice").get("/me/").status_code == 403


def test_a_representative_acts_for_the_child(xavier, cast):
    assign_perm("consent.act_for_patient", cast.xavier.user, cast.yvonne)
    xavier.post("/me/acting-for/", {"national_id": cast.yvonne.national_id})
    response = xavier.get("/me/")
    assert b"You are acting for <strong>Yvonne</strong>" in response.content
    xavier.post("/me/consents/", {"scope": "all"})
    assert Consent.objects.filter(patient=cast.yvonne).count() == 1
    assert not Consent.objects.filter(patient=cast.xavier).exists()
    event = AuditEvent.objects.filter(action="consent.grant").get()
    assert (event.actor_username, event.patient) == ("xavier", cast.yvonne.national_id)
    assert event.on_behalf_of == cast.yvonne.national_id
    xavier.post("/me/acting-for/", {"national_id": ""})
    assert b"My shared record" in xavier.get("/me/").content


def test_it_does_not_let_a_patient_act_for_someone_unrelated(xavier, cast):
    xavier.post("/me/acting-for/", {"national_id": cast.yvonne.national_id})
    assert "portal_acting_for" not in xavier.session
    session = xavier.session
    session["portal_acting_for"] = cast.yvonne.national_id  # a forged claim
    session.save()
    response = xavier.get("/me/")
    # The claim is dropped: his own record, nothing of Yvonne's, not even that she exists.
    assert response.status_code == 200
    assert b"My shared record" in response.content
    assert cast.yvonne.national_id.encode() not in response.content
    assert "portal_acting_for" not in xavier.session
    theirs = AuditEvent.objects.filter(actor_username="xavier", patient=cast.yvonne.national_id)
    assert not theirs.exists()


def test_a_representation_that_ended_falls_back_to_ones_own_record(xavier, cast):
    assign_perm("consent.act_for_patient", cast.xavier.user, cast.yvonne)
    xavier.post("/me/acting-for/", {"national_id": cast.yvonne.national_id})
    assert b"You are acting for <strong>Yvonne</strong>" in xavier.get("/me/").content
    remove_perm("consent.act_for_patient", cast.xavier.user, cast.yvonne)
    for path in ("/me/consents/", "/me/studies/", "/me/access-log/"):
        assert xavier.get(path).status_code == 200, path
    response = xavier.get("/me/")
    assert b"My shared record" in response.content
    assert b"acting for <strong>Yvonne</strong>" not in response.content


def test_a_representation_that_ended_is_explained_once(xavier, cast):
    assign_perm("consent.act_for_patient", cast.xavier.user, cast.yvonne)
    xavier.post("/me/acting-for/", {"national_id": cast.yvonne.national_id})
    remove_perm("consent.act_for_patient", cast.xavier.user, cast.yvonne)
    assert b"You no longer act for the person you chose" in xavier.get("/me/").content
    assert b"You no longer act for" not in xavier.get("/me/").content


def test_it_lists_my_studies_and_hides_one(xavier, cast, xavier_studies):
    response = xavier.get("/me/studies/")
    rows = {study.study_uid: hidden for study, hidden, _kind in response.context["rows"]}
    ct, mr = xavier_studies["ct"].study_uid, xavier_studies["mr"].study_uid
    assert rows == {ct: False, mr: True}
    assert xavier_studies["yvonne"].study_uid.encode() not in response.content
    xavier.post(f"/me/studies/{ct}/hide/")
    xavier.post(f"/me/studies/{mr}/unhide/")
    rows = {s.study_uid: hidden for s, hidden, _kind in xavier.get("/me/studies/").context["rows"]}
    assert rows == {ct: True, mr: False}
    assert AuditEvent.objects.filter(action="study.hide", study_uid=ct).exists()


def test_it_cannot_hide_another_patients_study(xavier, cast, xavier_studies):
    response = xavier.post(f"/me/studies/{xavier_studies['yvonne'].study_uid}/hide/")
    assert response.status_code == 404
    assert not StudyVisibility.objects.filter(patient=cast.yvonne).exists()


def test_the_access_log_shows_who_looked_and_why(xavier, portal_as, cast, xavier_studies):
    consent = Consent.objects.create(patient=cast.xavier, all_members=True, granted_by="x")
    CareRelationship.objects.create(
        practitioner=cast.alice,
        patient=cast.xavier,
        kind="admission",
        asserted_by="test",
        end=consent.granted_at + datetime.timedelta(days=30),
    )
    portal_as("alice").get(f"/patients/{XAVIER_ID}/")
    portal_as("bob").get(f"/patients/{XAVIER_ID}/")  # no care relationship: refused
    response = xavier.get("/me/access-log/")
    assert response.status_code == 200
    who = [(e.actor_username, e.outcome) for e, _ in response.context["rows"]]
    assert ("alice", "permit") in who
    assert ("bob", "deny") in who
    assert all(username != "xavier" for username, _ in who)  # own actions hidden by default
    assert b"Dr Alice Arend" in response.content
    mine = xavier.get("/me/access-log/", {"mine": "1"}).context["rows"]
    assert any(e.actor_username == "xavier" for e, _ in mine)
