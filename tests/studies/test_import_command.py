"""import_dicom as an operator meets it: its exit status, an empty folder, what is not a file."""

import errno
import os
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studies.models import Instance

from .conftest import dicom_copy

pytestmark = pytest.mark.django_db(transaction=True)


def _run(path: Path) -> None:
    call_command("import_dicom", str(path), "--institution", "CHEM", "--no-progress")


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    dicom_copy(tree, patient_id="CHEM-X1")
    return tree


def test_it_exits_1_when_a_file_is_rejected_after_storing_the_others(cast, tmp_path, capsys):
    tree = _tree(tmp_path)
    (tree / "notes.txt").write_text("not dicom")
    with pytest.raises(
        CommandError, match=r"1 not imported \(listed above\); the others are stored"
    ):
        _run(tree)
    out = capsys.readouterr().out
    assert "2 file(s): 1 stored, 0 duplicate, 1 rejected" in out
    assert "notes.txt: Not a DICOM" in out
    assert Instance.objects.count() == 1


def test_it_exits_0_when_every_file_is_stored_or_already_there(cast, tmp_path, capsys):
    tree = _tree(tmp_path)
    _run(tree)
    _run(tree)
    assert "1 file(s): 0 stored, 1 duplicate, 0 rejected" in capsys.readouterr().out


def test_it_refuses_an_empty_folder_rather_than_reporting_success(cast, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden").write_text("skipped")
    with pytest.raises(CommandError, match=r"No files to import under .*empty"):
        _run(tmp_path / "empty")


def test_a_broken_link_and_a_link_loop_are_reported_not_skipped(cast, tmp_path, capsys):
    tree = _tree(tmp_path)
    (tree / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (tree / "loop-a").symlink_to(tree / "loop-b")
    (tree / "loop-b").symlink_to(tree / "loop-a")
    with pytest.raises(CommandError, match="3 not imported"):
        _run(tree)
    out = capsys.readouterr().out
    assert "4 file(s): 1 stored, 0 duplicate, 3 rejected" in out
    for name in ("gone.dcm", "loop-a", "loop-b"):
        assert f"{name}: cannot be read (a broken link or a link loop)" in out


def test_a_link_to_a_parent_folder_is_not_followed(cast, tmp_path, capsys):
    tree = _tree(tmp_path)
    (tree / "sub").mkdir()
    (tree / "sub" / "up").symlink_to(tree, target_is_directory=True)
    _run(tree)
    assert "1 file(s): 1 stored" in capsys.readouterr().out


def test_a_pipe_is_reported_rather_than_read(cast, tmp_path, capsys):
    tree = _tree(tmp_path)
    os.mkfifo(tree / "pipe.dcm")  # opening it would wait for a writer for ever
    with pytest.raises(CommandError, match="1 not imported"):
        _run(tree)
    assert "pipe.dcm: cannot be read (not a regular file)" in capsys.readouterr().out
    assert Instance.objects.count() == 1


def test_a_folder_that_cannot_be_listed_is_reported(cast, tmp_path, monkeypatch, capsys):
    tree = _tree(tmp_path)
    locked = tree / "locked"
    locked.mkdir()
    dicom_copy(locked, patient_id="CHEM-X1")
    scandir = os.scandir

    def denied(path=".", *args):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(locked))
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", denied)  # as root, chmod would not stop the walk
    with pytest.raises(CommandError, match="1 not imported"):
        _run(tree)
    out = capsys.readouterr().out
    assert "1 file(s): 1 stored, 0 duplicate, 0 rejected" in out
    assert f"rejected {locked}: folder cannot be read (Permission denied)" in out
