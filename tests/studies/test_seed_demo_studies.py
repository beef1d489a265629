"""seed_demo_studies: real studies for the demo patients, reconciled, idempotent."""

import pytest
from django.core.management import call_command

from consent.models import Patient
from studies.models import Instance, Study


@pytest.fixture
def seeded(db, debug_settings, django_capture_on_commit_callbacks, capsys):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")
    return capsys.readouterr().out


def test_it_stores_studies_of_the_demo_patients_at_several_hospitals(seeded):
    assert "Demo studies: 10 stored, 0 already there, 0 refused" in seeded
    xavier = Patient.objects.get(user__username="xavier")
    assert set(
        Study.objects.filter(patient=xavier).values_list("institution__code", flat=True)
    ) == {"CHEM", "HRS", "CHL"}
    assert Study.objects.filter(patient__isnull=True).count() == 1
    assert Study.objects.filter(patient__user__username="zoe").count() == 2


def test_it_is_idempotent(seeded, django_capture_on_commit_callbacks, capsys):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo_studies")
    assert "Demo studies: 0 stored, 10 already there, 0 refused" in capsys.readouterr().out
    assert Instance.objects.count() == 10
