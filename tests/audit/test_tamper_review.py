"""Tampering a review found verify_audit blind to, or crashing on: each must be named."""

import json

import pytest
from django.db import connection

from audit import forwarding
from audit.models import ForwardState
from audit.selectors import EventFilters, event_list
from audit.services import append
from audit.verification import verify_chain

from .conftest import execute, sample_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(append_events):
    return append_events(6)


def stored_text(column: str, seq: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM audit_auditevent WHERE seq = %s", [seq])  # noqa: S608
        (value,) = cursor.fetchone()
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize(
    ("column", "seq", "tail"),
    [("detail", 3, ' {"reviewed_by_dpo": "justified"}'), ("basis_ids", 2, ',"emergency":12}')],
)
def test_text_after_a_stored_json_value_is_named(chain, triggers_dropped, column, seq, tail):
    execute(
        f"UPDATE audit_auditevent SET {column} = %s WHERE seq = %s",  # noqa: S608
        [stored_text(column, seq) + tail, seq],
    )
    result = verify_chain()
    assert (result.valid, result.first_invalid_seq) == (False, seq)
    assert "does not match its hash" in result.problem


def test_a_non_finite_number_is_named_not_a_crash(chain, triggers_dropped):
    execute("UPDATE audit_auditevent SET detail = %s WHERE seq = 4", ['{"n":NaN}'])
    result = verify_chain()
    assert (result.valid, result.first_invalid_seq) == (False, 4)


def stored_row(select: str) -> dict:
    """One row as stored, by column name: 'SELECT ' + select."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select}")
        names = [c[0] for c in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def forge_beyond_the_head(seq: int) -> None:
    """An INSERT, which the application's role may do, of a copy of the last event."""
    row = stored_row("* FROM audit_auditevent ORDER BY seq DESC LIMIT 1")
    row.update(seq=seq, message="Forged: Dr Bob read the record")
    columns, marks = ", ".join(row), ", ".join("%s" for _ in row)
    execute(f"INSERT INTO audit_auditevent ({columns}) VALUES ({marks})", list(row.values()))  # noqa: S608


def test_a_row_inserted_beyond_the_head_is_named(chain):
    forge_beyond_the_head(1_000_000)
    assert event_list(filters=EventFilters(), limit=1)[0].seq == 1_000_000  # the DPO sees it
    result = verify_chain()
    assert (result.valid, result.first_invalid_seq) == (False, 1_000_000)
    assert "beyond the head" in result.problem


def test_events_appended_since_verification_began_are_not_beyond_the_head(chain):
    assert verify_chain().valid  # the head moves with every append: nothing is beyond it
    append(sample_event(7))
    assert verify_chain().valid


def test_forwarding_stops_at_the_head(chain, settings, monkeypatch):
    settings.AUDIT_SYSLOG_HOST = "atna.example"
    sent: list[int] = []

    def send(events, *, host, state):
        for event in events:
            sent.append(event.seq)
            state.last_seq = event.seq

    monkeypatch.setattr(forwarding, "_send", send)
    forge_beyond_the_head(1_000_000)
    forwarding.forward_pending()
    assert append(sample_event(99)).seq == 7
    forwarding.forward_pending()
    assert sent == [1, 2, 3, 4, 5, 6, 7]  # the forged row is never sent, nor skips #7
    assert ForwardState.objects.get().last_seq == 7


def test_sqlite_insert_or_replace_cannot_rewrite_an_event(chain):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's REPLACE; PostgreSQL's ON CONFLICT DO UPDATE meets its UPDATE trigger")
    row = stored_row("* FROM audit_auditevent WHERE seq = 3")
    row["outcome"] = "deny"
    columns, marks = ", ".join(row), ", ".join("%s" for _ in row)
    with pytest.raises(Exception, match="append-only: REPLACE refused"):
        execute(
            f"INSERT OR REPLACE INTO audit_auditevent ({columns}) VALUES ({marks})",  # noqa: S608
            list(row.values()),
        )


def test_sqlite_replace_naming_a_rowid_cannot_rewrite_an_event(chain):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's REPLACE and rowid")
    row = stored_row("rowid, * FROM audit_auditevent WHERE seq = 3")
    # Under a free seq, the rowid of #3: REPLACE would delete #3 and fire no trigger.
    row.update(seq=1_000_000)
    columns, marks = ", ".join(row), ", ".join("%s" for _ in row)
    with pytest.raises(Exception, match="append-only: REPLACE refused"):
        execute(
            f"INSERT OR REPLACE INTO audit_auditevent ({columns}) VALUES ({marks})",  # noqa: S608
            list(row.values()),
        )
