"""seed_demo: the demo data, idempotent, with the log-ins printed."""

import pytest
from django.core.management import call_command

from consent.models import Account, Institution, InstitutionAETitle, Patient, Practitioner

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
