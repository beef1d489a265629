"""A web request reuses its thread's database connection only after the health check."""

import select

import pytest
from django.db import close_old_connections, connection, connections

from tests.conftest import client_for, require_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def _terminated_by_the_server() -> None:
    """End this thread's connection from another session, as a restart or an administrator
    would, and wait until the server's goodbye has reached the socket."""
    raw = connection.connection
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.autocommit = True
        other.execute("SELECT pg_terminate_backend(%s)", [raw.info.backend_pid])
    finally:
        other.close()
    poller = select.poll()
    poller.register(raw.pgconn.socket, select.POLLIN)
    assert poller.poll(5000), "the server never told the connection it was ended"


def _djangos_checks_counted(monkeypatch) -> list[int]:
    """Django's health check (a SELECT 1 round trip), made to note each call and pass."""
    asked: list[int] = []
    monkeypatch.setattr(type(connections["default"]), "is_usable", lambda _: asked.append(1) or 1)
    return asked


def _next_request() -> None:
    # What Django's request_started signal runs in a server (its test client does not).
    close_old_connections()


def test_a_request_after_the_server_ended_the_connection_is_served(cast):
    require_postgres()
    alice = client_for("alice", "CHL")
    assert alice.get("/dicomweb/studies").status_code == 200
    _terminated_by_the_server()
    _next_request()
    assert alice.get("/dicomweb/studies").status_code == 200


def test_a_quiet_idle_connection_is_reused_without_a_round_trip(cast, monkeypatch):
    require_postgres()
    alice = client_for("alice", "CHL")
    assert alice.get("/dicomweb/studies").status_code == 200
    reused = connection.connection
    asked = _djangos_checks_counted(monkeypatch)
    _next_request()
    assert alice.get("/dicomweb/studies").status_code == 200
    assert connection.connection is reused
    assert asked == []


def test_a_connection_in_a_transaction_gets_djangos_own_check(cast, monkeypatch):
    require_postgres()
    connection.ensure_connection()
    asked = _djangos_checks_counted(monkeypatch)
    connection.health_check_done = False
    connection.connection.execute("BEGIN")
    try:
        connection.close_if_health_check_failed()
    finally:
        connection.connection.execute("ROLLBACK")
    assert asked == [1]
