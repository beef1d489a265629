"""A superuser who drops the triggers and rewrites rows is caught by verify_audit."""

import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit import canonical
from audit.checkpoints import checkpoint_take
from audit.events import EVENT_FIELDS
from audit.verification import verify_chain

from .conftest import execute

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(append_events):
    return append_events(6)


def verify_audit_fails_at(seq: int, capsys=None) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit")
    assert f"first invalid seq {seq}:" in str(caught.value)
    return str(caught.value)


def test_it_verifies_an_untouched_chain(chain, capsys):
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert out.startswith("OK: 6 events verified (seq 1..6)")
    assert out.count("\n") == 1


def test_it_verifies_an_empty_log(db, capsys):
    call_command("verify_audit")
    assert "OK: 0 events" in capsys.readouterr().out


def test_it_names_an_edited_field(chain, triggers_dropped):
    execute("UPDATE audit_auditevent SET outcome = 'deny' WHERE seq = 3")
    assert "content was changed" in verify_audit_fails_at(3)


def test_it_names_an_edited_json_field(chain, triggers_dropped):
    execute("UPDATE audit_auditevent SET basis_ids = %s WHERE seq = 2", ['{"consent": 99}'])
    verify_audit_fails_at(2)


def test_it_names_an_edited_time(chain, triggers_dropped):
    execute("UPDATE audit_auditevent SET time = %s WHERE seq = 5", [timezone.now()])
    verify_audit_fails_at(5)


def test_it_names_an_edited_field_even_with_its_hash_recomputed(chain, triggers_dropped):
    row = chain[2]
    forged = canonical.event_hash(
        prev_hash=row.prev_hash,
        version=1,
        seq=3,
        time=row.time,
        fields=["deny" if n == "outcome" else getattr(row, n) for n in EVENT_FIELDS],
    )
    execute("UPDATE audit_auditevent SET outcome = 'deny', hash = %s WHERE seq = 3", [forged])
    # Event 3 is self-consistent now; event 4 no longer links to it.
    assert "does not link" in verify_audit_fails_at(4)


def test_it_names_a_deleted_row(chain, triggers_dropped):
    execute("DELETE FROM audit_auditevent WHERE seq = 4")
    assert "#4 is missing" in verify_audit_fails_at(4)


def test_it_names_a_reordered_pair(chain, triggers_dropped):
    execute("UPDATE audit_auditevent SET seq = -1 WHERE seq = 2")
    execute("UPDATE audit_auditevent SET seq = 2 WHERE seq = 3")
    execute("UPDATE audit_auditevent SET seq = 3 WHERE seq = -1")
    verify_audit_fails_at(2)


