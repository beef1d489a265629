"""manage.py dicom_listener --processes N: children sharing one port, supervised by the parent."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from studies.models import Instance

from .conftest import dicom_copy

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url(tmp_path: Path) -> str:
    """A URL of the test database that another process can open."""
    if connection.vendor == "sqlite":
        # The test database lives in this process's memory: hand the listener a copy.
        path = tmp_path / "listener.sqlite3"
        with closing(sqlite3.connect(path)) as copy:
            connection.ensure_connection()
            connection.connection.backup(copy)
            # As a migrated file database is. Otherwise the listener's connections would each
            # switch the copy to WAL, which waits for every other connection to let go.
            copy.execute("PRAGMA journal_mode=WAL")
        return f"sqlite:///{path}"
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _instance_count(url: str) -> int:
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            table = Instance._meta.db_table
            return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    return Instance.objects.count()


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def _wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def listener(cast, tmp_path, request):
    """The listener command in its own process, with 2 children; yields (pid, port, db url).
    Listens on 127.0.0.1, or on the host given as the fixture's parameter."""
    host = getattr(request, "param", "127.0.0.1")
    port = _free_port()
    url = _database_url(tmp_path)
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="anim_gateway.settings_test",
        DATABASE_URL=url,
        VAR_DIR=str(tmp_path / "var"),
        STORAGE_ROOT=str(tmp_path / "listener-storage"),
        SPOOL_DIR=str(tmp_path / "listener-spool"),
    )
    args = ["dicom_listener", "--processes=2", f"--host={host}", f"--port={port}"]
    proc = subprocess.Popen(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: len(_children(proc.pid)) == 2 or proc.poll() is not None)
        assert proc.poll() is None, proc.stdout.read().decode()
        yield proc, port, url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        proc.stdout.close()


def _send(
    port: int, paths: list[Path], calling: str = "CHEM_PACS", host: str = "127.0.0.1"
) -> list[int]:
    """C-STORE the files over one association; their statuses."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(host, port, ae_title="ANIM_GATEWAY")
    if not assoc.is_established:
        return []
    try:
        return [assoc.send_c_store(dcmread(path)).Status for path in paths]
    finally:
        assoc.release()


def test_every_instance_of_concurrent_associations_is_stored(listener, tmp_path):
    _, port, url = listener
    studies = [[dicom_copy(tmp_path, patient_id="CHEM-X1") for _ in range(2)] for _ in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda paths: _send(port, paths), studies))
    assert statuses == [[0x0000, 0x0000]] * 8
    assert _instance_count(url) == 16
    assert _send(port, [dicom_copy(tmp_path)], calling="STRANGER") == []


@pytest.mark.parametrize("listener", ["::1"], indirect=True)
def test_the_processes_listen_on_an_ipv6_address(listener, tmp_path):
    _, port, url = listener
    assert _send(port, [dicom_copy(tmp_path, patient_id="CHEM-X1")], host="::1") == [0x0000]
    assert _instance_count(url) == 1


def test_each_child_serves_on_the_shared_port(listener, tmp_path):
    proc, port, url = listener
    first, second = sorted(_children(proc.pid))
    for frozen in (first, second):
        # A stopped child cannot accept: the association can only be the other child's.
        os.kill(frozen, signal.SIGSTOP)
        try:
            assert _send(port, [dicom_copy(tmp_path, patient_id="CHEM-X1")]) == [0x0000]
        finally:
            os.kill(frozen, signal.SIGCONT)
    assert _instance_count(url) == 2


def _replace(proc: subprocess.Popen, victim: int, signum: int) -> set[int]:
    """Signal a child; the parent's children once it has replaced it."""
    os.kill(victim, signum)
    return _wait_for(lambda: (c := _children(proc.pid)) and len(c) == 2 and victim not in c and c)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_an_ended_child_is_replaced_and_the_others_keep_serving(listener, tmp_path, signum):
    proc, port, url = listener
    before = _children(proc.pid)
    stayed = max(before)
    after = _replace(proc, min(before), signum)
    assert stayed in after
    # The child that stopped closed only its own copy of the socket: the others still accept.
    os.kill(min(after - {stayed}), signal.SIGSTOP)
    try:
        assert _send(port, [dicom_copy(tmp_path, patient_id="CHEM-X1")]) == [0x0000]
    finally:
        os.kill(min(after - {stayed}), signal.SIGCONT)
    assert _instance_count(url) == 1


def test_children_stop_when_their_parent_is_killed(listener):
    proc, _, _ = listener
    children = _children(proc.pid)
    proc.kill()
    proc.wait(timeout=10)
    for child in children:
        _wait_for(lambda child=child: not _alive(child), timeout=10)


def _alive(pid: int) -> bool:
    """Whether a process runs (an orphan's zombie is reaped by init at once)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_stops_the_parent_and_all_its_children(listener, tmp_path):
    proc, port, _ = listener
    after = _children(proc.pid)
    assert _send(port, [dicom_copy(tmp_path, patient_id="CHEM-X1")]) == [0x0000]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for child in after:
        assert not _alive(child)
    # Nothing listens any more.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


@pytest.mark.parametrize("processes", [1, 2])
def test_a_port_in_use_is_a_clear_command_error(cast, processes):
    from django.core.management import CommandError, call_command

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"127.0.0.1:{port} cannot run"):
            call_command(
                "dicom_listener", f"--processes={processes}", "--host=127.0.0.1", f"--port={port}"
            )
