"""The blocking DICOM acceptor on its own (studies.dimse): a fake service, real clients and
raw PDUs for what a well-behaved client never sends."""

import contextlib
import io
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import create_file_meta, decode, encode
from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import CTImageStorage, Verification

from studies import dimse

from .conftest import pydicom_file
from .pdus import association_rq, read_pdu


class FakeService(dimse.Service):
    """Admits GOOD_PACS; keeps what it is given; answers with ``outcome``."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.declared: list[tuple[str, str] | None] = []
        self.finished: list[dimse.Association] = []
        self.outcome = dimse.Outcome(0x0000)
        self.release = threading.Event()
        self.release.set()

    def admits(self, calling: str, address: str) -> bool:
        return calling == "GOOD_PACS" and address == "127.0.0.1"

    def store(self, association, spooled) -> dimse.Outcome:
        self.release.wait(10)
        self.stored.append(spooled.path.read_bytes())
        self.declared.append(spooled.declared)
        spooled.discard()
        return self.outcome

    def ended(self, association) -> None:
        self.finished.append(association)


@pytest.fixture
def service():
    return FakeService()


@pytest.fixture
def acceptor(service):
    """A server on a free port with a pool of 2 associations; yields (port, server)."""
    listening = socket.create_server(("127.0.0.1", 0))
    pool = ThreadPoolExecutor(max_workers=2)
    server = dimse.Server(listening, service, pool, 2)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield listening.getsockname()[1], server
    server.shutdown()
    thread.join(5)
    server.abort_all()
    pool.shutdown(wait=True)
    listening.close()


def _associate(port: int, calling: str = "GOOD_PACS", max_pdu: int = 16382):
    ae = AE(ae_title=calling)
    ae.maximum_pdu_size = max_pdu
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    return ae.associate("127.0.0.1", port, ae_title="ANIM_GATEWAY")


def test_a_stored_data_set_arrives_as_the_part10_file_pynetdicom_would_write(acceptor, service):
    port, _ = acceptor
    ds = dcmread(pydicom_file("CT_small.dcm"))
    assoc = _associate(port)
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    received = dcmread(io.BytesIO(service.stored[0]))
    assert service.stored[0][:132] == b"\x00" * 128 + b"DICM"
    assert received.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    # The syntax accepted is the first one proposed (pynetdicom's default list: implicit).
    assert received.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert received == ds
    # What the request declared goes with the data set, for ingest to compare.
    assert service.declared == [(CTImageStorage, ds.SOPInstanceUID)]


def test_an_echo_is_answered(acceptor):
    assoc = _associate(acceptor[0])
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert assoc.is_released


def test_an_unknown_calling_title_is_rejected(acceptor, service):
    assoc = _associate(acceptor[0], calling="STRANGER")
    assert assoc.is_rejected
    assert service.stored == []


def test_a_failure_status_carries_its_comment(acceptor, service):
    service.outcome = dimse.Outcome(0xC000, "StudyInstanceUID is missing\\ or é")
    assoc = _associate(acceptor[0])
    status = assoc.send_c_store(dcmread(pydicom_file("CT_small.dcm")))
    assoc.release()
    assert status.Status == 0xC000
    assert status.ErrorComment == "StudyInstanceUID is missing  or"


@pytest.mark.parametrize("max_pdu", [0, 16382, 64])
def test_responses_are_what_pynetdicom_encodes_in_pdus_the_peer_takes(max_pdu):
    request = Dataset()
    request.MessageID = 7
    request.AffectedSOPClassUID = CTImageStorage
    request.AffectedSOPInstanceUID = "1.2.3.4.5"
    for outcome in (dimse.Outcome(0x0000), dimse.Outcome(0xA700, "Out of resources, retry")):
        sent = _sent(lambda a, o=outcome: a._send_store_response(request, o), max_pdu)
        expected = C_STORE()
        expected.MessageIDBeingRespondedTo = 7
        expected.AffectedSOPClassUID = CTImageStorage
        expected.AffectedSOPInstanceUID = "1.2.3.4.5"
        expected.Status = outcome.status
        if outcome.comment:
            expected.ErrorComment = outcome.comment
        assert sent == _pynetdicom_pdus(C_STORE_RSP(), expected, max_pdu)
    echo = C_ECHO()
    echo.MessageIDBeingRespondedTo = 7
    echo.AffectedSOPClassUID = Verification
    echo.Status = 0
    request.AffectedSOPClassUID = Verification
    sent = _sent(lambda a: a._send_echo_response(request), max_pdu)
    assert sent == _pynetdicom_pdus(C_ECHO_RSP(), echo, max_pdu)


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        (CTImageStorage, "1.2.3.4.5", ImplicitVRLittleEndian),  # odd lengths padded
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.56", "1.2.840.10008.1.2.4.91"),
    ],
)
def test_the_file_head_is_what_pydicom_writes_for_pynetdicoms_file_meta(
    sop_class, sop_instance, syntax
):
    meta = create_file_meta(
        sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_instance), transfer_syntax=syntax
    )
    expected = io.BytesIO()
    expected.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(expected, meta)
    assert dimse._file_head(sop_class, sop_instance, syntax) == expected.getvalue()


def _sent(send, max_pdu: int) -> bytes:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        association = dimse.Association(sock=ours, address="", service=dimse.Service())
        association.peer_max_pdu = max_pdu
        association._context = 1  # the context of the message answered
        send(association)
        ours.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: theirs.recv(65536), b""))


def _pynetdicom_pdus(message, primitive, max_pdu: int) -> bytes:
    message.primitive_to_message(primitive)
    pdus = []
    for p_data in message.encode_msg(1, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(p_data)
        pdus.append(pdu.encode())
    return b"".join(pdus)


# --- what a well-behaved client never sends -----------------------------------------------


def _raw_association(port: int, max_pdu: int = 16382) -> socket.socket:
    """A socket whose association (Verification and CT, contexts 1 and 3) is accepted."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(association_rq("GOOD_PACS", max_pdu))
    assert read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
    return sock


