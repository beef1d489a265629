"""Helpers for the audit tests: events in bulk, triggers off (a superuser's powers)."""

from collections.abc import Callable, Iterator

import pytest
from django.db import connection

from audit import triggers
from audit.events import Event
from audit.models import AuditEvent
from audit.services import append

XAVIER = "1980051700155"


def sample_event(n: int = 0, **overrides: object) -> Event:
    fields = {
        "action": "study.retrieve",
        "outcome": "permit",
        "basis": "CONSENT",
        "basis_ids": {"consent": n, "care_relationship": 7},
        "actor_role": "practitioner",
        "actor_username": "alice",
        "actor_display": "Dr Alice Arend",
        "actor_profession": "physician",
        "acting_institution": "CHL",
        "patient": XAVIER,
        "study_uid": f"1.2.826.0.1.3680043.8.498.{n + 1}",
        "client_address": "192.0.2.10",
        "request_id": f"req-{n}",
        "message": "Permitted: the patient consented to sharing with CHL.",
        "detail": {"n": n, "note": "é ünïcode ✓"},
    }
    fields.update(overrides)
    return Event(**fields)


@pytest.fixture
def append_events(db) -> Callable[..., list[AuditEvent]]:
    def make(count: int, **overrides: object) -> list[AuditEvent]:
        return [append(sample_event(n, **overrides)) for n in range(count)]

    return make


def execute(sql: str, params: tuple = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def triggers_dropped(db) -> Iterator[None]:
    """What a database superuser can do: drop the triggers (rolled back with the test)."""
    triggers.set_enabled(connection, enabled=False)
    yield
    triggers.set_enabled(connection, enabled=True)
