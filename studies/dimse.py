"""A DICOM acceptor for C-ECHO and C-STORE that blocks on its sockets, one thread per association.

pynetdicom's acceptor runs two threads per association that poll every millisecond: on its
own, answering at once, it reached 0.78-0.88x Orthanc's C-STORE rate, and the listener on it
half (bench/README.md). This one reads each PDU as it arrives and streams a C-STORE data
set straight into a spool file.
The PDU and DIMSE encodings and the negotiation of presentation contexts are pynetdicom's;
what is here is the reading loop, the order of an association's PDUs (PS3.8 9.2), and the
route of a data set to the spool.
"""

import contextlib
import io
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
)
from pynetdicom.dsutils import decode
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
)
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context, negotiate_unrestricted
from pynetdicom.sop_class import Verification

from studies.dicom import is_valid_uid
from studies.spool import Spooled, SpoolWriter
from studies.storage_errors import StorageError

logger = logging.getLogger(__name__)

# The largest PDU a peer may send us, said in the A-ASSOCIATE-AC: a P-DATA-TF is read whole.
MAX_PDU = 4 * 1024 * 1024
# How long a peer has to send its whole A-ASSOCIATE-RQ (PS3.8's ARTIM timer), and each later
# PDU whole, before the association is aborted.
ARTIM_SECONDS = 30.0
IDLE_SECONDS = 60.0
# How long the acceptor waits, in all, for the peer to close the connection after a
# release, a rejection or an abort.
CLOSE_SECONDS = 1.0
# Before an association is accepted, a peer may send at most this much: an A-ASSOCIATE-RQ
# of a hundred presentation contexts is a few kB. A command set is a few hundred bytes.
MAX_ASSOCIATE_RQ = 64 * 1024
MAX_COMMAND = 64 * 1024
# A C-STORE's data set, at most (Service.max_data_set): one whose last fragment never comes
# would otherwise fill the spool's disk, and every other sender's stores with it.
MAX_DATA_SET = 2 * 1024**3
# Associations beyond the limit are answered "busy" by at most this many threads at once,
# each for at most REJECT_SECONDS; any more are closed without an answer.
REJECT_THREADS = 4
REJECT_SECONDS = 5.0
# A process whose associations fill its pool leaves a new connection to its siblings; it
# rejects one only after it has waited this long (every process is full).
BUSY_GRACE = 0.2

# A process serving associations leaves a new one this long per association (at most
# MAX_ACCEPT_DELAY) to its idle siblings before it accepts it itself.
BUSY_ACCEPT_DELAY = 0.002
MAX_ACCEPT_DELAY = 0.01

APPLICATION_CONTEXT = UID("1.2.840.10008.3.1.1.1")
_HEADER = 6

# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, P_DATA, RELEASE_RQ, ABORT = 0x01, 0x04, 0x05, 0x07
# DIMSE command fields (PS3.7 E.1)
C_STORE_RQ, C_ECHO_RQ = 0x0001, 0x0030
C_STORE_RSP, C_ECHO_RSP = 0x8001, 0x8030
NO_DATA_SET = 0x0101

# A-ASSOCIATE-RJ (result, source, reason) and A-ABORT reasons (PS3.8 9.3.4, 9.3.8)
CALLING_AE_NOT_RECOGNIZED = (0x01, 0x01, 0x03)
LOCAL_LIMIT_EXCEEDED = (0x02, 0x03, 0x02)
TEMPORARY_CONGESTION = (0x02, 0x03, 0x01)
UNRECOGNIZED_PDU, UNEXPECTED_PDU, INVALID_PARAMETER = 0x01, 0x02, 0x06
KNOWN_PDU_TYPES = range(0x01, 0x08)


class Abort(Exception):
    """The association ends with an A-ABORT: the peer broke the protocol or went silent."""

    def __init__(self, message: str, reason: int = UNEXPECTED_PDU) -> None:
        super().__init__(message)
        self.reason = reason


class Closed(Exception):
    """The peer closed the connection."""


