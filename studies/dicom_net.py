"""The DICOM listener (pynetdicom): C-ECHO, and C-STORE from member institutions into ingest."""

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

from django.db import connection
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import AssociationServer

from consent.actors import Actor
from consent.models import Institution, InstitutionAETitle, Role
from studies.ingest import FailureReason, IngestResult, IngestSession, instance_ingest
from studies.spool import Spooled, spool_adopt

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Received datasets go to a temporary file, never whole in memory (pynetdicom >= 2.0).
_config.STORE_RECV_CHUNKED_DATASET = True
# Every storage SOP class, including ones newer than this pynetdicom release.
_config.UNRESTRICTED_STORAGE_SERVICE = True


class Status:
    """C-STORE statuses (PS3.4 Table B.2-1, PS3.7 C.4)."""

    SUCCESS = 0x0000
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    CANNOT_UNDERSTAND = 0xC000


_STATUS_OF_FAILURE = {
    FailureReason.NOT_AUTHORIZED: Status.NOT_AUTHORIZED,
    FailureReason.DUPLICATE_CONFLICT: Status.CANNOT_UNDERSTAND,
    FailureReason.CANNOT_UNDERSTAND: Status.CANNOT_UNDERSTAND,
    FailureReason.PROCESSING_FAILURE: Status.OUT_OF_RESOURCES,  # transient: the SCU may retry
}


# Database work runs on a few long-lived threads, so their connections stay open across
# associations (pynetdicom starts a thread per association; a connection per association
# would cost a connect and an authentication each time).
DB_THREADS = 4
_db = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="dicom-db")
# Calling AE titles (with their institutions and admitted networks) are re-read at most
# this often: an admin change holds within seconds, and an association costs no query.
TITLES_TTL = 5.0
_titles: tuple[float, dict[str, InstitutionAETitle]] = (0.0, {})


def on_db_thread(fn: Callable[..., T], /, *args: object) -> T:
    """Run fn on a database thread and wait for its result."""
    return _db.submit(_with_usable_connection, fn, *args).result()


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
    return connection.errors_occurred or idle > IDLE_CHECK


def close_db_connections() -> None:
    """Close the connection of every database thread (at shutdown, between tests)."""
    barrier = threading.Barrier(DB_THREADS)

    def close() -> None:
        # Each job holds its thread until all are running, so every thread gets one.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connection.close()

    for future in [_db.submit(close) for _ in range(DB_THREADS)]:
        future.result()


def _member_titles() -> dict[str, InstitutionAETitle]:
    titles = InstitutionAETitle.objects.select_related("institution")
    return {title.ae_title: title for title in titles}


def member_titles() -> dict[str, InstitutionAETitle]:
    """The member AE titles, from a cache at most TITLES_TTL seconds old."""
    global _titles
    fetched_at, titles = _titles
    if time.monotonic() - fetched_at > TITLES_TTL:
        titles = on_db_thread(_member_titles)
        _titles = (time.monotonic(), titles)
    return titles


def forget_member_titles() -> None:
    """Drop the cache: the next association reads the titles afresh."""
    global _titles
    _titles = (0.0, {})


class GatewayAE(AE):
    """An AE whose accepted calling AE titles come from the database (cached a few seconds),
    so that titles added in the admin take effect without a restart."""

    @property
    def require_calling_aet(self) -> list[str]:
        # An empty list would mean "anyone"; with no member titles, nobody is accepted.
        return list(member_titles()) or ["NO-MEMBER-AE"]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        pass  # the database is the only source


def make_ae(*, ae_title: str) -> GatewayAE:
    """The listener's AE: C-ECHO, and storage of any SOP class in the proposed syntax.

    With UNRESTRICTED_STORAGE_SERVICE pynetdicom accepts every storage context itself, so
    no storage context is listed: a list of 170 classes x 45 syntaxes would be deep-copied
    for every association (about 100 ms). What cannot be parsed is refused at ingest.
    """
    # pynetdicom's standard handlers format every PDU and DIMSE message for its debug log,
    # even when that log is off: bind them only when it is on.
    debug = logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)
    _config.LOG_HANDLER_LEVEL = "standard" if debug else "none"
    ae = GatewayAE(ae_title=ae_title)
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs for big instances
    return ae


def handle_open(event: evt.Event) -> None:
    """Send small PDUs (C-STORE responses) at once rather than after Nagle's delay."""
    raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def handle_echo(event: evt.Event) -> int:
    return Status.SUCCESS


def handle_store(event: evt.Event) -> Dataset | int:
    """Store one instance; acknowledged only once it is stored and indexed."""
    try:
        session = _session(event)
        if session is None:
            return Status.NOT_AUTHORIZED
        spooled = spool_adopt(event.dataset_path)
        return _status(on_db_thread(_ingest, session, spooled))
    except Exception:
        logger.exception("C-STORE failed")
        return Status.OUT_OF_RESOURCES


