"""manage.py as an operator meets it: a configuration fault or a database outage in one line."""

import pytest

from tests.processes import manage

NO_DATABASE = "postgres://anim:s3cr3t@127.0.0.1:1/anim"  # nothing listens on port 1


def test_a_malformed_variable_is_one_line_naming_it(tmp_path) -> None:
    result = manage("check", DEBUG="yes", VAR_DIR=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == "Configuration error: DEBUG must be True or False, not 'yes'\n"


def test_a_missing_secret_file_is_one_line_naming_it(tmp_path) -> None:
    result = manage("check", SECRET_KEY_FILE=str(tmp_path / "gone"), VAR_DIR=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == (
        f"Configuration error: SECRET_KEY_FILE names {tmp_path / 'gone'}, which cannot be read"
        " (No such file or directory)\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["issue_token", "alice"],
        ["revoke_tokens", "alice"],
        ["verify_audit"],
        ["export_audit", "--format", "csv"],  # its audit append fails first
        ["migrate"],
    ],
)
def test_a_database_outage_is_one_line_and_exit_1(tmp_path, command: list[str]) -> None:
    result = manage(*command, DEBUG="True", VAR_DIR=str(tmp_path), DATABASE_URL=NO_DATABASE)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("The database is unavailable (DATABASE_URL): ")
    assert "127.0.0.1" in lines[0]
    assert "s3cr3t" not in result.stderr


def test_traceback_keeps_the_traceback(tmp_path) -> None:
    result = manage(
        "verify_audit",
        "--traceback",
        DEBUG="True",
        VAR_DIR=str(tmp_path),
        DATABASE_URL=NO_DATABASE,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr


def test_an_invalid_listener_ae_title_setting_is_one_line(tmp_path) -> None:
    result = manage("check", DEBUG="True", VAR_DIR=str(tmp_path), DICOM_LISTENER_AE_TITLE="A\\B")
    assert result.returncode == 1
    assert result.stderr == (
        "Configuration error: DICOM_LISTENER_AE_TITLE is not a DICOM AE title (a backslash):"
        " 'A\\\\B'\n"
    )
