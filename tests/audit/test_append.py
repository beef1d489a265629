"""append(): gapless sequence numbers, a verifiable chain, the caller's transaction, failures."""

import datetime
import gc
import weakref

import pytest
from django.db import connection, transaction
from django.utils.safestring import mark_safe

from audit import canonical, services
from audit.errors import AuditUnavailable, InvalidAuditEvent
from audit.events import EVENT_FIELDS
from audit.models import AuditEvent, AuditHead
from audit.services import append
from audit.verification import verify_chain
from tests.conftest import require_postgres

from .conftest import execute, sample_event

pytestmark = pytest.mark.django_db


def test_it_numbers_events_from_one_without_gaps(append_events):
    append_events(5)
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    assert AuditHead.objects.get().seq == 5


def test_it_chains_each_event_to_the_previous_hash(append_events):
    first, second = append_events(2)
    assert first.prev_hash == canonical.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert second.hash == canonical.event_hash(
        prev_hash=first.hash,
        version=1,
        seq=second.seq,
        time=second.time,
        fields=[getattr(second, name) for name in EVENT_FIELDS],
    )


def test_it_stores_the_event_fields_as_given():
    row = append(sample_event(3, on_behalf_of="1992110300270", reason_code="NO_CONSENT"))
    stored = AuditEvent.objects.get(seq=row.seq)
    assert stored.actor_display == "Dr Alice Arend"
    assert stored.basis_ids == {"consent": 3, "care_relationship": 7}
    assert stored.detail == {"n": 3, "note": "é ünïcode ✓"}
    assert stored.reason_code == "NO_CONSENT"
    assert stored.on_behalf_of == "1992110300270"
    assert stored.time.tzinfo is not None
    assert stored.version == canonical.CURRENT_VERSION


def test_it_hashes_dicts_as_they_read_back(append_events):
    # Tuples become lists and integer keys become strings in JSON: hash what is stored.
    append(sample_event(detail={"pair": (1, 2), 5: "five"}))
    assert AuditEvent.objects.get().detail == {"pair": [1, 2], "5": "five"}
    assert verify_chain().valid


def test_it_keeps_the_time_non_decreasing_along_the_chain(append_events):
    rows = append_events(10)
    times = [r.time for r in rows]
    assert times == sorted(times)


@transaction.atomic
def failing_service() -> None:
    append(sample_event(1))
    raise RuntimeError("the service failed after auditing")


def test_it_rolls_back_with_the_callers_transaction(append_events):
    append_events(1)
    with pytest.raises(RuntimeError):
        failing_service()
    assert AuditEvent.objects.count() == 1
    assert AuditHead.objects.get().seq == 1
    assert append(sample_event(2)).seq == 2


def test_it_refuses_an_unknown_action():
    with pytest.raises(InvalidAuditEvent, match="Unknown audit action"):
        append(sample_event(action="study.teleport"))


def test_it_refuses_an_unknown_outcome():
    with pytest.raises(InvalidAuditEvent, match="outcome"):
        append(sample_event(outcome="maybe"))


def test_it_refuses_a_detail_that_is_not_plain_json():
    with pytest.raises(InvalidAuditEvent, match="detail"):
        append(sample_event(detail={"when": object()}))


def test_it_refuses_an_oversized_code():
    with pytest.raises(InvalidAuditEvent, match="reason_code"):
        append(sample_event(reason_code="X" * 65))


def test_it_raises_audit_unavailable_when_the_database_fails(append_events):
    append_events(1)
    # The table gone (rolled back with the test): any database error will do.
    execute("ALTER TABLE audit_auditevent RENAME TO audit_gone")
    with pytest.raises(AuditUnavailable, match="could not be written"):
        append(sample_event())


def test_it_leaves_the_callers_transaction_usable_after_a_failure(append_events):
    execute("ALTER TABLE audit_auditevent RENAME TO audit_gone")
    with pytest.raises(AuditUnavailable):
        append(sample_event())
    assert AuditHead.objects.count() == 1


def test_it_rebuilds_a_missing_head_from_the_chain(append_events, triggers_dropped):
    append_events(3)
    execute("DELETE FROM audit_audithead")
    assert append(sample_event(9)).seq == 4
    assert verify_chain().valid


def test_it_replaces_nul_characters_that_postgresql_cannot_store():
    row = append(sample_event(message="a\x00b"))
    assert AuditEvent.objects.get(seq=row.seq).message == "a\ufffdb"
    assert verify_chain().valid


