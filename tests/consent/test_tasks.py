"""Expiries: the task records and notifies; the rule never waits for it (it reads the clock)."""

import datetime

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from consent import gate
from consent.gate import AccessDenied
from consent.models import EmergencyAccess, Institution
from consent.tasks import expire_due

from .conftest import actor, care, consent_for, study

HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def expired(cast):
    now = timezone.now()
    cast.xavier.user.email = "xavier@example.org"
    cast.xavier.user.save()
    consent = consent_for(cast.xavier, valid_from=now - 3 * HOUR, valid_until=now - HOUR)
    link = care(cast.alice, cast.xavier, start=now - 3 * HOUR, end=now - HOUR)
    access = EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=cast.xavier,
        reason="x" * 30,
        start=now - 5 * HOUR,
        expires_at=now - HOUR,
        # The "declared" notice went out: the "ended" one waits for it.
        patient_notified_at=now - 5 * HOUR,
        patient_notice="sent",
    )
    consent_for(cast.xavier)  # still active: untouched
    return consent, link, access


def test_the_rule_denies_an_expired_consent_before_the_task_runs(expired, cast):
    care(cast.alice, cast.xavier)
    with pytest.raises(AccessDenied):
        gate.authorize(
            actor(cast.bob.user, "CHEM"),
            gate.VIEW_IMAGES,
            patient=cast.xavier,
            study=study("1.1", "CHL", cast.xavier),
            audit_action="study.retrieve",
        )


def test_expire_due_records_audits_and_notifies_once(expired):
    consent, link, access = expired
    assert expire_due.delay().get() == {"consent": 1, "care_relationship": 1, "emergency_access": 1}
    for row in (consent, link, access):
        row.refresh_from_db()
        assert row.expiry_recorded_at is not None
    actions = AuditEvent.objects.filter(action__endswith=".expire").values_list("action", flat=True)
    assert set(actions) == {"consent.expire", "care.expire", "emergency.expire"}
    assert len(mail.outbox) == 2
    assert expire_due() == {"consent": 0, "care_relationship": 0, "emergency_access": 0}


def test_a_revoked_consent_or_ended_link_did_not_expire(cast):
    now = timezone.now()
    consent_for(
        cast.xavier,
        valid_from=now - 3 * HOUR,
        valid_until=now - HOUR,
        revoked_at=now - 2 * HOUR,
        revoked_by="xavier",
    )
    care(
        cast.alice,
        cast.xavier,
        start=now - 3 * HOUR,
        end=now - HOUR,
        ended_at=now - 2 * HOUR,
        ended_by="x",
    )
    assert expire_due() == {"consent": 0, "care_relationship": 0, "emergency_access": 0}
