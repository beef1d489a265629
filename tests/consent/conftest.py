"""Helpers of the consent tests: actors of the cast, studies as plain references, facts."""

import datetime
from dataclasses import dataclass

import pytest
from django.utils import timezone

from consent.actors import Actor, actor_for
from consent.models import CareRelationship, Consent, Exclusion, Institution, StudyVisibility

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Study:
    """What the gate needs of a study (consent.gate.StudyRef)."""

    study_uid: str
    institution_id: int
    patient_id: int | None


def inst(code: str) -> Institution:
    return Institution.objects.get(code=code)


def study(uid: str, code: str, patient) -> Study:
    return Study(uid, inst(code).pk, patient.pk if patient else None)


def actor(user, code: str | None = None) -> Actor:
    return actor_for(user, institution=inst(code) if code else None, request_id="test")


def consent_for(patient, codes: list[str] | None = None, **fields) -> Consent:
    consent = Consent.objects.create(
        patient=patient, all_members=codes is None, granted_by="test", **fields
    )
    if codes:
        consent.institutions.set([inst(c) for c in codes])
    return consent


def care(practitioner, patient, kind: str = "admission", **fields) -> CareRelationship:
    fields.setdefault("end", timezone.now() + 30 * DAY)
    return CareRelationship.objects.create(
        practitioner=practitioner, patient=patient, kind=kind, asserted_by="test", **fields
    )


def exclude(patient, practitioner) -> Exclusion:
    return Exclusion.objects.create(patient=patient, practitioner=practitioner, created_by="test")


def hide(patient, uid: str) -> StudyVisibility:
    return StudyVisibility.objects.create(patient=patient, study_uid=uid, hidden_by="test")


@pytest.fixture
def shared(cast):
    """Xavier consents to all members; Alice (CHL) has an admission with him."""
    consent_for(cast.xavier)
    care(cast.alice, cast.xavier)
    return cast
