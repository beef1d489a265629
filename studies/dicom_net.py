"""The DICOM listener: C-ECHO, and C-STORE from member institutions into ingest.

Associations are served by studies.dimse's blocking acceptor (pynetdicom's encodings, not
its polling threads); this module decides who may store, runs ingest, and supervises the
listener processes.
"""

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, connection

from consent.actors import Actor
from consent.models import Institution, InstitutionAETitle, Role
from studies import dimse
from studies.ingest import FailureReason, IngestResult, IngestSession, instance_ingest
from studies.spool import Spooled

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Status:
    """C-STORE statuses (PS3.4 Table B.2-1, PS3.7 C.4)."""

    SUCCESS = 0x0000
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_MISMATCH = 0xA900
    CANNOT_UNDERSTAND = 0xC000


_STATUS_OF_FAILURE = {
    FailureReason.DATA_SET_MISMATCH: Status.DATA_SET_MISMATCH,
    FailureReason.NOT_AUTHORIZED: Status.NOT_AUTHORIZED,
    FailureReason.DUPLICATE_CONFLICT: Status.CANNOT_UNDERSTAND,
    FailureReason.CANNOT_UNDERSTAND: Status.CANNOT_UNDERSTAND,
    FailureReason.PROCESSING_FAILURE: Status.OUT_OF_RESOURCES,  # transient: the SCU may retry
}


# The answer when storing failed for a reason of the gateway's own (its database or storage
# down): retryable, and saying so, as every failure's Error Comment says why (PS3.7 C.4).
UNAVAILABLE = dimse.Outcome(
    Status.OUT_OF_RESOURCES, "The gateway cannot store now; send it again later."
)


# Associations run on a few long-lived threads per process, so that their database
# connections stay open from one association to the next (a connection per association
# would cost a connect and an authentication each time); one more is rejected as busy.
MAX_ASSOCIATIONS = 10
_associations = ThreadPoolExecutor(
    max_workers=MAX_ASSOCIATIONS, thread_name_prefix="dicom-association"
)
# Calling AE titles (with their institutions and admitted networks) are re-read at most
# this often: an admin change holds within seconds, and an association costs no query.
TITLES_TTL = 5.0
_titles: tuple[float, dict[str, InstitutionAETitle]] = (0.0, {})
_titles_lock = threading.Lock()


# A connection idle longer than this is checked (a round trip) before it is used again;
# one that raised a database error is checked at once.
IDLE_CHECK = 10.0
_last_used = threading.local()


def _with_usable_connection(fn: Callable[..., T], *args: object) -> T:
    if connection.connection is not None and _suspect() and not connection.is_usable():
        connection.close()  # the server went away: reconnect on the next query
    connection.errors_occurred = False
    try:
        return fn(*args)
    finally:
        _last_used.at = time.monotonic()


def _suspect() -> bool:
    idle = time.monotonic() - getattr(_last_used, "at", 0.0)
    return connection.errors_occurred or idle > IDLE_CHECK or _told_goodbye()


def _told_goodbye() -> bool:
    """Whether the server wrote to an idle connection (a restart or a termination says so
    before it closes): the C-STORE after a restart is then stored, not refused."""
    quiet = getattr(connection, "quietly_idle", None)  # anim_gateway.postgresql's poll
    return quiet is not None and not quiet()


# How long close_db_connections waits for every association thread to take its job.
CLOSE_WAIT = 5.0
# Raised by each close_db_connections; a thread remembers the last one it closed for. One
# still busy with an association then (it missed its job) closes its connection once that
# association ends (Listener.ended); the others keep theirs.
_closes_asked = 0
_closed_for = threading.local()


def close_db_connections() -> None:
    """Close the database connection of every association thread (at shutdown, in tests)."""
    global _closes_asked
    _closes_asked += 1  # called from one thread at a time: at shutdown, or by a test
    barrier = threading.Barrier(MAX_ASSOCIATIONS)

    def close() -> None:
        # Each job holds its thread until all are running, so every idle thread gets one.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=CLOSE_WAIT)
        _close_connection()

    for future in [_associations.submit(close) for _ in range(MAX_ASSOCIATIONS)]:
        future.result()


def _member_titles() -> dict[str, InstitutionAETitle]:
    titles = InstitutionAETitle.objects.select_related("institution")
    return {title.ae_title: title for title in titles}


