"""What the portal's pages say and ask, as a person reads them: confirmations, dates, words."""

import datetime
import re

import pytest
from django.utils import timezone

from consent.models import CareRelationship, Consent
from tests.conftest import YVONNE_ID

pytestmark = pytest.mark.django_db


def forms_posting_to(content: bytes, action: str) -> list[str]:
    """The opening tags of the forms that post to `action`."""
    html = content.decode()
    return [tag for tag in re.findall(r"<form\b[^>]*>", html) if f'action="{action}"' in tag]


def test_hiding_a_study_blocking_and_revoking_ask_first(portal_as, cast, xavier_studies):
    xavier = portal_as("xavier")
    consent = Consent.objects.create(patient=cast.xavier, all_members=True, granted_by="x")
    ct = xavier_studies["ct"].study_uid
    pages = [
        ("/me/studies/", f"/me/studies/{ct}/hide/"),
        ("/me/doctors/", "/me/doctors/block/"),
        ("/me/consents/", f"/me/consents/{consent.pk}/revoke/"),
        ("/me/", "/me/record/close/"),
    ]
    for page, action in pages:
        (form,) = forms_posting_to(xavier.get(page).content, action)
        assert "data-confirm=" in form, page
    (revoke,) = forms_posting_to(xavier.get("/me/consents/").content, pages[2][1])
    assert "the member hospitals no longer see" in revoke  # it names none: it covers all


def test_one_hour_of_emergency_access_is_not_one_hours(portal_as, cast, settings):
    settings.EMERGENCY_ACCESS_HOURS = 1
    response = portal_as("alice").get(f"/patients/{YVONNE_ID}/emergency/")
    assert b"1 hours" not in response.content
    assert b"The access lasts 1 hour and" in response.content


def test_the_emergency_form_asks_first_and_says_how_long(portal_as, cast, settings):
    settings.EMERGENCY_ACCESS_HOURS = 6
    response = portal_as("alice").get(f"/patients/{YVONNE_ID}/emergency/")
    (form,) = forms_posting_to(response.content, f"/patients/{YVONNE_ID}/emergency/declare/")
    assert "data-confirm=" in form
    assert "6 hours" in form
    assert b"The access lasts 6 hours" in response.content


def test_the_emergency_reason_is_described_by_its_help_and_error(portal_as, cast):
    alice = portal_as("alice")
    response = alice.post(f"/patients/{YVONNE_ID}/emergency/declare/", {"reason": "too short"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "too short</textarea>" in html  # the reason typed is kept
    described_by = re.search(r'aria-describedby="([^"]+)"', html).group(1).split()
    for element_id in described_by:
        assert f'id="{element_id}"' in html, element_id


def test_a_consent_shows_the_last_day_the_patient_chose(portal_as, cast):
    xavier = portal_as("xavier")
    response = xavier.post(
        "/me/consents/", {"scope": "all", "valid_until": "2030-01-01"}, follow=True
    )
    consents = re.search(r"<tbody>.*?</tbody>", response.content.decode(), re.S).group(0)
    assert "1 Jan 2030" in consents
    assert "2 Jan 2030" not in consents


def test_a_declared_doctor_shows_the_last_day_of_the_relationship(portal_as, cast):
    xavier = portal_as("xavier")
    xavier.post("/me/doctors/declare/", {"practitioner": "alice"})
    link = CareRelationship.objects.get(patient=cast.xavier)
    CareRelationship.objects.filter(pk=link.pk).update(
        end=timezone.make_aware(datetime.datetime(2031, 3, 1))
    )
    content = xavier.get("/me/doctors/").content.decode()
    assert 'until <time datetime="2031-02-28">28 Feb 2031</time>' in content


def test_my_studies_name_the_kind_of_imaging_in_plain_words(portal_as, cast, xavier_studies):
    response = portal_as("xavier").get("/me/studies/")
    kinds = {study.description: kind for study, _hidden, kind in response.context["rows"]}
    assert kinds == {"CT thorax": "CT scan", "MR knee": "MRI scan"}
    assert b"<td>CT scan</td>" in response.content
    assert b"<td>CT</td>" not in response.content


def test_a_patient_without_studies_is_told_where_they_come_from(portal_as, cast):
    response = portal_as("yvonne").get("/me/studies/")
    assert b"No imaging study has been linked to your record yet" in response.content
    assert b"ask the hospital that made it" in response.content


def test_the_audit_search_says_when_its_filters_are_wrong(portal_as, cast):
    response = portal_as("dora").get("/dpo/audit/", {"since": "not a date"})
    assert b"No search was run: correct the filters marked above." in response.content
    assert b"No event matches these filters" not in response.content
