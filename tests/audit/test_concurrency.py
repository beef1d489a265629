"""Appends from many processes at once: one gapless, verifiable chain (PostgreSQL)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from audit.models import AuditEvent
from audit.verification import verify_chain
from tests.conftest import require_postgres

ROOT = Path(__file__).resolve().parents[2]
WORKERS, EACH = 8, 500


def child_env() -> dict[str, str]:
    """The test database as a DATABASE_URL the children can open."""
    s = connection.settings_dict
    url = (
        f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "anim_gateway.settings_test",
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_keeps_one_gapless_chain_under_eight_concurrent_processes():
    require_postgres()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit.workers", str(n), str(EACH)],
            cwd=ROOT,
            env=child_env(),
            stderr=subprocess.PIPE,
        )
        for n in range(WORKERS)
    ]
    for child in children:
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err.decode()[-2000:]
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, WORKERS * EACH + 1))
    assert AuditEvent.objects.values("request_id").distinct().count() == WORKERS * EACH
    result = verify_chain()
    assert result.valid, result.summary()
    assert result.events == WORKERS * EACH


@pytest.mark.django_db(transaction=True)
def test_it_lets_transactional_tests_flush_the_append_only_tables(append_events):
    # Teardown flushes the tables despite the triggers (audit/management/commands/flush.py);
    # the next test starts from an empty log.
    append_events(2)
    assert AuditEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_starts_from_one_after_a_flush(append_events):
    assert append_events(1)[0].seq == 1
