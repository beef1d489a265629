"""The one writer of the audit log: append an event under the head lock, chained by hash."""

import dataclasses

from django.db import DatabaseError, transaction
from django.utils import timezone

from audit import canonical
from audit.actions import Outcome, is_known
from audit.errors import AuditUnavailable, InvalidAuditEvent
from audit.events import EVENT_FIELDS, Event
from audit.models import AuditEvent, AuditHead

# Codes and identifiers are short; an oversized value is a caller's bug, refused loudly.
_MAX_LENGTHS = {
    f.name: f.max_length
    for f in AuditEvent._meta.get_fields()
    if getattr(f, "max_length", None) and f.name in EVENT_FIELDS
}


def append(event: Event) -> AuditEvent:
    """Append one event to the chain and return the stored row.

    Joins the caller's transaction when one is open, so a service's change and its audit
    row commit (or roll back) together; otherwise commits on its own.

    Raises
    ------
    AuditUnavailable
        On any failure, so that the gate can fail closed.
    """
    values = _validated_values(event)
    try:
        with transaction.atomic():
            return _append_locked(values)
    except DatabaseError as exc:
        raise AuditUnavailable(f"The audit log could not be written: {exc}") from exc


def _validated_values(event: Event) -> dict:
    """The event's fields, checked and normalised into exactly what the database returns."""
    if not is_known(event.action):
        raise InvalidAuditEvent(f"Unknown audit action {event.action!r}")
    if event.outcome not in Outcome.values:
        raise InvalidAuditEvent(f"Unknown audit outcome {event.outcome!r}")
    values = dataclasses.asdict(event)
    for name in EVENT_FIELDS:
        value = values[name]
        if isinstance(value, dict):
            try:
                values[name] = canonical.normalise_json(value, name=name)
            except (TypeError, ValueError) as exc:
                raise InvalidAuditEvent(f"{name} is not plain JSON: {exc}") from exc
        elif not isinstance(value, str):
            raise InvalidAuditEvent(f"{name} must be a string")
        else:
            # PostgreSQL text cannot hold NUL; replace it so both databases store the same.
            values[name] = value.replace("\x00", "\ufffd")
        limit = _MAX_LENGTHS.get(name)
        if limit and len(values[name]) > limit:
            raise InvalidAuditEvent(f"{name} is longer than {limit} characters")
    return values


def _append_locked(values: dict) -> AuditEvent:
    head_seq, head_hash = _lock_head()
    seq = head_seq + 1
    # The time is read under the lock so that time never goes backwards along the chain.
    now = timezone.now()
    payload = canonical.encode(
        version=canonical.CURRENT_VERSION,
        seq=seq,
        time=now,
        fields=[values[name] for name in EVENT_FIELDS],
    )
    digest = canonical.chain_hash(prev_hash=head_hash, payload=payload)
    row = AuditEvent(
        seq=seq,
        time=now,
        version=canonical.CURRENT_VERSION,
        prev_hash=head_hash,
        hash=digest,
        **values,
    )
    row.save(force_insert=True)
    AuditHead.objects.filter(pk=1).update(seq=seq, hash=digest)
    return row


def _lock_head() -> tuple[int, str]:
    """Lock the head row (SELECT ... FOR UPDATE; SQLite's IMMEDIATE transaction already
    holds the write lock) and return (seq, hash). A missing head is rebuilt from the chain."""
    head = AuditHead.objects.select_for_update().filter(pk=1).values_list("seq", "hash").first()
    if head is not None:
        return head
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, digest = last or (0, canonical.GENESIS_HASH)
    # ignore_conflicts: a concurrent process may have created it first; then lock theirs.
    AuditHead.objects.bulk_create([AuditHead(id=1, seq=seq, hash=digest)], ignore_conflicts=True)
    return AuditHead.objects.select_for_update().filter(pk=1).values_list("seq", "hash").get()
