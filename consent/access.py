"""Thin helpers on top of the gate: fetch, authorize, return or raise; and the view marker.

Views never fetch patient data themselves: they call one of these (or the gate) first.
"""

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator

from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from stdnum.exceptions import ValidationError as StdnumError

from anim_gateway.errors import ApplicationError, NotFound, error_body
from audit.actions import Action
from consent import gate, national_id
from consent.actors import Actor
from consent.auditing import audit_refusal
from consent.authentication import actor_of
from consent.models import (
    Affiliation,
    CareRelationship,
    Institution,
    Patient,
    Practitioner,
    Role,
)

logger = logging.getLogger(__name__)

ACT_FOR_HEADER = "X-Act-For"
# Document the header on every patient self-service operation (drf-spectacular).
ACT_FOR_PARAMETER = OpenApiParameter(
    name=ACT_FOR_HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "National identifier of the patient you act for as legal representative "
        "(granted by an administrator); omit it to act on your own record."
    ),
)


def serves_patient_data(view: type | Callable) -> type | Callable:
    """Mark a view (class or function) as serving patient data and enforce the gate on it.

    A marked view whose response succeeds without having consulted the gate is turned into
    a 500 (fail closed), and the URL-walk test refuses any /api/v1/ or /dicomweb/ view that
    is neither marked nor on its explicit allowlist of views without patient data.
    """
    if isinstance(view, type):
        original = view.dispatch

        @functools.wraps(original)
        def dispatch(self, request, *args, **kwargs):
            return _enforced(functools.partial(original, self), request, *args, **kwargs)

        view.dispatch = dispatch
        view.serves_patient_data = True
        return view

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        return _enforced(view, request, *args, **kwargs)

    wrapper.serves_patient_data = True
    return wrapper


def _enforced(call: Callable, request, *args, **kwargs):
    if gate._consulted.get() is not None:
        # Nested (a marked view class inheriting from a marked one): the outer one checks.
        return call(request, *args, **kwargs)
    box: list = []
    token = gate._consulted.set(box)
    try:
        response = call(request, *args, **kwargs)
    finally:
        gate._consulted.reset(token)
    if response.status_code < 400 and not box:
        logger.error("A patient-data view answered without consulting the gate: %s", call)
        return JsonResponse(
            error_body("GATE_NOT_CONSULTED", "This view did not consult the gate."), status=500
        )
    return response


def patient_actor(request: Request, *, audit_action: str) -> Actor:
    """The Actor of a patient request, acting for the patient named in X-Act-For if any.

    Representation is checked by the gate (django-guardian ``consent.act_for_patient``);
    here we only resolve whom the caller says they act for. One's own identifier, however
    written (dots, spaces), is one's own record. An unknown patient is a 404, audited as a
    deny of the request's ``audit_action``.
    """
    actor = actor_of(request)
    header = request.headers.get(ACT_FOR_HEADER, "").strip()
    if actor.role != Role.PATIENT:
        if header:
            raise ApplicationError(f"{ACT_FOR_HEADER}: only a patient account may act for another.")
        return actor
    if not header or national_id.compact(header) == actor.patient_national_id:
        return actor
    target = _patient_or_none(header)
    if target is None:
        gate.deny_unknown(actor, audit_action=audit_action, detail={"act_for": "unknown"})
        raise NotFound(gate.NO_SUCH_PATIENT, code="NOT_FOUND")
    return dataclasses.replace(actor, patient=target, representative=actor.patient)


def access_own_record(
    actor: Actor, *, audit_action: str, audit_permit: bool = True, detail: dict | None = None
) -> Patient:
    """The patient the caller acts on (their own, or the one they represent), or raise."""
    gate.authorize(
        actor,
        gate.MANAGE_RECORD,
        patient=actor.patient if actor.role == Role.PATIENT else None,
        audit_action=audit_action,
        audit_permit=audit_permit,
        detail=detail,
    )
    return actor.patient


