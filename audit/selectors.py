"""Reads of the audit log: the DPO's filtered search and a patient's access log, by keyset."""

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db.models import Max, Min, Q, QuerySet

from audit.models import AuditEvent


@dataclass(frozen=True, kw_only=True)
class EventFilters:
    """The DPO's filters; empty values do not filter."""

    patient: str = ""
    actor: str = ""
    institution: str = ""
    action: str = ""
    outcome: str = ""
    basis: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def used(self) -> dict:
        """The filters in use, as plain strings (for the audit row of the search itself)."""
        return {k: str(v) for k, v in asdict(self).items() if v not in ("", None)}


# Each equality filter has a (column, -seq) index: the newest-first keyset walk reads it in
# order and stops after one page, however large the log.
_COLUMNS = {
    "patient": "patient",
    "actor": "actor_username",
    "institution": "acting_institution",
    "action": "action",
    "outcome": "outcome",
    "basis": "basis",
}


def event_filtered(*, filters: EventFilters) -> QuerySet[AuditEvent]:
    """All events matching the filters, newest first (unsliced; exports stream it)."""
    rows = AuditEvent.objects.order_by("-seq")
    for name, column in _COLUMNS.items():
        value = getattr(filters, name)
        if value:
            rows = rows.filter(**{column: value})
    if filters.since:
        rows = rows.filter(time__gte=filters.since)
    if filters.until:
        # Exclusive, like every validity period in the project.
        rows = rows.filter(time__lt=filters.until)
    if filters.since and filters.until:
        rows = _within_seq_span(rows, since=filters.since, until=filters.until)
    return rows


def _within_seq_span(
    rows: QuerySet[AuditEvent], *, since: datetime, until: datetime
) -> QuerySet[AuditEvent]:
    """Add the lowest and highest sequence numbers of the window's events.

    Exact whatever the clock did (a time set back leaves an event's seq out of time order):
    the span is read from the window's own entries in the (time, seq) index. The newest-first
    walk then starts at the window instead of passing every newer event (a window months
    back in ten million events would otherwise read millions of rows)."""
    window = AuditEvent.objects.filter(time__gte=since, time__lt=until).order_by()
    span = window.aggregate(first=Min("seq"), last=Max("seq"))
    if span["first"] is None:
        return rows.none()
    return rows.filter(seq__gte=span["first"], seq__lte=span["last"])


def event_list(
    *, filters: EventFilters, before: int | None = None, limit: int = 50
) -> list[AuditEvent]:
    """One page of events matching the filters, newest first, older than seq `before`."""
    rows = event_filtered(filters=filters)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return list(rows[:limit])


def access_log_list(
    *, national_id: str, before: int | None = None, limit: int = 50, exclude_actor: str = ""
) -> list[AuditEvent]:
    """Events about one patient's record (as the patient or through a representative),
    newest first, optionally without one actor's own. The caller has established that the
    reader may see this record."""
    rows = AuditEvent.objects.filter(Q(patient=national_id) | Q(on_behalf_of=national_id))
    if exclude_actor:
        rows = rows.exclude(actor_username=exclude_actor)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return list(rows.order_by("-seq")[:limit])
