"""Write consent-side audit events from an Actor; the audit app stays ignorant of consent."""

from collections.abc import Sequence

from anim_gateway.errors import ApplicationError
from audit.events import Event
from audit.services import append, append_many
from consent.actors import Actor


def _actor_fields(actor: Actor | None) -> dict:
    return actor.audit_fields() if actor else {"actor_role": "system"}


def audit_event(
    actor: Actor | None, *, action: str, outcome: str = "permit", **fields: object
) -> None:
    """Append one event; the actor part comes from the Actor as it is now."""
    append(Event(action=action, outcome=outcome, **_actor_fields(actor), **fields))


def audit_events(actor: Actor | None, events: Sequence[dict]) -> None:
    """Append several events of one actor, all or none; each as ``audit_event``'s fields."""
    actor_fields = _actor_fields(actor)
    append_many([Event(**actor_fields, **fields) for fields in events])


def audit_refusal(
    actor: Actor | None,
    refusal: ApplicationError,
    *,
    action: str,
    patient: str = "",
    detail: dict | None = None,
) -> None:
    """Append a service's refusal as a deny: its code, and the message the log may hold."""
    audit_event(
        actor,
        action=action,
        outcome="deny",
        reason_code=refusal.code,
        message=refusal.audit_message,
        patient=patient,
        detail=detail or {},
    )
