"""The production web server settings: gunicorn serves the gateway and keeps connections alive."""

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(sock: socket.socket, path: str) -> bytes:
    """One request on the open connection; its response's head (the body is read and
    dropped, so that the next response starts clean)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length.group(1)):
        body += sock.recv(65536)
    return head


@pytest.fixture
def gunicorn(process_env):
    """gunicorn on gunicorn.conf.py: its port and its process (its error log on stderr)."""
    port = _free_port()
    env = dict(process_env, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1")
    proc = subprocess.Popen(
        [str(GUNICORN), "-c", str(ROOT / "gunicorn.conf.py"), "anim_gateway.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
    yield port, proc
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def served(gunicorn):
    return gunicorn[0]


def test_gunicorn_serves_the_gateway_and_keeps_the_connection_alive(served):
    with socket.create_connection(("127.0.0.1", served), timeout=30) as sock:
        first = _get(sock, "/dicomweb/studies")
        second = _get(sock, "/dicomweb/studies")  # the same connection, not closed
    assert first.startswith(b"HTTP/1.1 401")
    assert second.startswith(b"HTTP/1.1 401")
    assert b"connection: close" not in first.lower()


def test_a_busy_worker_leaves_a_new_connection_a_moment_to_idle_workers(monkeypatch):
    from gunicorn.workers import gthread

    from anim_gateway import gunicorn_worker

    worker = object.__new__(gunicorn_worker.ThreadWorker)  # its policy only, no process
    accepted, slept = [], []
    monkeypatch.setattr(gthread.ThreadWorker, "accept", lambda self, sock: accepted.append(sock))
    monkeypatch.setattr(gthread.ThreadWorker, "enqueue_req", lambda self, conn: None)
    monkeypatch.setattr(gthread.ThreadWorker, "finish_request", lambda self, conn, fs: None)
    monkeypatch.setattr(gunicorn_worker.time, "sleep", slept.append)
    worker.accept("while idle")
    worker.enqueue_req("a")
    worker.enqueue_req("b")
    worker.accept("with two requests in progress")
    worker.finish_request("a", None)
    worker.accept("with one")
    worker.in_flight = 50
    worker.accept("swamped")
    assert accepted == ["while idle", "with two requests in progress", "with one", "swamped"]
    assert slept == [0.004, 0.002, 0.01]


def test_gunicorn_s_error_log_carries_no_national_id(gunicorn):
    port, proc = gunicorn
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /patients/1980051700166/\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    proc.terminate()
    _, log = proc.communicate(timeout=30)
    assert b"Invalid HTTP request line: 'GET /patients/<national-id>/" in log
    assert not re.search(rb"(?<!\d)\d{13}(?!\d)", log)
