"""Previews and fixity checks through a database outage and a worker killed mid-task."""

import pytest
from django.db import OperationalError
from django.db.models.sql.compiler import SQLCompiler

from studies import tasks
from studies.models import Instance, Series

from .conftest import dicom_copy, ingest


@pytest.mark.parametrize("task", [tasks.series_preview, tasks.fixity_check_batch])
def test_a_task_is_acknowledged_once_done_and_retried_through_a_restart(task):
    assert task.acks_late is True
    delays = [min(2**n, task.retry_backoff_max) for n in range(task.max_retries)]
    assert not task.retry_jitter
    assert sum(delays) >= 10 * 60


def test_only_the_fixity_batch_is_requeued_when_its_worker_dies():
    # A preview whose decoding kills its worker would kill every worker it is given to.
    assert tasks.fixity_check_batch.reject_on_worker_lost is True
    assert not tasks.series_preview.reject_on_worker_lost


@pytest.fixture
def database_fails_once(monkeypatch):
    """The next query of instances fails, as on a connection PostgreSQL ended (a restart),
    once a test has added the failure."""
    real = SQLCompiler.execute_sql
    failures: list[OperationalError] = []

    def execute_sql(self, *args, **kwargs):
        if failures and self.query.model is Instance:
            raise failures.pop()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "execute_sql", execute_sql)
    return failures


def _run(task, args: list, failures: list) -> object:
    """The task run eagerly: Celery runs a retry it asks for at once (a worker, later)."""
    result = task.apply(args=args, throw=False).get()
    assert failures == [], "the failure never happened"
    return result


def test_a_preview_is_retried_after_a_database_failure(cast, tmp_path, database_fails_once):
    ingest(dicom_copy(tmp_path))
    instance = Instance.objects.get()
    database_fails_once.append(OperationalError("terminating connection"))
    key = _run(tasks.series_preview, [instance.pk], database_fails_once)
    assert Series.objects.get().preview_key == key != ""


def test_a_fixity_batch_is_retried_after_a_database_failure(cast, tmp_path, database_fails_once):
    ingest(dicom_copy(tmp_path))
    instance = Instance.objects.get()
    database_fails_once.append(OperationalError("terminating connection"))
    assert _run(tasks.fixity_check_batch, [[instance.pk]], database_fails_once) == []
    instance.refresh_from_db()
    assert instance.fixity_ok is True
