"""CSV export; cells that a spreadsheet would run as a formula are neutralised."""

import csv
import json
from collections.abc import Iterable, Iterator

from audit import canonical
from audit.actions import describe
from audit.models import AuditEvent

COLUMNS = (
    "seq", "time", "action", "description", "outcome", "reason_code", "basis", "basis_ids",
    "actor_role", "actor_username", "actor_display", "actor_profession", "acting_institution",
    "on_behalf_of", "patient", "study_uid", "client_address", "request_id", "message",
    "detail", "prev_hash", "hash",
)  # fmt: skip

# OWASP CSV injection: a leading = + - @ (or tab, carriage return) starts a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


class _Line:
    """csv.writer writes here; each row is handed back as a string."""

    def write(self, text: str) -> str:
        return text


def _cells(event: AuditEvent) -> list[str]:
    values = {
        "time": canonical.encode_time(event.time),
        "description": describe(event.action),
        "basis_ids": json.dumps(event.basis_ids, sort_keys=True),
        "detail": json.dumps(event.detail, sort_keys=True),
    }
    return [neutralise(str(values.get(c, getattr(event, c, "")))) for c in COLUMNS]


def rows(events: Iterable[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(COLUMNS)
    for event in events:
        yield writer.writerow(_cells(event))