@dataclass(frozen=True)
class Outcome:
    """A C-STORE's answer: its status, and a comment when it failed."""

    status: int
    comment: str = ""


class Service:
    """What the acceptor asks its owner; dicom_net's listener is the one in use."""

    max_data_set = MAX_DATA_SET

    def admits(self, calling: str, address: str) -> bool:
        raise NotImplementedError

    def store(self, association: "Association", spooled: Spooled) -> Outcome:
        raise NotImplementedError

    def ended(self, association: "Association") -> None:
        pass


class Unavailable(Exception):
    """Raised by a service that cannot decide now (its database is down): the peer is told
    to try again later."""


@dataclass(eq=False)
class Association:
    """One peer's association, from its A-ASSOCIATE-RQ to its release or abort."""

    sock: socket.socket
    address: str
    service: Service
    calling: str = ""
    contexts: dict[int, UID] = field(default_factory=dict)  # accepted: id -> transfer syntax
    abstract_syntaxes: dict[int, str] = field(default_factory=dict)  # accepted: id -> SOP Class
    peer_max_pdu: int = 0
    # The message being received: its presentation context, command fragments, C-STORE
    # request, and the spool file of its data set (None once spooling failed).
    _context: int | None = None
    _command: bytearray = field(default_factory=bytearray)
    _request: Dataset | None = None
    _writer: SpoolWriter | None = None
    _refusal: Outcome | None = None  # the answer to a C-STORE refused before its data set
    _room = 0  # how many more bytes the data set may have
    # Answered its last PDU; only waits for the peer to close (it holds its thread, but
    # keeps no one waiting: Server._still_pending does not count it).
    closing: bool = False

    def run(self) -> None:
        """Serve the association until it ends; never raises."""
        try:
            try:
                if self._associate():
                    self._serve()
            except Abort as exc:
                logger.warning("DICOM association from %s aborted: %s", self.address, exc)
                self._send_quietly(_abort_pdu(exc.reason))
                self._await_close()
            except (Closed, OSError):
                pass  # the connection failed; what the peer had not finished is discarded
            except Exception:
                logger.exception("DICOM association from %s failed", self.address)
                self._send_quietly(_abort_pdu(0x00))
            finally:
                self._discard_partial()
                self.service.ended(self)
        except Exception:
            logger.exception("DICOM association from %s: clean-up failed", self.address)
        finally:
            _close(self.sock)

    def _associate(self) -> bool:
        request = _association_request(self._read_pdu(ARTIM_SECONDS, MAX_ASSOCIATE_RQ))
        self.calling = request.calling_ae_title.strip()
        try:
            admitted = self.service.admits(self.calling, self.address)
        except Unavailable:
            # The titles could not be read (the database is down): a transient rejection,
            # which the peer may retry, rather than an abort it cannot tell from a fault.
            # Any other error stays a fault (aborted): a peer must not retry a bug for ever.
            logger.exception("DICOM association from %s: its title cannot be checked", self.calling)
            self._send(_reject_pdu(request, TEMPORARY_CONGESTION))
            self._await_close()
            return False
        if not admitted:
            logger.warning(
                "DICOM association refused: AE title %s is no member's, or not from %s",
                self.calling,
                self.address,
            )
            self._send(_reject_pdu(request, CALLING_AE_NOT_RECOGNIZED))
            self._await_close()
            return False
        self.peer_max_pdu = request.maximum_length_received or 0
        if 0 < self.peer_max_pdu <= _HEADER:
            raise Abort(f"a maximum PDU length of {self.peer_max_pdu} bytes", INVALID_PARAMETER)
        try:
            accept = self._accept_pdu(request)
        except Exception as exc:  # pynetdicom refuses what it cannot negotiate
            raise Abort(f"presentation contexts that cannot be negotiated ({exc})") from exc
        self._send(accept)
        return True

    def _accept_pdu(self, request: A_ASSOCIATE) -> bytes:
        roles = {
            item.sop_class_uid: (item.scu_role, item.scp_role)
            for item in request.user_information
            if type(item).__name__ == "SCP_SCU_RoleSelectionNegotiation"
        }
        results, role_replies = negotiate_unrestricted(
            request.presentation_context_definition_list, SUPPORTED, roles
        )
        for cx in results:
            if cx.result == 0x00 and not _is_uid(cx.transfer_syntax[0]):
                cx.result = 0x04  # transfer syntaxes not supported: that one is no UID
        accepted = [cx for cx in results if cx.result == 0x00]
        self.contexts = {cx.context_id: UID(cx.transfer_syntax[0]) for cx in accepted}
        self.abstract_syntaxes = {cx.context_id: cx.abstract_syntax for cx in accepted}
        accept = A_ASSOCIATE()
        accept.application_context_name = APPLICATION_CONTEXT
        accept.calling_ae_title = request.calling_ae_title
        accept.called_ae_title = request.called_ae_title
        accept.result = 0x00
        accept.result_source = 0x01
        accept.presentation_context_definition_results_list = results
        accept.user_information = [*_user_information(), *role_replies]
        pdu = A_ASSOCIATE_AC()
        pdu.from_primitive(accept)
        return pdu.encode()

    def _serve(self) -> None:
        while True:
            kind, whole = self._read_pdu(IDLE_SECONDS)
            if kind == P_DATA:
                for context_id, control, data in _values(whole):
                    self._receive(context_id, control, data)
            elif kind == RELEASE_RQ:
                if self._context is not None:
                    raise Abort("A-RELEASE-RQ in the middle of a message")
                self._send(A_RELEASE_RP().encode())
                self._await_close()
                return
            elif kind == ABORT:
                return
            elif kind in KNOWN_PDU_TYPES:
                raise Abort(f"unexpected PDU type 0x{kind:02x}")
            else:
                raise Abort(f"unrecognized PDU type 0x{kind:02x}", UNRECOGNIZED_PDU)

    # --- DIMSE messages ---------------------------------------------------------------

    def _receive(self, context_id: int, control: int, data: memoryview) -> None:
        if context_id not in self.contexts:
            raise Abort(f"presentation context {context_id} was not accepted", INVALID_PARAMETER)
        if self._context is None:
            self._context = context_id
        elif context_id != self._context:
            raise Abort("one message's fragments on two presentation contexts", INVALID_PARAMETER)
        last = bool(control & 0x02)
        if control & 0x01:
            if self._request is not None:
                raise Abort("a command fragment inside a data set")
            if len(self._command) + len(data) > MAX_COMMAND:
                raise Abort(f"a command set over {MAX_COMMAND} bytes", INVALID_PARAMETER)
            self._command += data
            if last:
                self._command_complete()
            return
        if self._request is None:
            raise Abort("a data set fragment without a C-STORE-RQ")
        self._spool(data)
        if last:
            self._store_complete()

    def _command_complete(self) -> None:
        try:
            command = decode(io.BytesIO(bytes(self._command)), True, True)
            kind = _number(command, "CommandField")
            _number(command, "MessageID")
            has_data = _number(command, "CommandDataSetType") != NO_DATA_SET
        except Exception as exc:
            raise Abort(f"a command set that cannot be read ({exc})", INVALID_PARAMETER) from exc
        self._command.clear()
        if kind == C_ECHO_RQ and not has_data:
            self._send_echo_response(command)
        elif kind == C_STORE_RQ and has_data:
            self._start_store(command)
        else:
            raise Abort(f"unsupported DIMSE command 0x{kind:04x}")

    def _start_store(self, command: Dataset) -> None:
        sop_class = command.get("AffectedSOPClassUID")
        sop_instance = command.get("AffectedSOPInstanceUID")
        if not (_is_uid(sop_class) and _is_uid(sop_instance)):
            raise Abort("a C-STORE-RQ without a valid SOP Class or SOP Instance UID")
        self._request = command
        self._room = self.service.max_data_set
        if sop_class != self.abstract_syntaxes.get(self._context):
            # The context was negotiated for another SOP Class (Verification, say): the data
            # set is read and dropped, and answered "SOP Class not supported".
            logger.warning(
                "C-STORE from %s refused: SOP Class %s on a context negotiated for %s",
                self.calling,
                sop_class,
                self.abstract_syntaxes.get(self._context),
            )
            self._refusal = WRONG_CONTEXT
            return
        try:
            self._writer = SpoolWriter()
            # A Part 10 file, as pynetdicom writes a received data set: preamble, meta, data.
            self._writer.write(_file_head(sop_class, sop_instance, self.contexts[self._context]))
        except SPOOL_ERRORS as exc:
            self._spool_failed(exc)

    def _spool(self, data: memoryview) -> None:
        self._room -= len(data)
        if self._room < 0:
            raise Abort(f"a data set over {self.service.max_data_set} bytes", INVALID_PARAMETER)
        if self._writer is None:
            return  # refused, or spooling failed: the rest is only read, then answered
        try:
            self._writer.write(data)
        except SPOOL_ERRORS as exc:
            self._spool_failed(exc)

    def _spool_failed(self, exc: Exception) -> None:
        """The gateway's own disk failed (full, say): the instance is answered Out of
        Resources once its data set has been read, so the SCU sends it again later (a spool
        folder the gateway may not write too: DICOM has no status for a misconfiguration,
        and a sender keeps what it is told to send later)."""
        logger.error("C-STORE from %s could not be spooled: %s", self.calling, _reason(exc))
        if self._writer is not None:
            self._writer.abort()
        self._writer = None

    def _store_complete(self) -> None:
        request, writer, refusal = self._request, self._writer, self._refusal
        self._request, self._writer, self._refusal = None, None, None
        outcome = refusal or SPOOL_FAILURE
        if writer is not None:
            try:
                spooled = writer.finish()  # removes its file when it fails
            except SPOOL_ERRORS as exc:
                self._spool_failed(exc)
            else:
                declared = (str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID))
                spooled = replace(spooled, declared=declared)
                try:
                    outcome = self.service.store(self, spooled)
                except Exception:
                    spooled.discard()
                    raise
        self._send_store_response(request, outcome)

    def _send_store_response(self, request: Dataset, outcome: Outcome) -> None:
        elements = [
            _ui(0x0002, request.AffectedSOPClassUID),
            _us(0x0100, C_STORE_RSP),
            _us(0x0120, request.MessageID),
            _us(0x0800, NO_DATA_SET),
            _us(0x0900, outcome.status),
        ]
        if outcome.comment:
            elements.append(_lo(0x0902, outcome.comment[:64]))
        elements.append(_ui(0x1000, request.AffectedSOPInstanceUID))
        self._send_command(elements)

    def _send_echo_response(self, request: Dataset) -> None:
        sop_class = request.get("AffectedSOPClassUID")
        if not _is_uid(sop_class):
            sop_class = Verification
        elements = [
            _ui(0x0002, sop_class),
            _us(0x0100, C_ECHO_RSP),
            _us(0x0120, request.MessageID),
            _us(0x0800, NO_DATA_SET),
            _us(0x0900, 0x0000),
        ]
        self._send_command(elements)

    def _send_command(self, elements: list[bytes]) -> None:
        """A command set (Implicit VR Little Endian, its group length first) in P-DATA-TF
        PDUs no larger than the peer takes, on the context of the message it answers."""
        context_id, self._context = self._context, None
        body = b"".join(elements)
        command = _ul(0x0000, len(body)) + body
        room = self.peer_max_pdu - 6 if self.peer_max_pdu else len(command)
        pieces = [command[i : i + room] for i in range(0, len(command), room)]
        for number, piece in enumerate(pieces):
            control = 0x03 if number == len(pieces) - 1 else 0x01
            item = bytes((context_id, control)) + piece
            self._send(struct.pack(">BBLL", P_DATA, 0, 4 + len(item), len(item)) + item)

    def _discard_partial(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        self._writer, self._request, self._context, self._refusal = None, None, None, None

    # --- the wire ---------------------------------------------------------------------

    def _read_pdu(self, seconds: float, limit: int = MAX_PDU) -> tuple[int, bytearray]:
        """The next PDU's type, and the whole PDU (header included, as pynetdicom decodes it),
        all of it within ``seconds``: a peer trickling bytes does not hold a thread longer."""
        deadline = time.monotonic() + seconds
        header = self._read_into(bytearray(_HEADER), 0, deadline)
        length = int.from_bytes(header[2:6], "big")
        if length > limit:
            raise Abort(f"a PDU of {length} bytes, over the {limit} allowed", INVALID_PARAMETER)
        pdu = bytearray(_HEADER + length)
        pdu[:_HEADER] = header
        return header[0], self._read_into(pdu, _HEADER, deadline)

    def _read_into(self, buffer: bytearray, received: int, deadline: float) -> bytearray:
        """Fill ``buffer`` from the socket from offset ``received`` on, before ``deadline``."""
        view = memoryview(buffer)
        while received < len(buffer):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Abort("the peer went silent")
            self.sock.settimeout(remaining)
            try:
                count = self.sock.recv_into(view[received:])
            except TimeoutError as exc:
                raise Abort("the peer went silent") from exc
            if count == 0:
                raise Closed
            received += count
        return buffer

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _await_close(self) -> None:
        """Leave closing the connection to the peer, as PS3.8 has the requestor do after an
        A-RELEASE-RP, an A-ASSOCIATE-RJ or an A-ABORT (the acceptor waits in Sta13), for at
        most CLOSE_SECONDS in all: closed under the peer with its bytes unread, the
        connection would be reset and the peer could miss the last PDU."""
        self.closing = True
        deadline = time.monotonic() + CLOSE_SECONDS
        with contextlib.suppress(OSError):
            while (remaining := deadline - time.monotonic()) > 0:
                self.sock.settimeout(remaining)
                if not self.sock.recv(4096):
                    return  # anything the peer sent meanwhile is not ours to answer

    def stop(self) -> None:
        """End the association from another thread: its reading stops as the peer's would."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(data)
        except OSError:
            pass


# What spooling raises when the gateway's disk fails: its StorageErrors, and any other
# OSError of the file system.
SPOOL_ERRORS = (OSError, StorageError)


def _reason(exc: Exception) -> str:
    """What failed, without the spool file's path that an OSError's text carries."""
    if isinstance(exc, StorageError):
        return exc.reason
    errno = getattr(exc, "errno", None)
    return os.strerror(errno) if errno else type(exc).__name__


SPOOL_FAILURE = Outcome(0xA700, "The gateway could not write the instance; send it later.")
WRONG_CONTEXT = Outcome(0x0122, "SOP Class not the presentation context's")


def _number(command: Dataset, keyword: str) -> int:
    """A command element that must hold one number."""
    value = command.get(keyword)
    if not isinstance(value, int):
        raise ValueError(f"{keyword} is missing or not one number")
    return value


def _is_uid(value: object) -> bool:
    return isinstance(value, str) and is_valid_uid(value)


def _association_request(pdu: tuple[int, bytearray]) -> A_ASSOCIATE:
    """The A-ASSOCIATE-RQ a connection starts with, decoded by pynetdicom."""
    kind, whole = pdu
    if kind != ASSOCIATE_RQ:
        raise Abort(f"expected an A-ASSOCIATE-RQ, got PDU type 0x{kind:02x}")
    try:
        decoded = A_ASSOCIATE_RQ()
        decoded.decode(bytes(whole))
        return decoded.to_primitive()
    except Exception as exc:  # pynetdicom's decoders raise whatever the bytes provoke
        raise Abort(f"an A-ASSOCIATE-RQ that cannot be read ({type(exc).__name__})") from exc


def _element(element: int, value: bytes) -> bytes:
    """A command element of group 0000, Implicit VR Little Endian (PS3.7 E.1)."""
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _us(element: int, value: int) -> bytes:
    return _element(element, struct.pack("<H", value))


def _ul(element: int, value: int) -> bytes:
    return _element(element, struct.pack("<L", value))


def _ui(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    return _element(element, value + b"\x00" * (len(value) % 2))


def _lo(element: int, text: str) -> bytes:
    # LO is one line of the default repertoire, without the backslash (its value separator).
    printable = "".join(c if " " <= c <= "~" and c != "\\" else " " for c in text)
    value = printable.strip().encode("ascii")
    return _element(element, value + b" " * (len(value) % 2))


def _values(pdu: bytearray) -> Iterator[tuple[int, int, memoryview]]:
    """The presentation data values of a P-DATA-TF: (context id, control header, data)."""
    view = memoryview(pdu)
    offset, end = _HEADER, len(pdu)
    while offset < end:
        if end - offset < 6:
            raise Abort("a truncated presentation data value", INVALID_PARAMETER)
        length = int.from_bytes(view[offset : offset + 4], "big")
        if length < 2 or offset + 4 + length > end:
            raise Abort("a presentation data value of a wrong length", INVALID_PARAMETER)
        yield view[offset + 4], view[offset + 5], view[offset + 6 : offset + 4 + length]
        offset += 4 + length


def _file_head(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, prefix and File Meta Information (Explicit VR Little Endian) of a received
    data set: what pydicom's write_file_meta_info writes for pynetdicom's create_file_meta,
    byte for byte (the tests compare), at a tenth of its cost per instance."""
    elements = b"".join(
        [
            _explicit(0x0001, b"OB", b"\x00\x01"),
            _explicit(0x0002, b"UI", _padded(sop_class, b"\x00")),
            _explicit(0x0003, b"UI", _padded(sop_instance, b"\x00")),
            _explicit(0x0010, b"UI", _padded(transfer_syntax, b"\x00")),
            _explicit(0x0012, b"UI", _padded(PYNETDICOM_IMPLEMENTATION_UID, b"\x00")),
            _explicit(0x0013, b"SH", _padded(PYNETDICOM_IMPLEMENTATION_VERSION, b" ")),
        ]
    )
    group_length = _explicit(0x0000, b"UL", struct.pack("<L", len(elements)))
    return b"\x00" * 128 + b"DICM" + group_length + elements


def _explicit(element: int, vr: bytes, value: bytes) -> bytes:
    """A group 0002 element, Explicit VR Little Endian (OB with its 4-byte length)."""
    if vr == b"OB":
        return struct.pack("<HH2sHL", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    value = text.encode("ascii")
    return value + pad * (len(value) % 2)


def _reject_pdu(request: A_ASSOCIATE, reason: tuple[int, int, int]) -> bytes:
    reject = A_ASSOCIATE()
    reject.calling_ae_title = request.calling_ae_title
    reject.called_ae_title = request.called_ae_title
    reject.result, reject.result_source, reject.diagnostic = reason
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(reject)
    return pdu.encode()


_rejecting = threading.BoundedSemaphore(REJECT_THREADS)


def reject_busy(sock: socket.socket) -> None:
    """Answer an association over the limit with A-ASSOCIATE-RJ "local limit exceeded", on a
    thread of its own when fewer than REJECT_THREADS are answering; else close it at once."""
    if not _rejecting.acquire(blocking=False):
        _close(sock)
        return
    try:
        threading.Thread(target=_reject_busy, args=(sock,), daemon=True).start()
    except RuntimeError:  # no thread to be had
        _rejecting.release()
        _close(sock)


def _reject_busy(sock: socket.socket) -> None:
    try:
        association = Association(sock=sock, address="", service=Service())
        request = _association_request(association._read_pdu(REJECT_SECONDS, MAX_ASSOCIATE_RQ))
        sock.sendall(_reject_pdu(request, LOCAL_LIMIT_EXCEEDED))
        association._await_close()
    except Exception as exc:  # nothing to answer: the closed connection tells the peer
        logger.info("A busy rejection ended early: %s", type(exc).__name__)
    finally:
        _close(sock)
        _rejecting.release()


def _abort_pdu(reason: int) -> bytes:
    pdu = A_ABORT_RQ()
    pdu.source = 0x02  # the service provider
    pdu.reason_diagnostic = reason
    return pdu.encode()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _user_information() -> list:
    """Our A-ASSOCIATE-AC's user information (built afresh: pynetdicom's items are mutable)."""
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = MAX_PDU
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    return [maximum, implementation, version]


# Verification in any syntax; negotiate_unrestricted accepts every storage SOP class itself.
SUPPORTED = [build_context(Verification, ALL_TRANSFER_SYNTAXES)]


class Server:
    """Accepts associations on a listening socket and serves each on a thread of ``pool``.

    The pool's threads are long-lived, so that what they keep (a database connection) outlives
    an association; an association beyond the pool's size is rejected as "local limit
    exceeded" rather than left waiting.
    """

    def __init__(
        self, listening: socket.socket, service: Service, pool, size: int, *, shared: bool = False
    ) -> None:
        self.listening = listening
        self.service = service
        self.pool = pool
        self.size = size
        self.shared = shared  # other processes accept on the same socket
        self.active: set[Association] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def serve_forever(
        self, poll_interval: float = 0.2, check: Callable[[], None] | None = None
    ) -> None:
        """Accept until shutdown(); ``check`` is called between accepts (it may shut down)."""
        waiting_since = None  # when a connection was first seen waiting while full
        while not self._stopped.is_set():
            if check is not None:
                check()
            ready, _, _ = select.select([self.listening], [], [], poll_interval)
            if not ready:
                waiting_since = None
            elif self.shared and self._full():
                # A sibling with room takes it; reject it only once all of them are full.
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since < BUSY_GRACE:
                    time.sleep(0.01)
                    continue
                waiting_since = None  # the next one gets its grace too
                self._accept()
            elif self._still_pending():
                waiting_since = None
                self._accept()

    def _full(self) -> bool:
        with self._lock:
            return len(self.active) >= self.size

    def _still_pending(self) -> bool:
        """Whether a connection waits after leaving it a moment to an idler process.

        Every process wakes for a new connection and the first to accept takes it, often
        the one already serving: two associations then share its interpreter (one GIL)
        while another process idles. A process serving associations waits a little per
        association before it accepts, as the gunicorn workers do (anim_gateway/
        gunicorn_worker.py).
        """
        if not self.shared or not self.active:
            return True
        with self._lock:
            serving = sum(not association.closing for association in self.active)
        if not serving:
            return True
        time.sleep(min(BUSY_ACCEPT_DELAY * serving, MAX_ACCEPT_DELAY))
        ready, _, _ = select.select([self.listening], [], [], 0)
        return bool(ready)

    def _accept(self) -> None:
        try:
            sock, address = self.listening.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another process took it, or the peer gave up
        except OSError as exc:
            # Out of file descriptors or memory, say: the listener goes on once it can.
            logger.error("DICOM listener cannot accept a connection: %s", exc)
            time.sleep(0.1)
            return
        try:
            self._start(sock, address[0])
        except Exception:
            logger.exception("DICOM listener cannot serve a connection from %s", address[0])
            _close(sock)

    def _start(self, sock: socket.socket, address: str) -> None:
        sock.setblocking(True)
        # Responses are small PDUs: sent at once rather than after Nagle's delay.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        association = Association(sock=sock, address=address, service=self.service)
        with self._lock:
            busy = len(self.active) >= self.size
            if not busy:
                self.active.add(association)
        if busy:
            reject_busy(sock)
            return
        try:
            self.pool.submit(self._serve, association)
        except BaseException:
            with self._lock:
                self.active.discard(association)
            raise

    def _serve(self, association: Association) -> None:
        try:
            association.run()
        finally:
            with self._lock:
                self.active.discard(association)

    def shutdown(self) -> None:
        """Stop accepting (serve_forever returns within its poll interval)."""
        self._stopped.set()

    def drain(self, seconds: float) -> None:
        """Wait for the associations in progress, at most ``seconds``; then abort the rest."""
        deadline = time.monotonic() + seconds
        while self.active and time.monotonic() < deadline:
            time.sleep(0.05)
        self.abort_all()

    def abort_all(self) -> None:
        with self._lock:
            active = list(self.active)
        for association in active:
            association.stop()
