"""Verification split over worker processes finds the same first bad seq (PostgreSQL)."""

import pytest
from django.db import connection

from audit import triggers
from audit.verification import verify_chain
from tests.conftest import require_postgres

from .conftest import execute

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chain(append_events):
    require_postgres()
    append_events(300)
    # Ranges of 100: 1..100, 101..200, 201..300.
    yield
    triggers.set_enabled(connection, enabled=False)
    triggers.set_enabled(connection, enabled=True)


def verify() -> tuple:
    result = verify_chain(workers=3, min_range=10)
    return result.valid, result.first_invalid_seq, result.events


def tamper(sql: str) -> None:
    triggers.set_enabled(connection, enabled=False)
    execute(sql)


def test_it_verifies_a_whole_chain_in_parallel(chain, monkeypatch):
    from audit import verification

    calls = []
    original = verification._walk_in_parallel
    monkeypatch.setattr(
        verification, "_walk_in_parallel", lambda *a: calls.append(a[-1]) or original(*a)
    )
    assert verify() == (True, None, 300)
    assert calls == [3]


def test_it_finds_an_edit_inside_a_range(chain):
    tamper("UPDATE audit_auditevent SET outcome = 'deny' WHERE seq = 150")
    assert verify()[:2] == (False, 150)


def test_it_finds_a_row_deleted_at_a_seam(chain):
    tamper("DELETE FROM audit_auditevent WHERE seq = 101")
    assert verify()[:2] == (False, 101)


def test_it_finds_the_last_row_of_a_range_deleted(chain):
    tamper("DELETE FROM audit_auditevent WHERE seq = 100")
    assert verify()[:2] == (False, 100)


def test_it_finds_a_seam_that_does_not_link(chain):
    tamper("UPDATE audit_auditevent SET prev_hash = repeat('a', 64) WHERE seq = 201")
    assert verify()[:2] == (False, 201)


def test_it_names_the_earliest_of_two_problems(chain):
    tamper("UPDATE audit_auditevent SET outcome = 'deny' WHERE seq IN (77, 250)")
    assert verify()[:2] == (False, 77)
