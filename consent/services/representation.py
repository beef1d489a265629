"""Legal representation: an administrator lets a patient's login act for another patient."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from anim_gateway.errors import ApplicationError, Conflict, NotFound
from audit.actions import Action
from consent.actors import Actor, role_of
from consent.auditing import audit_event
from consent.models import Patient, Role
from consent.selectors import represents

CODENAME = "act_for_patient"
PERMISSION = f"consent.{CODENAME}"


def grant_problem(*, patient: Patient, user: AbstractBaseUser) -> str:
    """Why this login cannot represent the patient, or "" when it can."""
    if role_of(user) != Role.PATIENT:
        return "Only a patient's login can be a legal representative."
    if user.pk == patient.user_id:
        return "A patient cannot be their own legal representative."
    return ""


@transaction.atomic
def representation_grant(*, actor: Actor, patient: Patient, user: AbstractBaseUser) -> None:
    """Let `user` (another patient's login, a parent say) act for `patient`; audited.

    Raises
    ------
    ApplicationError
        When the user is not a patient's login, or is the patient themself (grant_problem).
    Conflict
        When the user represents the patient already.
    """
    problem = grant_problem(patient=patient, user=user)
    if problem:
        raise ApplicationError(problem, code="INVALID_REPRESENTATIVE")
    if represents(user, patient):
        raise Conflict("This login represents the patient already.", code="ALREADY_GRANTED")
    assign_perm(PERMISSION, user, patient)
    _audit(actor, Action.REPRESENTATION_GRANT, patient, user)


@transaction.atomic
def representation_revoke(*, actor: Actor, patient: Patient, user: AbstractBaseUser) -> None:
    """End the representation; audited.

    Raises
    ------
    NotFound
        When the user does not represent the patient.
    """
    if not represents(user, patient):
        raise NotFound("This login does not represent the patient.")
    remove_perm(PERMISSION, user, patient)
    _audit(actor, Action.REPRESENTATION_REVOKE, patient, user)


def _audit(actor: Actor, action: str, patient: Patient, user: AbstractBaseUser) -> None:
    representative = getattr(user, "patient", None)
    audit_event(
        actor,
        action=action,
        patient=patient.national_id,
        # The representative's national id, like on_behalf_of: never a name.
        detail={
            "representative": user.get_username(),
            "representative_patient": representative.national_id if representative else "",
        },
    )