def member_titles() -> dict[str, InstitutionAETitle]:
    """The member AE titles, from a cache at most TITLES_TTL seconds old."""
    global _titles
    with _titles_lock:
        fetched_at, titles = _titles
        if time.monotonic() - fetched_at > TITLES_TTL:
            titles = _with_usable_connection(_member_titles)
            _titles = (time.monotonic(), titles)
    return titles


def forget_member_titles() -> None:
    """Drop the cache: the next association reads the titles afresh."""
    global _titles
    # Under the lock: a refresh in progress would otherwise store the titles it read before
    # the change after they were dropped.
    with _titles_lock:
        _titles = (0.0, {})


class Listener(dimse.Service):
    """Member AE titles may associate; what they send is ingested for their institution."""

    @property
    def max_data_set(self) -> int:  # type: ignore[override]
        """A C-STORE's data set, at most: the ceiling of a STOW-RS body (a larger one is
        aborted rather than spooled to the end)."""
        return settings.STOW_MAX_BYTES

    def admits(self, calling: str, address: str) -> bool:
        """A member's AE title, calling from a network it is admitted from."""
        try:
            return _institution_of(calling, address) is not None
        except DatabaseError as exc:
            raise dimse.Unavailable from exc

    def store(self, association: dimse.Association, spooled: Spooled) -> dimse.Outcome:
        """Store one instance; acknowledged only once it is stored and indexed."""
        try:
            session = _session(association)
            if session is None:
                spooled.discard()
                return dimse.Outcome(Status.NOT_AUTHORIZED, "Calling AE title not admitted")
            return _outcome(_with_usable_connection(_ingest, session, spooled))
        except Exception:
            logger.exception("C-STORE failed")
            spooled.discard()
            return UNAVAILABLE

    def ended(self, association: dimse.Association) -> None:
        with _sessions_lock:
            _sessions.pop(association, None)
        if getattr(_closed_for, "request", 0) < _closes_asked:
            _close_connection()  # this thread was busy when the listener closed the others


def _close_connection() -> None:
    connection.close()
    _closed_for.request = _closes_asked


def _ingest(session: IngestSession, spooled: Spooled) -> IngestResult:
    return instance_ingest(session=session, spooled=spooled)


# Keyed by the association itself (not its id(), which a later association may reuse):
# an entry can never be picked up by another association, and goes with its association.
_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def _session(association: dimse.Association) -> IngestSession | None:
    """One ingest session per association: the gate is asked once per study. The calling
    title is checked on every C-STORE (from the titles cached a few seconds), so that a
    title removed or narrowed in the admin stops an association already open."""
    calling = association.calling
    institution = _institution_of(calling, association.address)
    with _sessions_lock:
        session = _sessions.get(association)
        if institution is None or (session and session.institution.pk != institution.pk):
            _sessions.pop(association, None)
            logger.warning(
                "C-STORE refused: AE title %s is no longer admitted from %s",
                calling,
                association.address,
            )
            return None
        if session is not None:
            return session
    actor = Actor(
        role=Role.SYSTEM,
        institution=institution,
        username=f"ae:{calling}",
        display_name=f"DICOM AE {calling}",
        client_address=association.address,
        channel="dimse",
    )
    with _sessions_lock:
        return _sessions.setdefault(association, IngestSession(actor=actor))


def _institution_of(calling: str, address: str) -> Institution | None:
    """The member institution of a calling AE title, if it calls from an admitted address."""
    title = member_titles().get(calling)
    if title is None or not title.admits(address):
        return None
    return title.institution


def _outcome(result: IngestResult) -> dimse.Outcome:
    if result.ok:
        return dimse.Outcome(Status.SUCCESS)
    status = _STATUS_OF_FAILURE.get(result.failure_code, Status.CANNOT_UNDERSTAND)
    return dimse.Outcome(status, result.reason)


def make_server(listening: socket.socket, *, shared: bool = False) -> dimse.Server:
    """An acceptor of the listener's associations on a socket that listens already (and
    that other listener processes accept on too, when ``shared``)."""
    return dimse.Server(listening, Listener(), _associations, MAX_ASSOCIATIONS, shared=shared)


def start_listener(*, ae_title: str, host: str, port: int, block: bool):
    """Start the listener; blocking, or in a background thread (returns the server).

    Any called AE title is answered (``ae_title`` is the one the listener announces in its
    logs); the calling title decides who may store.
    """
    forget_member_titles()
    server = make_server(_listening_socket(host, port))
    logger.info("DICOM listener %s on %s:%d", ae_title, host, port)
    if not block:
        threading.Thread(target=_serve, args=(server,), daemon=True).start()
        return server
    try:
        _serve(server)
    finally:
        close_db_connections()
    return server


