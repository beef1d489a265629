"""The audit tables refuse UPDATE, DELETE and TRUNCATE: in the ORM and in the database."""

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit.checkpoints import checkpoint_take
from audit.errors import AuditImmutable
from audit.models import AuditCheckpoint, AuditEvent
from tests.conftest import require_postgres

from .conftest import execute

pytestmark = pytest.mark.django_db


def refused(sql: str) -> str:
    """Run sql in a savepoint and return the database's refusal message."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        execute(sql)
    return str(caught.value)


def test_it_refuses_saving_an_existing_row_through_the_orm(append_events):
    (row,) = append_events(1)
    row.message = "nothing happened"
    with pytest.raises(AuditImmutable):
        row.save()


def test_it_refuses_deleting_a_row_through_the_orm(append_events):
    (row,) = append_events(1)
    with pytest.raises(AuditImmutable):
        row.delete()


def test_it_refuses_bulk_update_and_delete_through_the_orm(append_events):
    append_events(2)
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.filter(seq=1).update(message="x")
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.count() == 2


def test_it_refuses_rows_written_beside_append_through_the_orm(append_events):
    (row,) = append_events(1)
    forged = {"seq": 2, "time": row.time, "version": 1, "prev_hash": row.hash, "hash": "0" * 64}
    fields = {name: getattr(row, name) for name in ("action", "outcome", "message")}
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.create(**forged, **fields)
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.bulk_create([AuditEvent(**forged, **fields)])
    assert AuditEvent.objects.count() == 1


def test_it_refuses_raw_sql_update(append_events):
    append_events(2)
    assert "append-only" in refused("UPDATE audit_auditevent SET message = 'x' WHERE seq = 1")
    assert AuditEvent.objects.get(seq=1).message != "x"


def test_it_refuses_raw_sql_delete(append_events):
    append_events(2)
    assert "append-only" in refused("DELETE FROM audit_auditevent WHERE seq = 2")
    assert "append-only" in refused("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == 2


def test_it_refuses_raw_sql_changes_to_checkpoints(append_events):
    append_events(1)
    checkpoint_take()
    assert "append-only" in refused("UPDATE audit_auditcheckpoint SET seq = 9")
    assert "append-only" in refused("DELETE FROM audit_auditcheckpoint")
    assert AuditCheckpoint.objects.get().seq == 1


def test_it_refuses_truncate_on_postgresql(append_events):
    require_postgres()
    append_events(2)
    assert "TRUNCATE" in refused("TRUNCATE audit_auditevent")
    assert "TRUNCATE" in refused("TRUNCATE audit_auditcheckpoint")
    assert AuditEvent.objects.count() == 2


def test_it_installs_the_triggers_of_the_connections_vendor():
    if connection.vendor == "postgresql":
        sql = (
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid = 'audit_auditevent'::regclass ORDER BY tgname"
        )
        expected = ["audit_auditevent_append_only", "audit_auditevent_no_truncate"]
    else:
        sql = (
            "SELECT name FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = 'audit_auditevent' ORDER BY name"
        )
        expected = [
            "audit_auditevent_no_delete",
            "audit_auditevent_no_replace",
            "audit_auditevent_no_update",
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql)
        assert [name for (name,) in cursor.fetchall()] == expected


def test_it_still_allows_inserting(append_events):
    append_events(3)
    assert AuditEvent.objects.count() == 3


def test_it_refuses_flush_outside_tests_without_the_explicit_flag(append_events, monkeypatch):
    from django.core import mail
    from django.core.management.base import CommandError

    append_events(1)
    monkeypatch.delattr(mail, "outbox")
    with pytest.raises(CommandError, match="erase-audit-log"):
        call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 1


def test_it_never_erases_a_production_log_even_when_asked(append_events, monkeypatch, settings):
    from django.core import mail
    from django.core.management.base import CommandError

    append_events(1)
    settings.AUDIT_ERASABLE = False
    monkeypatch.delattr(mail, "outbox")
    with pytest.raises(CommandError, match="development instance"):
        call_command("flush", "--erase-audit-log", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 1
