"""seed_demo_consent: the demo's consents, closed record and care relationships, idempotent."""

import pytest
from django.core.management import call_command

from consent.models import CareRelationship, Consent, Patient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("debug_settings")]


def test_it_seeds_the_demo_cases_once():
    call_command("seed_demo")
    call_command("seed_demo")
    consents = Consent.objects.select_related("patient__user")
    assert [(c.patient.user.username, c.all_members, c.allow_emergency) for c in consents] == [
        ("xavier", True, True)
    ]
    assert Patient.objects.get(user__username="zoe").record.status == "closed"
    assert Patient.objects.get(user__username="yvonne").record.status == "active"
    links = CareRelationship.objects.values_list("practitioner__user__username", "kind")
    assert sorted(links) == [("alice", "admission"), ("charlie", "referral")]
