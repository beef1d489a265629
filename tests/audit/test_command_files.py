"""The audit commands' files: a bad path is said first, and a failed export leaves no file."""

import errno
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import exports
from audit.models import AuditCheckpoint, AuditEvent
from tests.processes import manage

from .test_checkpoints import key  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def _exports() -> int:
    return AuditEvent.objects.filter(action="audit.export").count()


def test_an_output_in_a_missing_folder_is_refused_before_anything(append_events, tmp_path):
    append_events(2)
    with pytest.raises(CommandError, match=r"--output: .*missing is not a folder that exists"):
        call_command("export_audit", "--format", "csv", "--output", tmp_path / "missing" / "x.csv")
    assert _exports() == 0  # no export audited that never happened


def test_an_output_that_is_a_folder_is_refused(append_events, tmp_path):
    with pytest.raises(CommandError, match="is a folder; name a file in it"):
        call_command("export_audit", "--format", "csv", "--output", tmp_path)


def test_a_failed_export_leaves_the_earlier_file_and_no_partial_one(
    append_events, tmp_path, monkeypatch
):
    append_events(3)
    target = tmp_path / "audit.csv"
    target.write_text("yesterday's export\n")
    render = exports.render

    def disk_full(fmt, events):
        chunks = render(fmt, events)
        yield next(chunks)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exports, "render", disk_full)
    with pytest.raises(CommandError, match="No space left on device; nothing was written"):
        call_command("export_audit", "--format", "csv", "--output", target)
    assert target.read_text() == "yesterday's export\n"
    assert sorted(os.listdir(tmp_path)) == ["audit.csv"]


def test_a_complete_export_replaces_the_file_readable_by_its_owner_only(append_events, tmp_path):
    append_events(2)
    target = tmp_path / "audit.csv"
    target.write_text("yesterday's export\n")
    call_command("export_audit", "--format", "csv", "--output", target)
    assert target.read_text().startswith("seq,")
    assert target.stat().st_mode & 0o077 == 0
    assert sorted(os.listdir(tmp_path)) == ["audit.csv"]


def test_a_malformed_date_is_an_argument_error_not_a_traceback(tmp_path):
    result = manage(
        "export_audit", "--format", "csv", "--since", "2026-13-01",
        DEBUG="True", VAR_DIR=str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        "error: argument --since: '2026-13-01' is not an ISO date or date-time"
    )


@pytest.mark.usefixtures("key")
def test_a_checkpoint_export_to_a_missing_folder_is_refused_before_signing(append_events, tmp_path):
    append_events(2)
    with pytest.raises(CommandError, match=r"--export: .*missing is not a folder that exists"):
        call_command("audit_checkpoint", "--export", tmp_path / "missing" / "cp.json")
    assert not AuditCheckpoint.objects.exists()


@pytest.mark.usefixtures("key")
def test_a_checkpoint_export_onto_a_folder_is_refused_before_signing(append_events, tmp_path):
    append_events(2)
    with pytest.raises(CommandError, match="is a folder; name a file in it"):
        call_command("audit_checkpoint", "--export", tmp_path)
    assert not AuditCheckpoint.objects.exists()