def _p_data(context_id: int, control: int, data: bytes) -> bytes:
    item = bytes((context_id, control)) + data
    return struct.pack(">BBLL", 0x04, 0, 4 + len(item), len(item)) + item


def _store_command(sop_class=CTImageStorage, message_id=1, sop_instance="1.2.3.4.5") -> bytes:
    command = Dataset()
    command.AffectedSOPClassUID = sop_class
    command.CommandField = 0x0001
    command.MessageID = message_id
    command.Priority = 0
    command.CommandDataSetType = 0x0000
    command.AffectedSOPInstanceUID = sop_instance
    body = encode(command, True, True)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def _aborted(sock: socket.socket) -> bool:
    """Whether the acceptor answered with an A-ABORT (or at least closed the connection)."""
    kind, _ = read_pdu(sock)
    return kind in (0x07, 0)


@pytest.mark.parametrize(
    "pdus",
    [
        pytest.param([_p_data(1, 0x02, b"\x00" * 10)], id="data set without a command"),
        pytest.param([_p_data(9, 0x03, _store_command())], id="context never accepted"),
        pytest.param([b"\x04\x00" + struct.pack(">L", 3) + b"\x00\x00\x00"], id="truncated PDV"),
        pytest.param([b"\x02\x00" + struct.pack(">L", 0)], id="an A-ASSOCIATE-AC from the peer"),
        pytest.param(
            [b"\x04\x00" + struct.pack(">L", dimse.MAX_PDU + 1)], id="PDU over the agreed size"
        ),
        pytest.param(
            [_p_data(3, 0x03, _store_command(sop_instance="1.2.3/../4"))],
            id="an invalid SOP Instance UID",
        ),
        pytest.param(
            [_p_data(3, 0x03, _store_command()), b"\x05\x00" + struct.pack(">L", 4) + bytes(4)],
            id="release in the middle of a C-STORE",
        ),
    ],
)
def test_a_protocol_error_aborts_and_stores_nothing(acceptor, service, settings, pdus):
    sock = _raw_association(acceptor[0])
    with sock:
        for pdu in pdus:
            sock.sendall(pdu)
        assert _aborted(sock)
    _wait_until(lambda: len(service.finished) == 1)
    assert service.stored == []
    assert not list(Path(settings.SPOOL_DIR).glob("*")), "no spool file is left behind"


