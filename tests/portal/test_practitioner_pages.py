"""The practitioner's pages: find a patient, cross-hospital history, study, emergency."""

import io
import re

import pytest
from django.test import Client
from PIL import Image
from pydicom.uid import generate_uid

from audit.models import AuditEvent
from consent.models import EmergencyAccess
from tests.conftest import XAVIER_ID, YVONNE_ID
from tests.portal.conftest import admit, consent_to_all
from tests.portal.helpers import PASSWORD, set_password

pytestmark = pytest.mark.django_db


def without_csrf(content: bytes) -> bytes:
    """The page without its per-response CSRF token."""
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", content)


@pytest.fixture
def alice(portal_as, cast, xavier_studies):
    return portal_as("alice")


def test_it_sends_a_valid_national_id_to_the_patients_page(alice):
    response = alice.get("/patients/", {"national_id": f" {XAVIER_ID} "})
    assert response.url == f"/patients/{XAVIER_ID}/"


def test_it_explains_an_invalid_national_id(alice):
    response = alice.get("/patients/", {"national_id": "1980051700154"})
    assert response.status_code == 200
    assert b"The 12th digit (Luhn check digit) does not match." in response.content


def test_it_shows_shared_studies_but_never_the_hidden_one(alice, cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    response = alice.get(f"/patients/{XAVIER_ID}/")
    assert response.status_code == 200
    assert [s.study_uid for s in response.context["studies"]] == [xavier_studies["ct"].study_uid]
    assert b"CT thorax" in response.content
    assert b"MR knee" not in response.content
    assert response.context["withheld"] == []
    event = AuditEvent.objects.filter(action="patient.studies_list").last()
    assert (event.actor_username, event.acting_institution, event.patient) == (
        "alice",
        "CHL",
        XAVIER_ID,
    )


def test_it_names_the_withheld_hospital_and_the_reason(alice, cast):
    admit(cast.alice, cast.xavier)
    response = alice.get(f"/patients/{XAVIER_ID}/")
    assert response.context["studies"] == []
    assert [row[:2] for row in response.context["withheld"]] == [("CHEM", "NO_CONSENT")]
    assert b"has not consented to sharing with your hospital" in response.content
    assert f"/patients/{XAVIER_ID}/emergency/".encode() in response.content


def test_it_explains_a_refusal_and_offers_an_emergency(alice):
    response = alice.get(f"/patients/{XAVIER_ID}/")  # no care relationship
    assert response.status_code == 403
    assert b"NO_CARE_RELATIONSHIP" in response.content
    assert b"Declare an emergency" in response.content
    assert b"Xavier" not in response.content


def test_it_answers_404_for_an_unknown_patient(alice):
    assert alice.get("/patients/1980051700155/").status_code in (403, 404)
    assert alice.get("/patients/0000000000000/").status_code == 404


def test_it_opens_a_study_with_previews_through_dicomweb(alice, cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    uid = xavier_studies["ct"].study_uid
    response = alice.get(f"/patients/{XAVIER_ID}/studies/{uid}/")
    assert response.status_code == 200
    [(series, preview, _images)] = response.context["series"]
    assert preview.startswith(f"/dicomweb/studies/{uid}/series/{series.series_uid}/thumbnail?")
    image = alice.get(preview)  # the portal session is enough
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"
    # Sized for the preview box, not the image's own size (a 128-pixel CT here, scaled up).
    assert max(Image.open(io.BytesIO(image.content)).size) == 512
    assert AuditEvent.objects.filter(action="study.render", actor_username="alice").exists()


def test_a_hidden_study_looks_like_an_unknown_one(alice, cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    hidden = alice.get(f"/patients/{XAVIER_ID}/studies/{xavier_studies['mr'].study_uid}/")
    unknown = alice.get(f"/patients/{XAVIER_ID}/studies/1.2.3.4/")
    assert hidden.status_code == unknown.status_code == 404
    assert without_csrf(hidden.content) == without_csrf(unknown.content)


def test_it_does_not_open_a_study_under_another_patients_id(alice, cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    uid = xavier_studies["ct"].study_uid
    assert alice.get(f"/patients/{YVONNE_ID}/studies/{uid}/").status_code == 404


def _last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-seq").first()


@pytest.mark.parametrize("page", ["", "series/1.2.3/"])
def test_another_patients_study_under_this_patients_url_is_unknown(
    alice, cast, xavier_studies, page
):
    # Alice treats Xavier, not Yvonne: Yvonne's study under Xavier's URL is "not found",
    # not a refusal about Yvonne with an emergency button for Xavier.
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    yvonne_study = xavier_studies["yvonne"].study_uid
    wrong = alice.get(f"/patients/{XAVIER_ID}/studies/{yvonne_study}/{page}")
    unknown = alice.get(f"/patients/{XAVIER_ID}/studies/1.2.3.4/{page}")
    assert wrong.status_code == unknown.status_code == 404
    assert without_csrf(wrong.content) == without_csrf(unknown.content)
    assert b"emergency" not in wrong.content.lower()


def test_another_patients_study_is_never_audited_as_read(alice, cast, xavier_studies):
    # Alice treats both: the wrong URL must not leave a permitted read in Yvonne's log.
    for patient in (cast.xavier, cast.yvonne):
        consent_to_all(patient)
        admit(cast.alice, patient)
    yvonne_study = xavier_studies["yvonne"].study_uid
    assert alice.get(f"/patients/{XAVIER_ID}/studies/{yvonne_study}/").status_code == 404
    event = _last_event()
    assert (event.outcome, event.patient) == ("deny", "")
    alices = AuditEvent.objects.filter(actor_username="alice")
    assert not alices.filter(study_uid=yvonne_study).exists()
    assert not alices.filter(patient=cast.yvonne.national_id).exists()


def test_an_emergency_needs_a_written_reason(alice, cast):
    assert alice.get(f"/patients/{XAVIER_ID}/emergency/").status_code == 200
    response = alice.post(f"/patients/{XAVIER_ID}/emergency/declare/", {"reason": "urgent"})
    assert response.status_code == 400
    assert b"at least 20 characters" in response.content
    assert not EmergencyAccess.objects.exists()


def test_an_emergency_opens_the_studies_for_a_few_hours(alice, cast, xavier_studies):
    reason = "Unconscious patient admitted to the emergency room after a car accident."
    response = alice.post(
        f"/patients/{XAVIER_ID}/emergency/declare/", {"reason": reason}, follow=True
    )
    assert b"Emergency access declared" in response.content
    access = EmergencyAccess.objects.get()
    assert (access.practitioner, access.institution.code, access.reason) == (
        cast.alice,
        "CHL",
        reason,
    )
    assert [s.study_uid for s in response.context["studies"]] == [xavier_studies["ct"].study_uid]


def test_it_refuses_the_practitioner_pages_to_patients_and_the_dpo(portal_as, cast):
    assert portal_as("xavier").get(f"/patients/{XAVIER_ID}/").status_code == 403
    assert portal_as("dora").get("/patients/").status_code == 403


@pytest.mark.parametrize("who", ["dora", "yvonne"])
def test_a_refusal_by_role_is_audited_without_the_patient(portal_as, cast, xavier_studies, who):
    # As the API audits ROLE_NOT_ALLOWED; the URL's patient is not resolved for this role.
    study = xavier_studies["ct"]
    client = portal_as(who)
    pages = [
        f"/patients/{XAVIER_ID}/",
        f"/patients/{XAVIER_ID}/studies/{study.study_uid}/",
        f"/patients/{XAVIER_ID}/studies/{study.study_uid}/series/{study.series_uid}/",
    ]
    for page in pages:
        assert client.get(page).status_code == 403
    events = AuditEvent.objects.filter(action="portal.page_refused").order_by("seq")
    assert [(e.actor_username, e.outcome, e.reason_code, e.patient) for e in events] == [
        (who, "deny", "ROLE_NOT_ALLOWED", "")
    ] * 3
    assert [e.detail["view"] for e in events] == [
        "portal:patient-studies",
        "portal:study-detail",
        "portal:series-viewer",
    ]


def test_the_dpo_reviews_an_emergency(alice, portal_as, cast):
    reason = "Unconscious patient admitted to the emergency room after a car accident."
    alice.post(f"/patients/{XAVIER_ID}/emergency/declare/", {"reason": reason})
    access = EmergencyAccess.objects.get()
    dora = portal_as("dora")
    page = dora.get("/dpo/emergencies/")
    assert reason.encode() in page.content
    dora.post(f"/dpo/emergencies/{access.pk}/review/", {"outcome": "justified", "note": "ok"})
    access.refresh_from_db()
    assert (access.review, access.reviewed_by) == ("justified", "dora")
    assert b"Nothing to review" in dora.get("/dpo/emergencies/").content


def test_the_dpo_never_sees_images_even_with_the_url(alice, portal_as, cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    uid = xavier_studies["ct"].study_uid
    page = alice.get(f"/patients/{XAVIER_ID}/studies/{uid}/")
    [(_series, preview, _images)] = page.context["series"]
    dora = portal_as("dora")
    # Refused for her role, as for an unknown study: its existence is not confirmed to her.
    unknown = preview.replace(uid, generate_uid())
    assert dora.get(preview).status_code == 403
    assert dora.get(unknown).status_code == 403
    assert dora.get(f"/patients/{XAVIER_ID}/studies/{uid}/").status_code == 403


def test_a_practitioner_without_the_second_factor_gets_no_images(cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    set_password("alice")
    client = Client()
    client.post("/login/", {"username": "alice", "password": PASSWORD})  # TOTP step skipped
    uid = xavier_studies["ct"].study_uid
    assert client.get(f"/patients/{XAVIER_ID}/").status_code == 302
    assert client.get(f"/dicomweb/studies/{uid}/metadata").status_code in (401, 403)