def _ingest(session: IngestSession, spooled: Spooled) -> IngestResult:
    return instance_ingest(session=session, spooled=spooled)


# Keyed by the association itself (not its id(), which a later association may reuse):
# an entry can never be picked up by another association, and goes with its association.
_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def _session(event: evt.Event) -> IngestSession | None:
    """One ingest session per association: the gate is asked once per study. The calling
    title is checked on every C-STORE (from the titles cached a few seconds), so that a
    title removed or narrowed in the admin stops an association already open."""
    key = event.assoc
    calling = event.assoc.requestor.ae_title.strip()
    institution = _institution_of(calling, event.assoc.requestor.address)
    with _sessions_lock:
        session = _sessions.get(key)
        if institution is None or (session and session.institution.pk != institution.pk):
            _sessions.pop(key, None)
            return None
        if session is not None:
            return session
    actor = Actor(
        role=Role.SYSTEM,
        institution=institution,
        username=f"ae:{calling}",
        display_name=f"DICOM AE {calling}",
        client_address=event.assoc.requestor.address,
        channel="dimse",
    )
    with _sessions_lock:
        return _sessions.setdefault(key, IngestSession(actor=actor))


def _institution_of(calling: str, address: str) -> Institution | None:
    """The member institution of a calling AE title, if it calls from an admitted address."""
    title = member_titles().get(calling)
    if title is None or not title.admits(address):
        logger.warning(
            "C-STORE refused: AE title %s from an address it is not admitted from", calling
        )
        return None
    return title.institution


def handle_released(event: evt.Event) -> None:
    with _sessions_lock:
        _sessions.pop(event.assoc, None)


def _status(result: IngestResult) -> Dataset | int:
    if result.ok:
        return Status.SUCCESS
    status = Dataset()
    status.Status = _STATUS_OF_FAILURE.get(result.failure_code, Status.CANNOT_UNDERSTAND)
    status.ErrorComment = result.reason[:64]
    return status


HANDLERS = [
    (evt.EVT_CONN_OPEN, handle_open),
    (evt.EVT_C_ECHO, handle_echo),
    (evt.EVT_C_STORE, handle_store),
    (evt.EVT_RELEASED, handle_released),
    (evt.EVT_ABORTED, handle_released),
]


def start_listener(*, ae_title: str, host: str, port: int, block: bool):
    """Start the listener; blocking, or in background threads (returns the server)."""
    ae = make_ae(ae_title=ae_title)
    forget_member_titles()
    try:
        return ae.start_server((host, port), block=block, evt_handlers=HANDLERS)
    finally:
        if block:
            close_db_connections()


def stop_listener(server) -> None:
    """Stop a listener started with block=False, and close its database connections."""
    server.shutdown()
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


class _Stop(Exception):
    """Raised in a child's accept loop once it is asked to stop."""


_supervisor_pid = 0


class InheritedSocketServer(AssociationServer):
    """An association server that accepts on a listening socket it was given (by its parent)
    instead of binding its own; it leaves its accept loop, between requests, once asked to."""

    def __init__(self, *args: object, listening: socket.socket, **kwargs: object) -> None:
        self.listening = listening
        self.stopping = False
        # The supervisor's pid, taken before the fork: had it died since, getppid() here
        # would name init, and the child would never notice it is unsupervised.
        self.parent = _supervisor_pid or os.getppid()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        self.socket.close()
        self.socket = self.listening
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        pass  # the parent listens already

    def server_close(self) -> None:
        # Only this process's descriptor: shutdown() would stop the socket for every child.
        self.socket.close()

    def service_actions(self) -> None:
        # A child whose parent died (SIGKILL, a crash) stops too, rather than serve unsupervised.
        if self.stopping or os.getppid() != self.parent:
            raise _Stop
        super().service_actions()


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
    # Every child wakes for a new connection; the ones that lose the race must not block.
    listening.setblocking(False)
    connections.close_all()
    try:
        _Supervisor(lambda: _child(listening, ae_title), processes).run()
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


def _child(listening: socket.socket, ae_title: str) -> int:
    """A listener process: accept on the inherited socket until SIGTERM or SIGINT."""
    server = make_ae(ae_title=ae_title).make_server(
        listening.getsockname(),
        evt_handlers=HANDLERS,
        server_class=InheritedSocketServer,
        listening=listening,
    )

    def stop(signum: int, frame: object) -> None:
        server.stopping = True

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # What Django and the apps loaded is kept for good: the collector need not walk it.
    gc.freeze()
    try:
        server.serve_forever(poll_interval=0.2)
    except _Stop:
        _drain(server)
    finally:
        server.server_close()
        for assoc in server.active_associations:
            assoc.abort()
        close_db_connections()
    return 0


def _drain(server: AssociationServer) -> None:
    """Let the associations in progress finish (for at most DRAIN_SECONDS)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.1)