def test_a_c_store_on_a_context_of_another_sop_class_is_refused_and_the_association_goes_on(
    acceptor, service, settings
):
    sock = _raw_association(acceptor[0])
    with sock:
        # Context 1 was negotiated for Verification, not CT Image Storage.
        sock.sendall(_p_data(1, 0x03, _store_command()))
        sock.sendall(_p_data(1, 0x02, b"\x08\x00\x05\x00" + b"\x00" * 20))
        assert _status_of(sock) == 0x0122
        sock.sendall(_p_data(3, 0x03, _store_command(message_id=2)))
        sock.sendall(_p_data(3, 0x02, b"\x08\x00\x05\x00" + b"\x00" * 20))
        assert _status_of(sock) == 0x0000
    assert len(service.stored) == 1, "only the one on the CT context reached the service"
    _wait_until(lambda: len(service.finished) == 1)
    assert not list(Path(settings.SPOOL_DIR).glob("*"))


def _status_of(sock: socket.socket) -> int:
    """The Status of the command set that the next P-DATA-TF PDU carries (a response)."""
    kind, body = read_pdu(sock)
    assert kind == 0x04
    return decode(io.BytesIO(body[6:]), True, True).Status


def test_an_unsupported_command_aborts(acceptor):
    command = Dataset()
    command.AffectedSOPClassUID = CTImageStorage
    command.CommandField = 0x0020  # C-FIND-RQ
    command.MessageID = 1
    command.CommandDataSetType = 0x0101
    sock = _raw_association(acceptor[0])
    with sock:
        sock.sendall(_p_data(3, 0x03, encode(command, True, True)))
        assert _aborted(sock)


def test_a_connection_lost_in_the_middle_of_a_data_set_leaves_no_spool_file(
    acceptor, service, settings
):
    sock = _raw_association(acceptor[0])
    sock.sendall(_p_data(3, 0x03, _store_command()))
    sock.sendall(_p_data(3, 0x00, b"\x08\x00\x05\x00" + b"\x00" * 500))
    _wait_until(lambda: list(Path(settings.SPOOL_DIR).glob("*")))
    sock.close()
    _wait_until(lambda: len(service.finished) == 1)
    assert service.stored == []
    assert not list(Path(settings.SPOOL_DIR).glob("*"))


def test_a_silent_peer_is_aborted(acceptor, monkeypatch):
    monkeypatch.setattr(dimse, "IDLE_SECONDS", 0.2)
    sock = _raw_association(acceptor[0])
    with sock:
        started = time.monotonic()
        assert _aborted(sock)
        assert time.monotonic() - started < 5


def test_a_data_set_split_over_many_small_pdus_is_put_together(acceptor, service, monkeypatch):
    monkeypatch.setattr(dimse, "MAX_PDU", 1024)  # announced in the A-ASSOCIATE-AC
    ds = dcmread(pydicom_file("CT_small.dcm"))
    assoc = _associate(acceptor[0])
    assert assoc.acceptor.maximum_length == 1024
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    assert dcmread(io.BytesIO(service.stored[0])) == ds


@contextlib.contextmanager
def _pool_held(port: int, server, service):
    """The pool's two associations each hold a C-STORE until the block ends."""
    service.release.clear()
    ds = dcmread(pydicom_file("CT_small.dcm"))
    held = [_associate(port) for _ in range(2)]
    senders = [threading.Thread(target=a.send_c_store, args=(ds,)) for a in held]
    for sender in senders:
        sender.start()
    _wait_until(lambda: len(server.active) == 2)
    try:
        yield
    finally:
        service.release.set()
        for sender, assoc in zip(senders, held, strict=True):
            sender.join(10)
            assoc.release()


def test_associations_beyond_the_pool_are_rejected_as_busy(acceptor, service):
    port, server = acceptor
    with _pool_held(port, server, service):
        assert _associate(port).is_rejected
    assert len(service.stored) == 2


def _wait_until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_after_the_release_the_peer_closes_the_connection(acceptor, service):
    sock = _raw_association(acceptor[0])
    with sock:
        sock.sendall(b"\x05\x00" + struct.pack(">L", 4) + bytes(4))  # A-RELEASE-RQ
        assert read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
        # PS3.8: the requestor closes; the acceptor waits for it (Sta13).
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert service.finished == []
    _wait_until(lambda: len(service.finished) == 1)


# --- what the review of the acceptor found a peer could do ---------------------------------


def _abort_reason(sock: socket.socket) -> int | None:
    kind, body = read_pdu(sock)
    return body[3] if kind == 0x07 else None


