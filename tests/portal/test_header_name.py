"""The header names the logged-in person, never in a place a patient's name would leak from."""

import re

import pytest
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def person(content: bytes) -> str:
    """The name shown in the header, next to the log-out button."""
    who = re.search(r'<div class="who">(.*?)<form', content.decode(), re.S).group(1)
    return re.findall(r"<span[^>]*>([^<]*)</span>", who)[-1]


def title(content: bytes) -> str:
    return re.search(r"<title>(.*?)</title>", content.decode(), re.S).group(1)


def test_a_patient_sees_their_own_name_but_not_in_the_title_or_the_log(portal_as, cast):
    xavier = portal_as("xavier")
    for page in ["/me/", "/me/consents/", "/me/access-log/"]:
        response = xavier.get(page)
        assert person(response.content) == "Xavier Demo", page
        assert "Xavier" not in title(response.content), page
    # The audit rows keep the username: the log never carries a patient's name.
    assert not AuditEvent.objects.filter(actor_display__icontains="Demo").exists()
    assert set(
        AuditEvent.objects.filter(actor_username="xavier").values_list("actor_display", flat=True)
    ) == {"xavier"}


def test_a_representative_sees_their_own_name_while_acting_for_the_child(portal_as, cast):
    assign_perm("consent.act_for_patient", cast.xavier.user, cast.yvonne)
    xavier = portal_as("xavier")
    xavier.post("/me/acting-for/", {"national_id": cast.yvonne.national_id})
    response = xavier.get("/me/")
    assert b"You are acting for <strong>Yvonne</strong>" in response.content
    assert person(response.content) == "Xavier Demo"


def test_a_practitioner_sees_their_display_name(portal_as, cast):
    response = portal_as("alice", "CHL").get("/patients/")
    assert person(response.content) == "Dr Alice Arend"


def test_the_dpo_sees_their_full_name_or_else_their_username(portal_as, cast):
    assert person(portal_as("dora").get("/dpo/audit/").content) == "dora"
    get_user_model().objects.filter(username="dora").update(first_name="Dora", last_name="Data")
    assert person(portal_as("dora").get("/dpo/audit/").content) == "Dora Data"
