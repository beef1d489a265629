"""The DPO's pages: audit search with filters, integrity verification, role checks."""

import datetime
import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from audit.events import Event
from audit.models import AuditEvent
from audit.services import append
from consent.models import EmergencyAccess, Institution
from tests.conftest import XAVIER_ID, YVONNE_ID

pytestmark = pytest.mark.django_db


def event(**fields) -> None:
    base = {"action": "patient.studies_list", "outcome": "permit", "actor_role": "practitioner"}
    append(Event(**{**base, **fields}))


def test_it_lists_audit_events_newest_first(portal_as):
    event(actor_username="alice", patient=XAVIER_ID, acting_institution="CHL", basis="CONSENT")
    event(actor_username="bob", patient=YVONNE_ID, outcome="deny", reason_code="NO_CONSENT")
    client = portal_as("dora")
    response = client.get("/dpo/audit/")
    assert response.status_code == 200
    seqs = [e.seq for e, _label in response.context["rows"]]
    assert seqs == sorted(seqs, reverse=True)
    assert b"NO_CONSENT" in response.content
    assert b"Listed the patient&#x27;s studies" in response.content


def test_it_filters_by_patient_actor_and_outcome(portal_as):
    event(actor_username="alice", patient=XAVIER_ID, acting_institution="CHL")
    event(actor_username="bob", patient=YVONNE_ID, outcome="deny", reason_code="NO_CONSENT")
    client = portal_as("dora")
    rows = client.get("/dpo/audit/", {"patient": YVONNE_ID, "outcome": "deny"}).context["rows"]
    assert [e.actor_username for e, _ in rows] == ["bob"]
    rows = client.get("/dpo/audit/", {"actor": "alice", "outcome": "permit"}).context["rows"]
    assert [e.patient for e, _ in rows] == [XAVIER_ID]
    rows = client.get("/dpo/audit/", {"institution": "chl"}).context["rows"]
    assert [e.actor_username for e, _ in rows] == ["alice"]
    assert client.get("/dpo/audit/", {"action": "study.retrieve"}).context["rows"] == []


def test_it_pages_back_with_older_events(portal_as):
    for n in range(55):
        event(actor_username=f"user{n}", patient=XAVIER_ID)
    client = portal_as("dora")
    query = {"patient": XAVIER_ID, "action": "patient.studies_list"}
    first = client.get("/dpo/audit/", query)
    assert len(first.context["rows"]) == 50
    older = first.context["older"]
    second = client.get("/dpo/audit/", {**query, "before": older})
    assert len(second.context["rows"]) == 5
    assert second.context["older"] is None


def test_it_records_the_dpo_search_in_the_audit_log(portal_as):
    client = portal_as("dora")
    client.get("/dpo/audit/", {"patient": XAVIER_ID})
    search = AuditEvent.objects.filter(action="audit.search").get()
    assert (search.actor_username, search.basis) == ("dora", "DPO")
    assert search.detail["filters"] == {"patient": XAVIER_ID}


def test_it_verifies_the_chain_on_request(portal_as):
    event(actor_username="alice", patient=XAVIER_ID)
    client = portal_as("dora")
    assert client.get("/dpo/verify/").context["result"] is None
    response = client.post("/dpo/verify/")
    assert response.context["result"].valid
    assert b"The audit log verifies" in response.content
    assert AuditEvent.objects.filter(action="audit.verify").count() == 1


@pytest.mark.parametrize("username", ["alice", "xavier"])
def test_it_refuses_the_audit_pages_to_anyone_but_the_dpo(portal_as, username):
    client = portal_as(username, "CHL")
    assert client.get("/dpo/audit/").status_code == 403
    assert client.post("/dpo/verify/").status_code == 403


def test_it_sends_an_anonymous_visitor_to_the_login(cast, client):
    assert client.get("/dpo/audit/").url == "/login/?next=/dpo/audit/"


def test_it_filters_by_a_period_of_whole_days(portal_as):
    event(actor_username="alice", patient=XAVIER_ID)
    client = portal_as("dora")
    today = timezone.localdate().isoformat()
    rows = client.get("/dpo/audit/", {"since": today, "until": today, "actor": "alice"})
    assert len(rows.context["rows"]) == 1
    assert client.get("/dpo/audit/", {"until": "2000-01-01"}).context["rows"] == []


