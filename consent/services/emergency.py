"""Emergency access ("break the glass"): declare, notify the patient, review by the DPO."""

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from anim_gateway.errors import ApplicationError, Conflict, NotFound
from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import EmergencyAccess, Patient, ReviewState
from consent.services.consents import channel_of


@transaction.atomic
def emergency_declare(
    *, actor: Actor, patient: Patient, reason: str, basis_ids: dict | None = None
) -> EmergencyAccess:
    """Open an emergency access for one patient, for EMERGENCY_ACCESS_HOURS.

    The gate has decided already (rules 1-3 and EMERGENCY_REFUSED); the patient is notified
    once the access is committed (or by the sweep, if that fails), and the DPO finds it in
    the review queue.

    Raises
    ------
    ApplicationError
        When the written reason is shorter than EMERGENCY_REASON_MIN_LENGTH.
    Conflict
        When the practitioner has an emergency access to the patient open at the acting
        institution already (``EMERGENCY_ALREADY_OPEN``): it is neither doubled nor extended.
    """
    reason = reason.strip()
    if len(reason) < settings.EMERGENCY_REASON_MIN_LENGTH:
        raise ApplicationError(
            f"reason: at least {settings.EMERGENCY_REASON_MIN_LENGTH} characters are required."
        )
    start = timezone.now()
    _refuse_a_second_open_access(actor, patient, now=start)
    access = EmergencyAccess.objects.create(
        practitioner=actor.practitioner,
        institution=actor.institution,
        patient=patient,
        reason=reason,
        start=start,
        expires_at=start + datetime.timedelta(hours=settings.EMERGENCY_ACCESS_HOURS),
        channel=channel_of(actor),
    )
    audit_event(
        actor,
        action=Action.EMERGENCY_DECLARE,
        basis="EMERGENCY",
        basis_ids={**(basis_ids or {}), "emergency_access": access.pk},
        patient=patient.national_id,
        message="Emergency access declared; pending DPO review.",
        # The reason is free text and may name people: it stays in the row the DPO reviews.
        detail={"expires_at": access.expires_at.isoformat()},
    )
    from consent import tasks

    # robust: a failed queueing is logged; it never turns the committed access into a 500.
    # The notice stays due on the row (patient_notified_at), and the sweep sends it.
    transaction.on_commit(lambda: tasks.notify_emergency.delay(access.pk), robust=True)
    return access


def _refuse_a_second_open_access(actor: Actor, patient: Patient, *, now) -> None:
    """One open access per practitioner, patient and institution: a second would be one more
    notice to the patient and one more review for the DPO, for the same emergency."""
    # Two declarations at once: the patient's row, locked, makes the second wait and see
    # the first (on SQLite, the IMMEDIATE transaction does).
    Patient.objects.select_for_update().filter(pk=patient.pk).first()
    open_now = EmergencyAccess.objects.filter(
        practitioner=actor.practitioner,
        patient=patient,
        institution=actor.institution,
        start__lte=now,
        expires_at__gt=now,
    ).first()
    if open_now is None:
        return
    until = timezone.localtime(open_now.expires_at).strftime("%Y-%m-%d %H:%M")
    raise Conflict(
        f"Your emergency access to this patient is open already (id {open_now.pk}, until "
        f"{until}); it was not extended.",
        code="EMERGENCY_ALREADY_OPEN",
    )


@transaction.atomic
def emergency_review(*, actor: Actor, access_id: int, outcome: str, note: str) -> EmergencyAccess:
    """Record the DPO's review of an emergency access (once).

    Raises
    ------
    NotFound
        When there is no such emergency access.
    Conflict
        When it was reviewed already.
    """
    if outcome not in (ReviewState.JUSTIFIED, ReviewState.UNJUSTIFIED):
        raise ApplicationError("outcome: justified or unjustified.")
    access = (
        EmergencyAccess.objects.select_for_update()
        .select_related("patient")
        .filter(pk=access_id)
        .first()
    )
    if access is None:
        raise NotFound("No such emergency access.")
    if access.review != ReviewState.PENDING:
        raise Conflict("This emergency access was reviewed already.", code="ALREADY_REVIEWED")
    access.review = outcome
    access.reviewed_at = timezone.now()
    access.reviewed_by = actor.username
    access.review_note = note
    access.save(update_fields=["review", "reviewed_at", "reviewed_by", "review_note"])
    audit_event(
        actor,
        action=Action.EMERGENCY_REVIEW,
        basis="DPO",
        basis_ids={"emergency_access": access.pk},
        patient=access.patient.national_id,
        detail={"outcome": outcome},
    )
    return access
