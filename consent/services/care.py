"""Care relationships: asserted by a hospital (admission, referral), declared by the patient."""

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from anim_gateway.errors import ApplicationError, Conflict, Forbidden, NotFound
from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import Affiliation, CareKind, CareRelationship, Patient, Practitioner, Role
from consent.services.consents import channel_of, end_fact

DEFAULT_DAYS = {
    CareKind.ADMISSION: "CARE_ADMISSION_DAYS",
    CareKind.REFERRAL: "CARE_REFERRAL_DAYS",
    CareKind.DECLARED: "CARE_DECLARED_DAYS",
}


def default_end(kind: str, start: datetime.datetime) -> datetime.datetime:
    return start + datetime.timedelta(days=getattr(settings, DEFAULT_DAYS[kind]))


@transaction.atomic
def care_relationship_assert(
    *,
    actor: Actor,
    patient: Patient,
    practitioner: Practitioner,
    kind: str,
    start: datetime.datetime | None = None,
    end: datetime.datetime | None = None,
) -> CareRelationship:
    """Record an admission or referral asserted by a hospital system (or an administrator).

    Raises
    ------
    Forbidden
        When a hospital system asserts for a practitioner not affiliated with its institution.
    ApplicationError
        When the period is empty.
    """
    if kind not in (CareKind.ADMISSION, CareKind.REFERRAL):
        raise ApplicationError("kind: admission or referral.")
    if actor.role == Role.SYSTEM:
        _require_affiliated_here(actor, practitioner, patient)
    now = timezone.now()
    start = start or now
    _require_plausible_start(start, now=now)
    end = end or default_end(kind, start)
    if end <= start:
        raise ApplicationError("end: must be after start.")
    if end - start > datetime.timedelta(days=settings.CARE_MAX_DAYS):
        raise ApplicationError(
            f"end: a care relationship lasts at most {settings.CARE_MAX_DAYS} days."
        )
    return _create(actor, patient, practitioner, kind, start, end, Action.CARE_ASSERT)


def _require_plausible_start(start: datetime.datetime, *, now: datetime.datetime) -> None:
    """A hospital may record an admission late, but not years back nor far ahead."""
    grace = datetime.timedelta(days=settings.CARE_MAX_BACKDATE_DAYS)
    if not now - grace <= start <= now + grace:
        raise ApplicationError(
            f"start: must lie within {settings.CARE_MAX_BACKDATE_DAYS} days of today."
        )


@transaction.atomic
def care_relationship_declare(
    *, actor: Actor, patient: Patient, practitioner: Practitioner
) -> CareRelationship:
    """The patient declares their own physician; renewing is declaring again."""
    start = timezone.now()
    end = default_end(CareKind.DECLARED, start)
    return _create(actor, patient, practitioner, CareKind.DECLARED, start, end, Action.CARE_DECLARE)


def _create(actor, patient, practitioner, kind, start, end, action) -> CareRelationship:
    link = CareRelationship.objects.create(
        patient=patient,
        practitioner=practitioner,
        kind=kind,
        institution=actor.institution if kind != CareKind.DECLARED else None,
        start=start,
        end=end,
        asserted_by=actor.username,
        channel=channel_of(actor),
    )
    audit_event(
        actor,
        action=action,
        basis_ids={"care_relationship": link.pk},
        patient=patient.national_id,
        detail={
            "practitioner": practitioner.user.username,
            "kind": kind,
            "start": start.isoformat(),
            "end": end.isoformat(),
        },
    )
    return link


def _require_affiliated_here(actor: Actor, practitioner: Practitioner, patient: Patient) -> None:
    now = timezone.now()
    affiliations = Affiliation.objects.filter(
        practitioner=practitioner, institution=actor.institution
    )
    if any(a.is_active(at=now) for a in affiliations):
        return
    # Defence in depth: consent.access.access_care_assertion refuses (and audits) this first.
    raise Forbidden(
        f"The practitioner is not affiliated with {actor.institution_code}.",
        code="NOT_AFFILIATED",
    )


@transaction.atomic
def care_relationship_end(*, actor: Actor, link_id: int) -> CareRelationship:
    """End a care relationship now (recorded once).

    Raises
    ------
    NotFound
        When there is no such relationship, or a hospital system did not assert it.
    Conflict
        When it was ended already.
    """
    link = CareRelationship.objects.select_for_update().filter(pk=link_id).first()
    if link is None or (actor.role == Role.SYSTEM and link.institution_id != actor.institution.pk):
        raise NotFound("No such care relationship.")
    if link.ended_at is not None:
        raise Conflict("This care relationship was ended already.", code="ALREADY_ENDED")
    end_fact(link, actor=actor, fields=("ended_at", "ended_by", "end_channel"))
    audit_event(
        actor,
        action=Action.CARE_END,
        basis_ids={"care_relationship": link.pk},
        patient=link.patient.national_id,
    )
    return link