def test_a_command_set_that_never_ends_is_aborted(acceptor):
    sock = _raw_association(acceptor[0])
    with sock:
        for _ in range(3):
            sock.sendall(_p_data(3, 0x01, b"\x00" * 30_000))  # never the last fragment
        assert _abort_reason(sock) == 0x06


def test_one_message_on_two_contexts_is_aborted(acceptor, service):
    sock = _raw_association(acceptor[0])
    with sock:
        sock.sendall(_p_data(3, 0x03, _store_command()))
        sock.sendall(_p_data(1, 0x02, b"\x08\x00\x05\x00" + b"\x00" * 20))
        assert _abort_reason(sock) == 0x06
    _wait_until(lambda: len(service.finished) == 1)
    assert service.stored == []


def test_a_command_without_its_message_id_is_aborted_before_anything_is_stored(acceptor, service):
    command = Dataset()
    command.AffectedSOPClassUID = CTImageStorage
    command.CommandField = 0x0001
    command.CommandDataSetType = 0x0000
    command.AffectedSOPInstanceUID = "1.2.3.4.5"
    sock = _raw_association(acceptor[0])
    with sock:
        sock.sendall(_p_data(3, 0x03, encode(command, True, True)))
        assert _abort_reason(sock) == 0x06
    assert service.stored == []


def test_a_full_spool_disk_is_answered_out_of_resources(
    acceptor, service, monkeypatch, settings, caplog
):
    from studies import spool

    def full(self, chunk):
        raise OSError(28, "No space left on device", self.path)

    monkeypatch.setattr(spool.SpoolWriter, "write", full)
    assoc = _associate(acceptor[0])
    status = assoc.send_c_store(dcmread(pydicom_file("CT_small.dcm")))
    assert status.Status == 0xA700
    assert assoc.send_c_echo().Status == 0x0000  # the association goes on
    assoc.release()
    assert service.stored == []
    assert not list(Path(settings.SPOOL_DIR).glob("*"))
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "studies.dimse")
    assert "No space left on device" in logged
    assert str(settings.SPOOL_DIR) not in logged  # the operator learns what, not the path


def test_an_oversized_association_request_is_aborted_unread(acceptor):
    with socket.create_connection(("127.0.0.1", acceptor[0]), timeout=10) as sock:
        sock.sendall(b"\x01\x00" + struct.pack(">L", dimse.MAX_ASSOCIATE_RQ + 1))
        assert _abort_reason(sock) == 0x06


def test_a_peer_trickling_its_association_request_is_cut_off(acceptor, monkeypatch):
    monkeypatch.setattr(dimse, "ARTIM_SECONDS", 0.5)
    with socket.create_connection(("127.0.0.1", acceptor[0]), timeout=10) as sock:
        sock.sendall(b"\x01\x00" + struct.pack(">L", 1000))
        started = time.monotonic()
        # Each byte in time, the whole never: cut off once the request's time is up.
        while _still_open(sock) and time.monotonic() - started < 5:
            with contextlib.suppress(OSError):
                sock.sendall(b"\x00")
            time.sleep(0.1)
        assert time.monotonic() - started < 2


