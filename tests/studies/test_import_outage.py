"""import_dicom through unreadable files, a database outage and a full disk."""

import errno
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from studies import spool, storage
from studies.management.commands import import_dicom
from studies.models import Instance
from tests.conftest import require_postgres

from .conftest import dicom_copy, stored_files

pytestmark = pytest.mark.django_db(transaction=True)


def _tree(tmp_path: Path, count: int) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for _ in range(count):
        dicom_copy(tree, patient_id="CHEM-X1")
    return tree


def _run(tree: Path) -> None:
    call_command("import_dicom", str(tree), "--institution", "CHEM", "--no-progress")


def _spool_left(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "spool").glob("*"))


def test_an_unreadable_file_is_reported_and_the_others_imported(
    cast, tmp_path, monkeypatch, capsys
):
    tree = _tree(tmp_path, 3)
    unreadable = import_dicom.files_under(tree)[1]
    path_open = Path.open

    def denied(self, *args, **kwargs):
        if self == unreadable:
            raise PermissionError(errno.EACCES, "Permission denied")
        return path_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(CommandError, match="1 not imported"):
        _run(tree)
    out = capsys.readouterr().out
    assert "3 file(s): 2 stored, 0 duplicate, 1 rejected" in out
    assert f"{unreadable.name}: cannot be read (Permission denied)" in out
    assert Instance.objects.count() == 2
    assert _spool_left(tmp_path) == []


def _second_file_fails(monkeypatch, fail) -> None:
    calls = []
    ingest = import_dicom.instance_ingest

    def failing_second(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            fail()
        return ingest(**kwargs)

    monkeypatch.setattr(import_dicom, "instance_ingest", failing_second)


def test_a_database_outage_stops_the_import_saying_so_and_a_rerun_finishes_it(
    cast, tmp_path, private_storage, monkeypatch, capsys
):
    require_postgres()
    tree = _tree(tmp_path, 3)

    def database_down() -> None:
        connection.close()
        monkeypatch.setitem(connection.settings_dict, "PORT", "1")

    _second_file_fails(monkeypatch, database_down)
    with pytest.raises(CommandError, match="database is unavailable"):
        _run(tree)
    monkeypatch.undo()
    connection.close()
    assert "1 stored" in capsys.readouterr().out
    assert Instance.objects.count() == 1
    assert len(stored_files(private_storage)) == 1
    assert _spool_left(tmp_path) == []
    _run(tree)
    assert "3 file(s): 2 stored, 1 duplicate, 0 rejected" in capsys.readouterr().out


def test_a_full_disk_stops_the_import_saying_so(cast, tmp_path, private_storage, monkeypatch):
    tree = _tree(tmp_path, 3)

    def disk_full() -> None:
        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(spool.SpoolWriter, "_consume", no_space)
        monkeypatch.setattr(storage, "object_put", no_space)

    _second_file_fails(monkeypatch, disk_full)
    with pytest.raises(CommandError, match="No space left on device"):
        _run(tree)
    assert Instance.objects.count() == 1
    assert len(stored_files(private_storage)) == 1
    assert _spool_left(tmp_path) == []


def test_an_audit_log_outage_stops_the_import_saying_so(
    cast, tmp_path, private_storage, monkeypatch
):
    from audit.errors import AuditUnavailable

    tree = _tree(tmp_path, 2)

    def unavailable(event):
        raise AuditUnavailable("the audit table cannot be written")

    monkeypatch.setattr("consent.auditing.append", unavailable)
    with pytest.raises(CommandError, match="audit log is unavailable"):
        _run(tree)
    assert not Instance.objects.exists()
    assert stored_files(private_storage) == []
    assert _spool_left(tmp_path) == []