def test_it_names_an_inserted_row(chain, triggers_dropped):
    # Make room after #3, then insert a well-formed event that chains to #3: it verifies on
    # its own (the hash has no secret), so the first bad event is the one pushed to #5.
    for seq in (6, 5, 4):
        execute("UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [seq + 1, seq])
    forged = chain[3]
    now = forged.time
    fields = [getattr(forged, n) for n in EVENT_FIELDS]
    digest = canonical.event_hash(
        prev_hash=chain[2].hash, version=1, seq=4, time=now, fields=fields
    )
    columns = ", ".join(["seq", "time", "version", "prev_hash", "hash", *EVENT_FIELDS])
    values = [4, now, 1, chain[2].hash, digest]
    values += [canonical.encode_content(v) if isinstance(v, dict) else v for v in fields]
    marks = ", ".join(["%s"] * len(values))
    execute(f"INSERT INTO audit_auditevent ({columns}) VALUES ({marks})", values)  # noqa: S608
    verify_audit_fails_at(5)


def test_it_names_a_row_inserted_at_the_end_with_a_wrong_hash(chain, triggers_dropped):
    execute(
        "INSERT INTO audit_auditevent (seq, time, version, prev_hash, hash, action, outcome, "
        "reason_code, basis, basis_ids, actor_role, actor_username, actor_display, "
        "actor_profession, acting_institution, on_behalf_of, patient, study_uid, "
        "client_address, request_id, message, detail) VALUES (7, %s, 1, %s, %s, "
        "'study.retrieve', 'permit', '', '', '{}', '', 'mallory', '', '', '', '', '', '', '', "
        "'', '', '{}')",
        [timezone.now(), chain[-1].hash, "f" * 64],
    )
    execute("UPDATE audit_audithead SET seq = 7")
    verify_audit_fails_at(7)


def test_it_names_a_truncated_tail_against_the_latest_checkpoint(chain, triggers_dropped):
    checkpoint_take()
    execute("DELETE FROM audit_auditevent WHERE seq >= 5")
    # A careful superuser also rewinds the head; the signed checkpoint still remembers #6.
    execute("UPDATE audit_audithead SET seq = 4, hash = %s", [chain[3].hash])
    assert "truncated tail" in verify_audit_fails_at(5)


def test_it_names_a_truncated_tail_against_the_head(chain, triggers_dropped):
    execute("DELETE FROM audit_auditevent WHERE seq = 6")
    verify_audit_fails_at(6)


def test_it_names_a_chain_rewritten_from_a_seq_before_a_checkpoint(chain, triggers_dropped):
    checkpoint_take()
    # Rewrite #6 completely and consistently (hash and head too): only the checkpoint knows.
    row = chain[5]
    fields = ["deny" if n == "outcome" else getattr(row, n) for n in EVENT_FIELDS]
    forged = canonical.event_hash(
        prev_hash=row.prev_hash, version=1, seq=6, time=row.time, fields=fields
    )
    execute("UPDATE audit_auditevent SET outcome = 'deny', hash = %s WHERE seq = 6", [forged])
    execute("UPDATE audit_audithead SET hash = %s", [forged])
    assert "signed checkpoint" in verify_audit_fails_at(6)


def logging_handlers() -> dict[str, list[logging.Handler]]:
    """Every logger's handlers, by logger name (the root's under "")."""
    loggers = logging.root.manager.loggerDict.items()
    found = {name: list(item.handlers) for name, item in loggers if hasattr(item, "handlers")}
    return {"": list(logging.root.handlers), **found}


def test_it_exits_with_status_one_from_the_command_line(
    chain, triggers_dropped, capsys, monkeypatch
):
    import django
    from django.core.management import ManagementUtility
    from django.db import connections

    # run_from_argv closes every connection afterwards, the test's own included.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    # execute() sets Django up, as manage.py does once per process; pytest-django did. Again,
    # it would apply LOGGING anew: stream handlers bound to capsys's stderr, closed after the
    # test, on which every later test's log records would fail ("I/O operation on closed file").
    monkeypatch.setattr(django, "setup", lambda *args, **kwargs: None)
    execute("DELETE FROM audit_auditevent WHERE seq = 2")
    before = logging_handlers()
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "verify_audit"]).execute()
    assert exited.value.code == 1
    assert "first invalid seq 2" in capsys.readouterr().err
    assert logging_handlers() == before  # the logging of the tests that follow is left alone


def test_it_reports_the_result_as_a_value(chain, triggers_dropped):
    execute("UPDATE audit_auditevent SET patient = '' WHERE seq = 1")
    result = verify_chain()
    assert (result.valid, result.first_invalid_seq, result.events) == (False, 1, 0)


def test_it_streams_in_small_chunks(chain):
    assert verify_chain(chunk_size=2).events == 6


def test_it_stores_the_json_fields_as_the_canonical_text_it_hashes(chain):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT basis_ids, detail FROM audit_auditevent WHERE seq = 1")
        basis_ids, detail = cursor.fetchone()
    assert basis_ids == canonical.encode_content(chain[0].basis_ids)
    assert detail == '{"n":0,"note":"\\u00e9 \\u00fcn\\u00efcode \\u2713"}'


def test_it_still_verifies_json_written_in_another_layout(chain, triggers_dropped):
    # Rows from before the canonical text column (jsonb or json.dumps layout) still verify.
    execute(
        "UPDATE audit_auditevent SET detail = %s WHERE seq = 2",
        ['{"note": "é ünïcode ✓", "n": 1}'],
    )
    call_command("verify_audit")


def test_it_names_json_that_no_longer_parses(chain, triggers_dropped):
    execute("UPDATE audit_auditevent SET basis_ids = %s WHERE seq = 5", ['{"consent": '])
    verify_audit_fails_at(5)