def _still_open(sock: socket.socket) -> bool:
    """Whether the acceptor has not closed the connection (what it sent is read and dropped)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return False
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)


def _association_rq(max_length: int = 16382) -> bytes:
    """An A-ASSOCIATE-RQ from GOOD_PACS for Verification."""
    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title = "GOOD_PACS"
    request.called_ae_title = "ANIM_GATEWAY"
    context = build_context(Verification)
    context.context_id = 1
    request.presentation_context_definition_list = [context]
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = max_length
    request.user_information = [maximum]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return pdu.encode()


def test_a_peer_that_takes_no_pdu_is_aborted(acceptor):
    with socket.create_connection(("127.0.0.1", acceptor[0]), timeout=10) as sock:
        sock.sendall(_association_rq(max_length=4))  # no P-DATA-TF fits
        assert _abort_reason(sock) == 0x06


def test_a_title_the_service_cannot_check_now_is_rejected_as_transient(acceptor, service):
    def unavailable(calling, address):
        raise dimse.Unavailable

    service.admits = unavailable
    with socket.create_connection(("127.0.0.1", acceptor[0]), timeout=10) as sock:
        sock.sendall(_association_rq())
        kind, body = read_pdu(sock)
    # A-ASSOCIATE-RJ: rejected-transient, by the service provider (presentation), temporary
    # congestion (PS3.8 9.3.4): the peer may try again.
    assert (kind, tuple(body[1:4])) == (0x03, (0x02, 0x03, 0x01))


def test_a_fault_while_checking_a_title_aborts(acceptor, service):
    def fault(calling, address):
        raise RuntimeError("a bug")

    service.admits = fault
    with socket.create_connection(("127.0.0.1", acceptor[0]), timeout=10) as sock:
        sock.sendall(_association_rq())
        kind, _ = read_pdu(sock)
    assert kind == 0x07


def test_an_unknown_pdu_type_is_aborted_as_unrecognized(acceptor):
    sock = _raw_association(acceptor[0])
    with sock:
        sock.sendall(b"\x09\x00" + struct.pack(">L", 0))
        assert _abort_reason(sock) == 0x01


def test_after_a_release_a_trickling_peer_is_closed_within_a_second(acceptor, service):
    sock = _raw_association(acceptor[0])
    with sock:
        sock.sendall(b"\x05\x00" + struct.pack(">L", 4) + bytes(4))
        assert read_pdu(sock)[0] == 0x06
        started = time.monotonic()
        while _still_open(sock) and time.monotonic() - started < 5:
            with contextlib.suppress(OSError):
                sock.sendall(b"\x00")
            time.sleep(0.1)
        assert time.monotonic() - started < dimse.CLOSE_SECONDS + 1


def test_busy_rejections_beyond_their_threads_are_closed_at_once(acceptor, service, monkeypatch):
    port, server = acceptor
    monkeypatch.setattr(dimse, "_rejecting", threading.BoundedSemaphore(1))
    with _pool_held(port, server, service):
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)  # holds the rejecter
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            started = time.monotonic()
            assert extra.recv(1) == b""  # closed without an answer
            assert time.monotonic() - started < 2
        silent.close()


def test_the_listener_goes_on_after_a_failed_accept(acceptor):
    port, server = acceptor

    class Flaky:
        """The listening socket, out of file descriptors once."""

        def __init__(self, real):
            self.real, self.failures = real, 1

        def fileno(self):
            return self.real.fileno()

        def accept(self):
            if self.failures:
                self.failures -= 1
                raise OSError(24, "Too many open files")
            return self.real.accept()

    server.listening = Flaky(server.listening)
    first = _associate(port)  # its connection waits through the failed accept
    assert first.is_established
    first.release()
    assert server.listening.failures == 0


def test_a_full_process_leaves_a_new_association_to_a_sibling_with_room(service):
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    port = listening.getsockname()[1]
    pools = [ThreadPoolExecutor(max_workers=3) for _ in range(2)]
    full = dimse.Server(listening, service, pools[0], 1, shared=True)
    roomy = dimse.Server(listening, service, pools[1], 3, shared=True)
    # Busy as if serving: one association where one fits, two where three fit. The full
    # process would wait less before accepting (2 ms per association), and win the race.
    full.active |= {_Serving()}
    roomy.active |= {_Serving(), _Serving()}
    threads = [
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in (full, roomy)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            assoc = _associate(port)
            assert assoc.is_established, "the process with room took it"
            assoc.release()
    finally:
        for server, pool, thread in zip((full, roomy), pools, threads, strict=True):
            server.shutdown()
            thread.join(5)
            server.active.clear()
            pool.shutdown(wait=True)
        listening.close()


class _Serving:
    """A stand-in for an association in a server's active set."""

    def __init__(self, closing: bool = False) -> None:
        self.closing = closing


def test_an_association_waiting_for_its_peer_to_close_says_so(service):
    ours, peer = socket.socketpair()
    association = dimse.Association(sock=ours, address="127.0.0.1", service=service)
    assert not association.closing
    peer.close()
    association._await_close()
    assert association.closing
    ours.close()


def test_associations_that_only_wait_for_the_peer_to_close_delay_no_accept(service, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as listening:
        server = dimse.Server(listening, service, None, 3, shared=True)
        delays = []
        # dimse's own view of the time module, not the module every thread uses.
        clock = type("Clock", (), {"sleep": staticmethod(delays.append)})
        monkeypatch.setattr(dimse, "time", clock)
        server.active |= {_Serving(closing=True)}
        assert server._still_pending()
        assert delays == [], "released associations keep no one waiting"
        server.active |= {_Serving()}
        server._still_pending()
        assert delays == [dimse.BUSY_ACCEPT_DELAY], "one association in progress"
