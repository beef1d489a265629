"""Write consent-side audit events from an Actor; the audit app stays ignorant of consent."""

from audit.events import Event
from audit.services import append
from consent.actors import Actor


def audit_event(
    actor: Actor | None, *, action: str, outcome: str = "permit", **fields: object
) -> None:
    """Append one event; the actor part comes from the Actor as it is now."""
    actor_fields = actor.audit_fields() if actor else {"actor_role": "system"}
    append(Event(action=action, outcome=outcome, **actor_fields, **fields))