def test_it_raises_audit_unavailable_inside_a_broken_transaction(append_events):
    from django.db import DatabaseError

    append_events(1)
    with transaction.atomic():
        with pytest.raises(DatabaseError), transaction.atomic(savepoint=False):
            execute("SELECT * FROM no_such_table")
        with pytest.raises(AuditUnavailable):
            append(sample_event(2))


def test_postgresql_plans_the_append_once_per_connection():
    """Django turns psycopg's prepared statements off by default; the settings turn them
    back on, or the append's statement would be parsed and planned on every call."""
    require_postgres()
    append(sample_event(1))
    append(sample_event(2))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%audit_audithead%"],
        )
        (prepared,) = cursor.fetchone()
    assert prepared >= 1


def test_an_event_keeps_the_clocks_time_even_after_a_later_one(append_events, triggers_dropped):
    """As if the clock had been set back: the record says when it was written, as it was."""
    (first,) = append_events(1)
    future = first.time + datetime.timedelta(days=1)
    execute("UPDATE audit_auditevent SET time = %s WHERE seq = 1", [future])
    second = append(sample_event(2))
    assert second.time < future


@pytest.mark.django_db(transaction=True)  # outside a transaction: the append's own commit
def test_the_flush_barrier_is_a_transaction_of_its_own_with_synchronous_commit(monkeypatch):
    """The append commits with synchronous_commit off and the barrier goes in the same round
    trip: it must still be a separate transaction (a Sync between them), whose commit waits
    for the flush, or the audit row would not be durable before the data is sent."""
    require_postgres()
    probe = "SELECT current_setting('synchronous_commit'), pg_current_xact_id_if_assigned()"
    monkeypatch.setattr(services, "_PG_FLUSH_BARRIER", probe)
    row = append(sample_event(1))
    setting, xact = connection._barrier_cursor.fetchone()
    assert setting == "on"
    assert xact is None  # nothing of the append's transaction is left in the barrier's
    assert AuditEvent.objects.filter(seq=row.seq, hash=row.hash).exists()


@pytest.mark.django_db(transaction=True)
def test_the_pipelined_append_rebuilds_a_missing_head(triggers_dropped):
    require_postgres()
    append(sample_event(1))
    execute("DELETE FROM audit_audithead")
    assert append(sample_event(2)).seq == 2
    assert verify_chain().valid


@pytest.mark.django_db(transaction=True)
def test_the_pipelined_append_raises_audit_unavailable_when_the_database_fails():
    require_postgres()
    execute("ALTER TABLE audit_auditevent RENAME TO audit_gone")
    try:
        with pytest.raises(AuditUnavailable, match="could not be written"):
            append(sample_event(1))
    finally:
        execute("ALTER TABLE audit_gone RENAME TO audit_auditevent")
    assert append(sample_event(2)).seq == 1


@pytest.mark.django_db(transaction=True)
def test_the_pipelined_append_raises_audit_unavailable_when_the_barrier_fails(monkeypatch):
    """The append's own transaction commits before the barrier runs (a Sync between them);
    a barrier that fails means the row is not known to be flushed: AuditUnavailable, never
    a returned row, and the connection stays usable for the next append."""
    require_postgres()
    append(sample_event(1))
    with monkeypatch.context() as broken:
        broken.setattr(services, "_PG_FLUSH_BARRIER", "SELECT 1 / 0")
        with pytest.raises(AuditUnavailable, match="could not be written"):
            append(sample_event(2))
    assert append(sample_event(3)).seq == AuditEvent.objects.count()
    assert verify_chain().valid


@pytest.mark.django_db(transaction=True)  # a connection closed inside a test's transaction stays
def test_a_closed_connection_is_not_kept_alive_by_its_cursor():
    require_postgres()
    append(sample_event(1))
    closed = weakref.ref(connection.connection)
    connection.close()
    append(sample_event(2))
    gc.collect()
    assert closed() is None
    assert connection._audit_cursor.connection is connection.connection


def test_a_string_subclass_is_stored_as_a_plain_string():
    row = append(sample_event(reason_code=mark_safe("NO_CONSENT")))
    assert type(row.reason_code) is str
    assert AuditEvent.objects.get(seq=row.seq).reason_code == "NO_CONSENT"