def test_it_exports_what_the_dpo_filtered(portal_as):
    event(actor_username="alice", patient=XAVIER_ID, acting_institution="CHL")
    event(actor_username="bob", patient=YVONNE_ID)
    client = portal_as("dora")
    page = client.get("/dpo/audit/", {"patient": XAVIER_ID, "action": "patient.studies_list"})
    link = re.search(r'href="(/api/v1/audit/export/\?format=csv[^"]*)"', page.content.decode())
    export = client.get(link.group(1).replace("&amp;", "&"))
    assert export.status_code == 200
    body = b"".join(export.streaming_content).decode()
    assert "alice" in body
    assert "bob" not in body


def test_the_review_links_to_what_a_practitioner_with_a_plus_in_the_name_opened(portal_as, cast):
    # Django usernames may hold "+", which a query string reads as a space: the link to what
    # the practitioner opened must name them exactly, or the DPO reviews nothing.
    get_user_model().objects.filter(pk=cast.bob.user.pk).update(username="bob+er")
    EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=cast.xavier,
        reason="Unconscious after a road accident, brought to our ER.",
        expires_at=timezone.now() + datetime.timedelta(hours=4),
    )
    page = portal_as("dora").get("/dpo/emergencies/").content.decode()
    assert f"?patient={XAVIER_ID}&amp;actor=bob%2Ber" in page


def _emergency_access(cast) -> EmergencyAccess:
    """Bob (CHEM) broke the glass for Xavier; the DPO is to review it."""
    return EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=cast.xavier,
        reason="Unconscious after a road accident, brought to our ER.",
        expires_at=timezone.now() + datetime.timedelta(hours=4),
    )


def test_the_review_tells_whether_the_patient_was_told(portal_as, cast):
    from consent.services.notices import emergency_notice_send

    access = _emergency_access(cast)
    dora = portal_as("dora")
    assert "patient not told yet" in dora.get("/dpo/emergencies/").content.decode()
    assert emergency_notice_send(access_id=access.pk) == "no_address"
    assert "patient has no e-mail address" in dora.get("/dpo/emergencies/").content.decode()
    EmergencyAccess.objects.filter(pk=access.pk).update(patient_notice="failed")
    assert "patient notice could not be delivered" in dora.get("/dpo/emergencies/").content.decode()


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"note": "Seen the ER log."}, "choose justified or unjustified"),
        ({"outcome": "justified", "note": "x" * 2001}, "the note is longer than 2000 characters"),
    ],
)
def test_a_review_not_recorded_says_why(portal_as, cast, posted, message):
    access = _emergency_access(cast)
    dora = portal_as("dora")
    page = dora.post(f"/dpo/emergencies/{access.pk}/review/", posted, follow=True)
    assert f"Review not recorded: {message}." in page.content.decode()
    access.refresh_from_db()
    assert access.review == "pending"


def test_reviewed_emergencies_come_newest_first_a_page_at_a_time(portal_as, cast):
    # Before, the page showed the 50 oldest reviews: the DPO never saw a new one again.
    reviewed = [_emergency_access(cast) for _ in range(52)]
    EmergencyAccess.objects.update(
        review="justified", reviewed_by="dora", reviewed_at=timezone.now()
    )
    dora = portal_as("dora")
    first = dora.get("/dpo/emergencies/")
    assert [a.pk for a in first.context["reviewed"]] == [a.pk for a in reversed(reviewed)][:50]
    older = first.context["older"]
    assert f'href="?before={older}"' in first.content.decode()
    second = dora.get("/dpo/emergencies/", {"before": older})
    assert [a.pk for a in second.context["reviewed"]] == [reviewed[1].pk, reviewed[0].pk]
    assert second.context["older"] is None
    assert dora.get("/dpo/emergencies/", {"before": "\u00b2"}).status_code == 200


def test_a_second_review_in_the_portal_is_audited_about_the_patient(portal_as, cast):
    access = _emergency_access(cast)
    EmergencyAccess.objects.update(
        review="justified", reviewed_by="dora", reviewed_at=timezone.now()
    )
    page = portal_as("dora").post(
        f"/dpo/emergencies/{access.pk}/review/", {"outcome": "unjustified"}, follow=True
    )
    assert "reviewed already" in page.content.decode()
    event = AuditEvent.objects.filter(action="emergency.review").get()
    assert (event.outcome, event.reason_code) == ("deny", "ALREADY_REVIEWED")
    assert (event.patient, event.detail) == (
        access.patient.national_id,
        {"emergency_access": access.pk},
    )
