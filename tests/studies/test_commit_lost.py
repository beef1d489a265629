"""A connection lost as the index commits: whether it committed or not, no row is left
without its object, and no object without its row once the sweep has run."""

import datetime

import pytest
from django.db import OperationalError

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


def test_an_index_committed_as_the_connection_was_lost_keeps_its_object(
    cast, tmp_path, private_storage, monkeypatch
):
    require_postgres()
    path = dicom_copy(tmp_path)
    _connection_lost(monkeypatch, after_commit=True)
    with pytest.raises(OperationalError):
        ingest(path)
    monkeypatch.undo()
    instance = Instance.objects.get()
    assert stored_files(private_storage) == [private_storage / instance.storage_key]
    # The sender, told of a failure, sends it again: the same instance, still readable.
    assert ingest(path).status == "duplicate"
    assert orphans_sweep(older_than=datetime.timedelta(0)) == []


def test_an_index_not_committed_as_the_connection_was_lost_leaves_nothing(
    cast, tmp_path, private_storage, monkeypatch
):
    require_postgres()
    _connection_lost(monkeypatch, after_commit=False)
    with pytest.raises(OperationalError):
        ingest(dicom_copy(tmp_path))
    monkeypatch.undo()
    assert not Instance.objects.exists()
    assert stored_files(private_storage) == []
