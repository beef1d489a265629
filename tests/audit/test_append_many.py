"""append_many(): several events chained in order, all or none, on both databases."""

import pytest

from audit import services
from audit.errors import AuditUnavailable, InvalidAuditEvent
from audit.models import AuditEvent, AuditHead
from audit.services import append, append_many
from audit.verification import verify_chain
from tests.conftest import require_postgres

from .conftest import execute, sample_event

pytestmark = pytest.mark.django_db


def stored_seqs() -> list[int]:
    return list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))


def test_it_appends_the_events_in_order_after_the_chain():
    first = append(sample_event(0))
    rows = append_many([sample_event(n) for n in (1, 2, 3)])
    assert [row.seq for row in rows] == [2, 3, 4]
    assert [row.prev_hash for row in rows] == [first.hash, rows[0].hash, rows[1].hash]
    assert [AuditEvent.objects.get(seq=r.seq).detail["n"] for r in rows] == [1, 2, 3]
    assert AuditHead.objects.get().seq == 4
    assert verify_chain().valid


def test_the_returned_rows_are_the_stored_ones():
    rows = append_many([sample_event(1, patient="1980051700155"), sample_event(2)])
    for row in rows:
        stored = AuditEvent.objects.get(seq=row.seq)
        assert (stored.hash, stored.time, stored.patient) == (row.hash, row.time, row.patient)


def test_nothing_is_appended_for_no_events():
    assert append_many([]) == []
    assert stored_seqs() == []


def test_one_invalid_event_appends_none_of_them():
    with pytest.raises(InvalidAuditEvent):
        append_many([sample_event(1), sample_event(2, reason_code="X" * 65)])
    assert stored_seqs() == []


def test_it_raises_audit_unavailable_when_the_database_fails():
    execute("ALTER TABLE audit_auditevent RENAME TO audit_gone")
    with pytest.raises(AuditUnavailable, match="could not be written"):
        append_many([sample_event(1), sample_event(2)])


def test_it_rebuilds_a_missing_head_from_the_chain(triggers_dropped):
    append(sample_event(0))
    execute("DELETE FROM audit_audithead")
    assert [row.seq for row in append_many([sample_event(1), sample_event(2)])] == [2, 3]
    assert verify_chain().valid


@pytest.mark.django_db(transaction=True)  # outside a transaction: their own, then the barrier
def test_on_postgresql_a_failure_part_way_appends_none(monkeypatch):
    require_postgres()
    append(sample_event(0))
    # The second event's insert fails after the first's succeeded in the same transaction.
    execute("ALTER TABLE audit_auditevent ADD CONSTRAINT no_seq_3 CHECK (seq <> 3) NOT VALID")
    try:
        with pytest.raises(AuditUnavailable):
            append_many([sample_event(1), sample_event(2), sample_event(3)])
    finally:
        execute("ALTER TABLE audit_auditevent DROP CONSTRAINT no_seq_3")
    assert stored_seqs() == [1]
    assert AuditHead.objects.get().seq == 1
    assert [row.seq for row in append_many([sample_event(4), sample_event(5)])] == [2, 3]
    assert verify_chain().valid


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_flush_barrier_follows_in_a_transaction_of_its_own(monkeypatch):
    require_postgres()
    probe = "SELECT current_setting('synchronous_commit'), pg_current_xact_id_if_assigned()"
    monkeypatch.setattr(services, "_PG_FLUSH_BARRIER", probe)
    append_many([sample_event(1), sample_event(2)])
    setting, xact = services.connection._barrier_cursor.fetchone()
    assert (setting, xact) == ("on", None)


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_failing_barrier_is_audit_unavailable(monkeypatch):
    require_postgres()
    with monkeypatch.context() as broken:
        broken.setattr(services, "_PG_FLUSH_BARRIER", "SELECT 1 / 0")
        with pytest.raises(AuditUnavailable):
            append_many([sample_event(1), sample_event(2)])
    assert append(sample_event(3)).seq == AuditEvent.objects.count()
    assert verify_chain().valid


def raw_json_columns(seq: int) -> tuple:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT basis_ids, detail FROM audit_auditevent WHERE seq = %s", [seq])
        return cursor.fetchone()


@pytest.mark.parametrize(
    "detail",
    [
        {"k'\"\\": ["{,}", 1, True, None], "s": "{,}", "é": "ü ✓ \u2028"},
        {"x": 1e16, "y": 0.1},
        {"nul": "a\x00b"},
    ],
    ids=["punctuation", "floats", "nul"],
)
def test_the_json_fields_are_stored_as_one_append_stores_them(detail):
    single = append(sample_event(1, detail=detail))
    (many,) = append_many([sample_event(1, detail=detail)])
    assert raw_json_columns(many.seq) == raw_json_columns(single.seq)
    assert verify_chain().valid


def test_a_long_batch_is_chained_in_order_across_statements():
    rows = append_many([sample_event(n) for n in range(150)])
    assert [row.seq for row in rows] == list(range(1, 151))
    assert [AuditEvent.objects.get(seq=r.seq).detail["n"] for r in rows] == list(range(150))
    assert verify_chain().valid


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_long_batch_failing_late_appends_none():
    require_postgres()
    append(sample_event(0))
    execute("ALTER TABLE audit_auditevent ADD CONSTRAINT no_seq_100 CHECK (seq <> 100) NOT VALID")
    try:
        with pytest.raises(AuditUnavailable):
            append_many([sample_event(n) for n in range(150)])
    finally:
        execute("ALTER TABLE audit_auditevent DROP CONSTRAINT no_seq_100")
    assert stored_seqs() == [1]
    assert len(append_many([sample_event(n) for n in range(150)])) == 150
    assert verify_chain().valid
