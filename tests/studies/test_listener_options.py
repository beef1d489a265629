"""The listener's port and AE title as an operator types them: a bad one is one line, exit 1."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studies import dicom_net
from tests.processes import manage

BAD_PORTS = [
    ("70000", "'70000'"),
    ("0", "'0'"),
    ("-5", "'-5'"),
    ("eleven", "'eleven'"),
    ("", "''"),
]
BAD_TITLES = [
    ("ANIM\\GW", "a backslash"),
    ("ANIM_GATEWAY_LUXEMBOURG", "23 characters, 16 at most"),
    ("   ", "only spaces"),
    ("", "only spaces"),
    ("ANIM\x07GW", "a control or non-ASCII character"),
    ("ANIMÉ", "a control or non-ASCII character"),
]


@pytest.fixture
def started(monkeypatch) -> list[dict]:
    """The listener's starts, recorded instead of made: a check that lets a bad value through
    fails the test instead of listening for ever."""
    calls: list[dict] = []
    monkeypatch.setattr(dicom_net, "start_listener", lambda **kw: calls.append(kw))
    monkeypatch.setattr(dicom_net, "serve_processes", lambda **kw: calls.append(kw))
    return calls


@pytest.mark.parametrize(("port", "shown"), BAD_PORTS)
def test_dicom_listener_refuses_a_port_out_of_range_naming_it(started, port, shown) -> None:
    expected = f"--port must be a port number from 1 to 65535, not {shown}"
    with pytest.raises(CommandError, match=expected):
        call_command("dicom_listener", "--processes=1", f"--port={port}")
    assert started == []


@pytest.mark.parametrize(("port", "shown"), BAD_PORTS)
def test_serve_refuses_a_dicom_port_out_of_range_naming_it(started, port, shown) -> None:
    expected = f"--dicom-port must be a port number from 1 to 65535, not {shown}"
    with pytest.raises(CommandError, match=expected):
        call_command("serve", "127.0.0.1:0", "--noreload", f"--dicom-port={port}")
    assert started == []


@pytest.mark.parametrize(("title", "why"), BAD_TITLES)
def test_dicom_listener_refuses_an_invalid_ae_title_saying_why(started, title, why) -> None:
    with pytest.raises(CommandError, match=f"--ae-title is not a DICOM AE title \\({why}\\)"):
        call_command("dicom_listener", "--processes=1", "--port=11112", f"--ae-title={title}")
    assert started == []


@pytest.mark.parametrize("processes", [1, 3])
def test_a_valid_port_and_ae_title_reach_the_listener(started, processes) -> None:
    call_command("dicom_listener", f"--processes={processes}", "--port=104", "--ae-title=Anim gw 2")
    assert started == [
        {"ae_title": "Anim gw 2", "host": "0.0.0.0", "port": 104}
        | ({"processes": 3} if processes == 3 else {"block": True})
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["dicom_listener", "--port", "70000"],
            "--port must be a port number from 1 to 65535, not '70000'.",
        ),
        (
            ["dicom_listener", "--port", "eleven"],
            "--port must be a port number from 1 to 65535, not 'eleven'.",
        ),
        (
            ["serve", "--noreload", "--dicom-port", "70000"],
            "--dicom-port must be a port number from 1 to 65535, not '70000'.",
        ),
        (
            ["dicom_listener", "--ae-title", "ANIM\\GW"],
            "--ae-title is not a DICOM AE title (a backslash): 'ANIM\\\\GW'.",
        ),
    ],
)
def test_manage_py_says_it_in_one_line_and_exits_1(tmp_path, args, message) -> None:
    result = manage(*args, DEBUG="True", VAR_DIR=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == f"CommandError: {message}\n"