def access_patient_by_national_id(
    actor: Actor,
    value: str,
    *,
    action: str,
    audit_action: str,
    audit_permit: bool = True,
    detail: dict | None = None,
) -> Patient:
    """The patient named in the URL, if the gate permits the action on them.

    An unknown (or malformed) identifier is a 404, audited as a deny: the gate decides on the
    patient in the URL, so changing it reaches nobody else's data.
    """
    patient = _patient_or_none(value)
    if patient is None:
        detail = {"national_id": "unknown"}
        gate.deny_unknown(actor, audit_action=audit_action, detail=detail, action=action)
        raise NotFound(gate.NO_SUCH_PATIENT)
    gate.authorize(
        actor,
        action,
        patient=patient,
        audit_action=audit_action,
        audit_permit=audit_permit,
        detail=detail,
    )
    return patient


def access_care_assertion(
    actor: Actor, *, national_id_value: str, practitioner: Practitioner
) -> Patient:
    """The patient of a care relationship a hospital system (or administrator) asserts.

    A hospital system asserts only for practitioners affiliated with its own institution.
    """
    patient = _patient_or_none(national_id_value)
    if patient is None:
        gate.deny_unknown(actor, audit_action=Action.CARE_ASSERT, action=gate.ASSERT_CARE)
        raise ApplicationError("patient: no patient with this national_id.")
    gate.authorize(
        actor,
        gate.ASSERT_CARE,
        patient=patient,
        audit_action=Action.CARE_ASSERT,
        audit_permit=False,
    )
    if actor.role == Role.SYSTEM and not _affiliated(practitioner, actor.institution):
        gate.refuse(
            actor,
            reason_code="NOT_AFFILIATED",
            message=(
                f"The practitioner is not affiliated with {actor.institution_code}; a hospital "
                "asserts care relationships only for its own practitioners."
            ),
            audit_action=Action.CARE_ASSERT,
            patient=patient,
            detail={"practitioner": practitioner.user.username},
        )
    return patient


def access_care_end(actor: Actor, *, link_id: int, audit_action: str) -> CareRelationship:
    """A care relationship the caller may end: a hospital system only its own assertions."""
    link = CareRelationship.objects.select_related("patient").filter(pk=link_id).first()
    mine = link is not None and (
        actor.role != Role.SYSTEM or link.institution_id == getattr(actor.institution, "pk", None)
    )
    if not mine:
        gate.deny_unknown(actor, audit_action=audit_action, action=gate.ASSERT_CARE)
        raise NotFound("No such care relationship.")
    gate.authorize(
        actor, gate.ASSERT_CARE, patient=link.patient, audit_action=audit_action, audit_permit=False
    )
    return link


def _affiliated(practitioner: Practitioner, institution: Institution | None) -> bool:
    now = timezone.now()
    rows = Affiliation.objects.filter(practitioner=practitioner, institution=institution)
    return institution is not None and any(a.is_active(at=now) for a in rows)


def _patient_or_none(value: str) -> Patient | None:
    try:
        number = national_id.validate(value)
    except StdnumError:
        return None
    return Patient.objects.select_related("record").filter(national_id=number).first()


@contextlib.contextmanager
def refusals_audited(
    actor: Actor, *, audit_action: str, patient: Patient | None, detail: dict | None = None
) -> Iterator[None]:
    """Audit, as a deny, a refusal a service raises after the gate permitted the request
    (with ``detail``: non-identifying ids of what was asked for).

    Such services write their own event only on success (``audit_permit=False``), and their
    transaction has rolled back by the time the refusal arrives here, so this row stands.
    """
    try:
        yield
    except gate.AccessDenied:
        raise  # already audited by the gate
    except ApplicationError as refusal:
        national = patient.national_id if patient else ""
        audit_refusal(actor, refusal, action=audit_action, patient=national, detail=detail)
        raise
