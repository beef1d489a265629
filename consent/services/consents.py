"""Consents and the shared record: grant, revoke, close, reopen."""

import datetime

from django.db import models, transaction
from django.utils import timezone

from anim_gateway.errors import ApplicationError, Conflict, NotFound
from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import (
    Consent,
    EmergencyAccess,
    Patient,
    RecordStatus,
    SharedRecord,
    SharedRecordChange,
)
from consent.services.provisioning import institutions_by_code


def channel_of(actor: Actor) -> str:
    return actor.channel if actor.channel in ("api", "portal", "cli", "admin") else "api"


def end_fact(row: models.Model, *, actor: Actor, fields: tuple[str, str, str]) -> None:
    """Record once when, by whom and through which channel a fact ended (never edited again).

    ``fields`` names the row's (time, username, channel) columns, e.g. revoked_at/by/channel.
    """
    at, by, channel = fields
    setattr(row, at, timezone.now())
    setattr(row, by, actor.username)
    setattr(row, channel, channel_of(actor))
    row.save(update_fields=list(fields))


@transaction.atomic
def consent_grant(
    *,
    actor: Actor,
    patient: Patient,
    institution_codes: list[str] | None,
    valid_until: datetime.datetime | None = None,
    allow_emergency: bool = True,
) -> Consent:
    """Grant consent to sharing with some member institutions, or all (``None``).

    Raises
    ------
    ApplicationError
        On an unknown institution, an empty list or an end that is not in the future.
    """
    now = timezone.now()
    if valid_until is not None and valid_until <= now:
        raise ApplicationError("valid_until: must be in the future.")
    if institution_codes is not None and not institution_codes:
        raise ApplicationError("institutions: name at least one, or null for all members.")
    institutions = institutions_by_code(institution_codes) if institution_codes else []
    consent = Consent.objects.create(
        patient=patient,
        all_members=institution_codes is None,
        valid_from=now,
        valid_until=valid_until,
        allow_emergency=allow_emergency,
        granted_at=now,
        granted_by=actor.username,
        channel=channel_of(actor),
    )
    consent.institutions.set(institutions)
    ended = [] if allow_emergency else _open_emergencies_ended(patient, now)
    audit_event(
        actor,
        action=Action.CONSENT_GRANT,
        basis="PATIENT",
        basis_ids={"consent": consent.pk},
        patient=patient.national_id,
        detail={
            "institutions": institution_codes,
            "valid_until": valid_until.isoformat() if valid_until else None,
            "allow_emergency": allow_emergency,
            **({"emergency_accesses_ended": ended} if ended else {}),
        },
    )
    return consent


def _open_emergencies_ended(patient: Patient, now: datetime.datetime) -> list[int]:
    """A refusal of emergency access ends the open ones at once, for good: revoking the
    refusal later does not reopen them. They end as at their expiry (the sweep records and
    tells the patient) and stay listed for the DPO's review."""
    open_now = EmergencyAccess.objects.select_for_update().filter(
        patient=patient, expires_at__gt=now
    )
    ended = list(open_now.order_by("pk").values_list("pk", flat=True))
    EmergencyAccess.objects.filter(pk__in=ended).update(expires_at=now)
    return ended


@transaction.atomic
def consent_revoke(*, actor: Actor, patient: Patient, consent_id: int) -> Consent:
    """Revoke a consent; it holds from the next request anywhere (nothing is cached).

    Raises
    ------
    NotFound
        When the consent is not the patient's.
    Conflict
        When it was revoked already (the revocation is recorded once, never changed).
    """
    consent = Consent.objects.select_for_update().filter(pk=consent_id, patient=patient).first()
    if consent is None:
        raise NotFound("No such consent.")
    if consent.revoked_at is not None:
        raise Conflict("This consent was revoked already.", code="ALREADY_REVOKED")
    end_fact(consent, actor=actor, fields=("revoked_at", "revoked_by", "revoke_channel"))
    audit_event(
        actor,
        action=Action.CONSENT_REVOKE,
        basis="PATIENT",
        basis_ids={"consent": consent.pk},
        patient=patient.national_id,
    )
    return consent


@transaction.atomic
def record_set_status(*, actor: Actor, patient: Patient, status: str) -> SharedRecord:
    """Close or reopen the shared record; the change is kept in SharedRecordChange.

    Raises
    ------
    Conflict
        When the record already has that status.
    """
    record = SharedRecord.objects.select_for_update().get(patient=patient)
    if record.status == status:
        raise Conflict(f"The shared record is already {status}.", code=f"ALREADY_{status.upper()}")
    record.status = status
    record.changed_at = timezone.now()
    record.save(update_fields=["status", "changed_at"])
    SharedRecordChange.objects.create(
        record=record,
        status=status,
        changed_at=record.changed_at,
        changed_by=actor.username,
        channel=channel_of(actor),
    )
    action = Action.RECORD_CLOSE if status == RecordStatus.CLOSED else Action.RECORD_REOPEN
    audit_event(actor, action=action, basis="PATIENT", patient=patient.national_id)
    return record