def _serve(server: dimse.Server) -> None:
    try:
        server.serve_forever()
    finally:
        server.listening.close()
        server.abort_all()


def stop_listener(server) -> None:
    """Stop a listener started with block=False, and close its database connections."""
    server.shutdown()
    server.abort_all()
    close_db_connections()


# Several listener processes (pre-fork, as gunicorn does): the parent binds the socket, then
# forks children that each accept on it with their own interpreter, so that ingest is not
# serialised behind one GIL. The parent only supervises: it starts no thread and opens no
# database connection, so that a fork copies nothing a child could share by mistake.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A child stopping finishes its associations for at most this long, then aborts them.
DRAIN_SECONDS = 30.0
# A child that dies sooner than this after its start is restarted only after this delay,
# so that a listener that cannot start does not fork in a tight loop.
RESTART_DELAY = 1.0


_supervisor_pid = 0


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port, IPv4 or IPv6 as the host is written ("::" also
    takes IPv4 where the system allows both on one socket)."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
    dualstack = family == socket.AF_INET6 and host in ("::", "") and socket.has_dualstack_ipv6()
    return socket.create_server((host, port), family=family, backlog=128, dualstack_ipv6=dualstack)


def serve_processes(*, ae_title: str, host: str, port: int, processes: int) -> None:
    """Listen with `processes` child processes sharing one socket, until SIGTERM or SIGINT."""
    from django.db import connections

    listening = _listening_socket(host, port)
    logger.info("DICOM listener %s on %s:%d, %d processes", ae_title, host, port, processes)
    # Every child wakes for a new connection; the ones that lose the race must not block.
    listening.setblocking(False)
    connections.close_all()
    try:
        _Supervisor(lambda: _child(listening), processes).run()
    finally:
        listening.close()


class _Supervisor:
    """Keeps `count` children running; stops them all when it is asked to stop."""

    def __init__(self, target: Callable[[], int], count: int) -> None:
        self.target = target
        self.count = count
        self.children: dict[int, float] = {}  # pid: when it started
        self.restart_at: list[float] = []

    def run(self) -> None:
        signals = {signal.SIGCHLD, *STOP_SIGNALS}
        # Blocked and waited for: no handler runs between a fork and its bookkeeping.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            self.restart_at = [0.0] * self.count
            while True:
                self._start_due()
                received = signal.sigtimedwait(signals, self._wait())
                self._reap()
                if received is not None and received.si_signo in STOP_SIGNALS:
                    break
            self._stop()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

    def _wait(self) -> float:
        if not self.restart_at:
            return 1.0
        return max(0.01, min(self.restart_at) - time.monotonic())

    def _start_due(self) -> None:
        now = time.monotonic()
        for when in [t for t in self.restart_at if t <= now]:
            self.restart_at.remove(when)
            self.children[self._fork()] = time.monotonic()

    def _fork(self) -> int:
        global _supervisor_pid
        _supervisor_pid = os.getpid()  # inherited by the child
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            code = 1
            try:
                code = self.target()
            except BaseException:
                logger.exception("DICOM listener process failed")
            finally:
                os._exit(code)
        logger.info("DICOM listener process %d started", pid)
        return pid

    def _reap(self) -> None:
        """Collect children that ended; schedule their replacements."""
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            started = self.children.pop(pid, None)
            if started is None:
                continue
            logger.warning("DICOM listener process %d ended (status %d)", pid, status)
            early = time.monotonic() - started < RESTART_DELAY
            self.restart_at.append(time.monotonic() + (RESTART_DELAY if early else 0.0))

    def _stop(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_SECONDS + 5
        while self.children and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, 0.2)
            self._reap()
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.children.clear()


def _child(listening: socket.socket) -> int:
    """A listener process: accept on the inherited socket until SIGTERM or SIGINT, or until
    the supervisor is gone (a child never serves unsupervised)."""
    server = make_server(listening, shared=True)
    parent = _supervisor_pid or os.getppid()

    def stop(signum: int, frame: object) -> None:
        server.shutdown()

    def check() -> None:
        if os.getppid() != parent:
            server.shutdown()

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # What Django and the apps loaded is kept for good: the collector need not walk it.
    gc.freeze()
    try:
        server.serve_forever(poll_interval=0.2, check=check)
        server.drain(DRAIN_SECONDS)
    finally:
        listening.close()  # only this process's descriptor: the others still accept on it
        server.abort_all()
        close_db_connections()
    return 0
