"""The patient's own restrictions: block a practitioner, hide a study (and undo either)."""

from django.db import transaction

from anim_gateway.errors import Conflict, NotFound
from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import Exclusion, Patient, Practitioner, StudyVisibility
from consent.services.consents import channel_of, end_fact


@transaction.atomic
def exclusion_add(*, actor: Actor, patient: Patient, practitioner: Practitioner) -> Exclusion:
    """Block a practitioner from the patient's studies (rule 3), from now on.

    Raises
    ------
    Conflict
        When that practitioner is blocked already.
    """
    if Exclusion.objects.filter(
        patient=patient, practitioner=practitioner, removed_at__isnull=True
    ).exists():
        raise Conflict("This practitioner is blocked already.", code="ALREADY_EXCLUDED")
    exclusion = Exclusion.objects.create(
        patient=patient,
        practitioner=practitioner,
        created_by=actor.username,
        channel=channel_of(actor),
    )
    audit_event(
        actor,
        action=Action.EXCLUSION_ADD,
        basis="PATIENT",
        basis_ids={"exclusion": exclusion.pk},
        patient=patient.national_id,
        detail={"practitioner": practitioner.user.username},
    )
    return exclusion


@transaction.atomic
def exclusion_remove(*, actor: Actor, patient: Patient, exclusion_id: int) -> Exclusion:
    """Unblock: the exclusion row stays, with who removed it and when.

    Raises
    ------
    NotFound
        When the exclusion is not the patient's, or was removed already.
    """
    exclusion = (
        Exclusion.objects.select_for_update()
        .filter(pk=exclusion_id, patient=patient, removed_at__isnull=True)
        .first()
    )
    if exclusion is None:
        raise NotFound("No such exclusion.")
    end_fact(exclusion, actor=actor, fields=("removed_at", "removed_by", "remove_channel"))
    audit_event(
        actor,
        action=Action.EXCLUSION_REMOVE,
        basis="PATIENT",
        basis_ids={"exclusion": exclusion.pk},
        patient=patient.national_id,
    )
    return exclusion


@transaction.atomic
def study_hide(*, actor: Actor, patient: Patient, study_uid: str) -> StudyVisibility:
    """Hide one study from other institutions (rule 5); idempotent while hidden."""
    hidden = StudyVisibility.objects.filter(
        patient=patient, study_uid=study_uid, unhidden_at__isnull=True
    ).first()
    if hidden is not None:
        return hidden
    hidden = StudyVisibility.objects.create(
        patient=patient, study_uid=study_uid, hidden_by=actor.username, channel=channel_of(actor)
    )
    audit_event(
        actor,
        action=Action.STUDY_HIDE,
        basis="PATIENT",
        patient=patient.national_id,
        study_uid=study_uid,
    )
    return hidden


@transaction.atomic
def study_unhide(*, actor: Actor, patient: Patient, study_uid: str) -> StudyVisibility | None:
    """Make a hidden study visible again; idempotent when it is not hidden."""
    hidden = (
        StudyVisibility.objects.select_for_update()
        .filter(patient=patient, study_uid=study_uid, unhidden_at__isnull=True)
        .first()
    )
    if hidden is None:
        return None
    end_fact(hidden, actor=actor, fields=("unhidden_at", "unhidden_by", "unhide_channel"))
    audit_event(
        actor,
        action=Action.STUDY_UNHIDE,
        basis="PATIENT",
        patient=patient.national_id,
        study_uid=study_uid,
    )
    return hidden
