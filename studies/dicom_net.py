"""The DICOM listener (pynetdicom): C-ECHO, and C-STORE from member institutions into ingest."""

import logging
import socket
import threading

from django.db import close_old_connections, connection
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification

from consent.actors import Actor
from consent.models import Institution, InstitutionAETitle, Role
from studies.ingest import FailureReason, IngestResult, IngestSession, instance_ingest
from studies.spool import spool_adopt

logger = logging.getLogger(__name__)

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
}


class GatewayAE(AE):
    """An AE whose accepted calling AE titles are read from the database at each association,
    so that titles added in the admin take effect without a restart."""

    @property
    def require_calling_aet(self) -> list[str]:
        try:
            titles = list(InstitutionAETitle.objects.values_list("ae_title", flat=True))
        finally:
            connection.close()  # association threads are short-lived: no leaked connections
        # An empty list would mean "anyone"; with no member titles, nobody is accepted.
        return titles or ["NO-MEMBER-AE"]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        pass  # the database is the only source


def make_ae(*, ae_title: str) -> GatewayAE:
    ae = GatewayAE(ae_title=ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
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
    close_old_connections()
    try:
        session = _session(event)
        if session is None:
            return Status.NOT_AUTHORIZED
        result = instance_ingest(session=session, spooled=spool_adopt(event.dataset_path))
        return _status(result)
    except Exception:
        logger.exception("C-STORE failed")
        return Status.OUT_OF_RESOURCES


def handle_close(event: evt.Event) -> None:
    connection.close()


_sessions: dict[int, IngestSession] = {}
_sessions_lock = threading.Lock()


def _session(event: evt.Event) -> IngestSession | None:
    """One ingest session per association: the gate is asked once per study."""
    key = id(event.assoc)
    with _sessions_lock:
        if key in _sessions:
            return _sessions[key]
    calling = event.assoc.requestor.ae_title.strip()
    institution = Institution.objects.filter(ae_titles__ae_title=calling).first()
    if institution is None:
        return None
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


def handle_released(event: evt.Event) -> None:
    with _sessions_lock:
        _sessions.pop(id(event.assoc), None)
    connection.close()


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
    (evt.EVT_CONN_CLOSE, handle_close),
]


def start_listener(*, ae_title: str, host: str, port: int, block: bool):
    """Start the listener; blocking, or in background threads (returns the server)."""
    ae = make_ae(ae_title=ae_title)
    return ae.start_server((host, port), block=block, evt_handlers=HANDLERS)
