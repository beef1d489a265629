"""A connection lost as the index commits: whether it committed or not, no row is left
without its object, and no object without its row once the sweep has run."""

import datetime

import pytest
from django.db import IntegrityError, OperationalError

from studies import ingest_index, ingest_sql
from studies.models import Instance
from studies.tasks import orphans_sweep
from tests.conftest import require_postgres

from .conftest import dicom_copy, ingest, stored_files

pytestmark = pytest.mark.django_db(transaction=True)

LOST = "server closed the connection unexpectedly"


def _connection_lost(monkeypatch, *, after_commit: bool) -> None:
    real = ingest_sql.index_rows

    def index_rows(**kwargs):
        if not after_commit:
            raise OperationalError(LOST)
        real(**kwargs)
        raise OperationalError(LOST)  # committed, but the answer never arrived

    monkeypatch.setattr(ingest_index.ingest_sql, "index_rows", index_rows)


def _failed_then_sent_again(path, private_storage, monkeypatch) -> None:
    """The store fails (the connection lost after its commit); the instance is indexed with
    its object, and the sender, told of a failure, sends it again: the same instance."""
    with pytest.raises(OperationalError):
        ingest(path)
    monkeypatch.undo()
    instance = Instance.objects.get()
    assert stored_files(private_storage) == [private_storage / instance.storage_key]
    assert ingest(path).status == "duplicate"


def test_an_index_committed_as_the_connection_was_lost_keeps_its_object(
    cast, tmp_path, private_storage, monkeypatch
):
    require_postgres()
    path = dicom_copy(tmp_path)
    _connection_lost(monkeypatch, after_commit=True)
    _failed_then_sent_again(path, private_storage, monkeypatch)
    assert orphans_sweep(older_than=datetime.timedelta(0)) == []


def test_an_index_not_committed_as_the_connection_was_lost_leaves_its_object_to_the_sweep(
    cast, tmp_path, private_storage, monkeypatch
):
    # Deleting it at once could delete the object of a commit still on its way.
    require_postgres()
    _connection_lost(monkeypatch, after_commit=False)
    with pytest.raises(OperationalError):
        ingest(dicom_copy(tmp_path))
    monkeypatch.undo()
    assert not Instance.objects.exists()
    assert len(stored_files(private_storage)) == 1
    assert len(orphans_sweep(older_than=datetime.timedelta(0))) == 1
    assert stored_files(private_storage) == []


def test_a_connection_lost_while_indexing_one_at_a_time_keeps_the_committed_object(
    cast, tmp_path, private_storage, monkeypatch
):
    """After a race (IntegrityError), instances are indexed one by one: a commit whose
    answer was lost there keeps its object too."""
    require_postgres()
    path = dicom_copy(tmp_path)
    real = ingest_index.index_batch
    calls = []

    def index_batch(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("a concurrent writer")
        real(**kwargs)
        raise OperationalError(LOST)  # committed, but the answer never arrived

    monkeypatch.setattr("studies.ingest.index_batch", index_batch)
    _failed_then_sent_again(path, private_storage, monkeypatch)
