"""seed_demo: the demo data, idempotent, with the log-ins printed."""

import re

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from consent.management.commands.seed_demo import DEMO_PASSWORD
from consent.models import Account, Institution, InstitutionAETitle, Patient, Practitioner
from tests.portal.helpers import totp_code

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def debug(debug_settings) -> None:
    """seed_demo runs only where DEBUG is on."""


def test_it_refuses_to_run_without_debug(settings) -> None:
    from django.core.management import CommandError

    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=True only"):
        call_command("seed_demo")
    assert not Institution.objects.exists()


def test_it_seeds_the_four_hospitals_and_prints_the_logins(capsys) -> None:
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert set(Institution.objects.values_list("code", flat=True)) == {"CHL", "CHDN", "CHEM", "HRS"}
    assert set(InstitutionAETitle.objects.values_list("ae_title", flat=True)) == {
        "CHL_PACS",
        "CHDN_PACS",
        "CHEM_PACS",
        "HRS_PACS",
    }
    assert "alice" in out
    assert "dora" in out
    assert Account.objects.filter(role="dpo").exists()


def test_it_is_idempotent() -> None:
    call_command("seed_demo")
    counts = (Practitioner.objects.count(), Patient.objects.count(), Institution.objects.count())
    call_command("seed_demo")
    assert (
        Practitioner.objects.count(),
        Patient.objects.count(),
        Institution.objects.count(),
    ) == counts


def test_the_demo_practitioners_work_at_different_hospitals() -> None:
    call_command("seed_demo")
    codes = {
        a.institution.code
        for p in Practitioner.objects.all()
        for a in p.affiliation_set.select_related("institution")
    }
    assert len(codes) >= 3


def printed_codes(out: str) -> dict[str, str]:
    """Each demo log-in's enrolment code, as the login list prints it."""
    return dict(re.findall(r"^  (\S+) .* enrolment code ([A-Z2-7-]{19})$", out, re.M))


def test_it_prints_an_enrolment_code_for_each_log_in_with_a_second_factor(capsys) -> None:
    cache.clear()  # no log-in counter left by another test
    call_command("seed_demo")
    codes = printed_codes(capsys.readouterr().out)
    assert set(codes) == {"alice", "bob", "charlie", "nina", "dora", "admin"}
    # `make run` stays one command: the printed code sets up Alice's app in the portal.
    client = Client()
    client.post("/login/", {"username": "alice", "password": DEMO_PASSWORD})
    client.get("/login/enrol/")
    device = TOTPDevice.objects.get(user__username="alice", confirmed=False)
    response = client.post(
        "/login/enrol/", {"enrolment_code": codes["alice"], "token": totp_code(device)}
    )
    assert response.status_code == 302
    # Run again: Alice keeps her app; the others get new codes, the earlier ones are void.
    call_command("seed_demo")
    out = capsys.readouterr().out
    again = printed_codes(out)
    assert set(again) == {"bob", "charlie", "nina", "dora", "admin"}
    assert re.search(r"^  alice .* authenticator app set up$", out, re.M)
    assert not set(again.values()) & set(codes.values())
    issued = AuditEvent.objects.filter(action="auth.enrolment_code_issue")
    assert issued.count() == 11
    assert all(code not in str(issued.values_list()) for code in codes.values())
