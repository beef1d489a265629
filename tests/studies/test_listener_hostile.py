"""The DICOM listener under hostile and broken PDUs: each association ends with an A-ABORT or
a failure status, the next one is served, and nothing is left in the spool or the index."""

import io
import logging
import socket
import struct
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dsutils import decode, encode
from pynetdicom.sop_class import CTImageStorage, Verification

from studies import dimse
from studies.dicom_net import start_listener, stop_listener
from studies.models import Instance, Series, Study

from .conftest import dicom_copy, stored_files
from .pdus import CT, ECHO, association_rq, read_pdu

pytestmark = pytest.mark.django_db(transaction=True)

RELEASE_RQ = b"\x05\x00" + struct.pack(">L", 4) + bytes(4)


@pytest.fixture
def listener(cast):
    """The real listener (dicom_net: ingest into the database) on a free port."""
    server = start_listener(ae_title="ANIM_GATEWAY", host="127.0.0.1", port=0, block=False)
    yield server
    stop_listener(server)


def _port(server) -> int:
    return server.listening.getsockname()[1]


def _association_rq(max_pdu: int = 16382) -> bytes:
    return association_rq("CHEM_PACS", max_pdu)


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(server)), timeout=10)


def _raw_association(server) -> socket.socket:
    """A socket whose association (Verification on context 1, CT on 3) is accepted."""
    sock = _connect(server)
    sock.sendall(_association_rq())
    assert read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
    return sock


def _pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBL", kind, 0, len(body)) + body


def _p_data(*pdvs: tuple[int, int, bytes]) -> bytes:
    items = b"".join(struct.pack(">LBB", 2 + len(d), c, m) + d for c, m, d in pdvs)
    return _pdu(0x04, items)


def _command(**elements) -> bytes:
    command = Dataset()
    for keyword, value in elements.items():
        setattr(command, keyword, value)
    return encode(command, True, True)


def _store_command(sop_instance: str = "1.2.3.4.5", **overrides) -> bytes:
    elements = {
        "AffectedSOPClassUID": CTImageStorage,
        "CommandField": 0x0001,
        "MessageID": 1,
        "Priority": 0,
        "CommandDataSetType": 0x0000,
        "AffectedSOPInstanceUID": sop_instance,
        **overrides,
    }
    return _command(**{k: v for k, v in elements.items() if v is not None})


def _echo_command(message_id: int = 1) -> bytes:
    return _command(
        AffectedSOPClassUID=Verification,
        CommandField=0x0030,
        MessageID=message_id,
        CommandDataSetType=0x0101,
    )


def _data_set(tmp_path) -> tuple[bytes, str]:
    """A valid CT data set of Xavier (Implicit VR Little Endian, no file meta) and its UID."""
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    return encode(ds, True, True), ds.SOPInstanceUID


def _abort_reason(sock: socket.socket) -> int | None:
    """The reason of the A-ABORT the listener answered with (None: it only closed)."""
    kind, body = read_pdu(sock)
    assert kind in (0x07, 0), f"PDU type 0x{kind:02x} where an A-ABORT was due"
    return body[3] if kind == 0x07 else None


def _status(sock: socket.socket) -> int:
    kind, body = read_pdu(sock)
    assert kind == 0x04, f"PDU type 0x{kind:02x} where a response was due"
    return decode(io.BytesIO(body[6:]), True, True).Status


def _still_serves(server, tmp_path) -> None:
    """A well-behaved SCU is served right after: an echo, and a store that is indexed."""
    ae = AE(ae_title="CHEM_PACS")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", _port(server), ae_title="ANIM_GATEWAY")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    assert Instance.objects.filter(sop_instance_uid=ds.SOPInstanceUID).exists()


def _nothing_left(server, private_storage: Path, settings, *, stored: int = 0) -> None:
    """Once the association is over: no spool file, and only ``stored`` instances."""
    _wait_until(lambda: not server.active)
    assert stored_files(Path(settings.SPOOL_DIR)) == []
    assert Instance.objects.count() == stored
    assert len(stored_files(private_storage)) == stored
    if not stored:
        assert not Study.objects.exists()
        assert not Series.objects.exists()


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.fixture
def no_fault_logged(caplog):
    """Hostile input is a protocol error the listener names, never an unexpected fault."""
    caplog.set_level(logging.WARNING, logger="studies")
    yield
    faults = [r for r in caplog.records if r.name.startswith("studies") and r.exc_info]
    assert not faults, [r.getMessage() for r in faults]


# --- before the association ----------------------------------------------------------------


@pytest.mark.parametrize(
    "pdu",
    [
        pytest.param(_p_data((1, 0x03, _store_command())), id="P-DATA before association"),
        pytest.param(b"\x01\x00\xff\xff\xff\xff", id="A-ASSOCIATE-RQ of 0xFFFFFFFF bytes"),
        pytest.param(b"\x04\x00\xff\xff\xff\xff", id="P-DATA of 0xFFFFFFFF bytes"),
        pytest.param(_pdu(0x42, b"\x00" * 8), id="unknown PDU type"),
        pytest.param(_pdu(0x01, b"\x00\x01" + b"\xff" * 30), id="garbage A-ASSOCIATE-RQ"),
        pytest.param(RELEASE_RQ, id="A-RELEASE-RQ before association"),
    ],
)
def test_a_connection_that_does_not_start_with_an_association_request_is_aborted(
    listener, private_storage, settings, tmp_path, no_fault_logged, pdu
):
    with _connect(listener) as sock:
        sock.sendall(pdu)
        _abort_reason(sock)
    _nothing_left(listener, private_storage, settings)
    _still_serves(listener, tmp_path)


def test_an_association_request_cut_short_by_the_peer_is_dropped(
    listener, private_storage, settings, tmp_path, no_fault_logged
):
    request = _association_rq()
    with _connect(listener) as sock:
        sock.sendall(request[: len(request) // 2])
    _nothing_left(listener, private_storage, settings)
    _still_serves(listener, tmp_path)


# --- inside an association -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pdus", "reason"),
    [
        pytest.param([b"\x04\x00\xff\xff\xff\xff"], 0x06, id="PDU length 0xFFFFFFFF"),
        pytest.param(
            [b"\x04\x00" + struct.pack(">L", dimse.MAX_PDU + 1)], 0x06, id="over the maximum"
        ),
        pytest.param([_pdu(0x09, b"")], 0x01, id="unknown PDU type"),
        pytest.param([_pdu(0xFF, b"\x00" * 4)], 0x01, id="PDU type 0xFF"),
        pytest.param([_pdu(0x01, _association_rq()[6:])], 0x02, id="a second A-ASSOCIATE-RQ"),
        pytest.param([_p_data((5, 0x03, _store_command()))], 0x06, id="context not proposed"),
        pytest.param([_p_data((255, 0x03, _store_command()))], 0x06, id="context 255"),
        pytest.param([_p_data((0, 0x03, _store_command()))], 0x06, id="context 0"),
        pytest.param([_pdu(0x04, b"\x00\x00\x00\x01\x03")], 0x06, id="PDV of length 1"),
        pytest.param(
            [_pdu(0x04, b"\x00\x00\x10\x00\x03\x03" + b"\x00" * 8)], 0x06, id="PDV past its PDU"
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command(CommandField=None)))], 0x06, id="no CommandField"
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command(CommandField=0xFFFF)))], 0x02, id="CommandField ?"
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command(MessageID=None)))], 0x06, id="no MessageID"
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command(CommandDataSetType=None)))],
            0x06,
            id="no CommandDataSetType",
        ),
        pytest.param([_p_data((CT, 0x03, b"\xde\xad\xbe\xef" * 10))], 0x06, id="garbage command"),
        pytest.param(
            [_p_data((CT, 0x03, struct.pack("<HHL", 0, 0x0100, 0xFFFFFFF0) + b"\x01\x00"))],
            0x06,
            id="an element longer than the command set",
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command("1.2.9.3").replace(b"1.2.9.3", b"1.2.\xe9.3")))],
            0x02,
            id="a SOP Instance UID that is not ASCII",
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command().replace(CTImageStorage.encode(), b"\xff" * 26)))],
            0x06,
            id="a SOP Class UID that is not ASCII",
        ),
        pytest.param(
            [_p_data((ECHO, 0x03, _command(CommandField=0x0030, MessageID=1)))],
            0x06,
            id="echo without CommandDataSetType",
        ),
        pytest.param([_p_data((CT, 0x02, b"\x08\x00" * 50))], 0x02, id="data set, no command"),
        pytest.param(
            [
                _p_data(
                    (CT, 0x03, _store_command()), (CT, 0x00, b"\x08\x00\x05\x00"), (CT, 0x01, b"")
                )
            ],
            0x02,
            id="a command fragment inside a data set",
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command()), (CT, 0x00, b"\x08\x00\x05\x00")), RELEASE_RQ],
            0x02,
            id="A-RELEASE-RQ inside a data set",
        ),
        pytest.param(
            [_p_data((CT, 0x01, _store_command()[:20])), RELEASE_RQ],
            0x02,
            id="A-RELEASE-RQ inside a command set",
        ),
        pytest.param(
            [_p_data((CT, 0x03, _store_command()), (ECHO, 0x02, b"\x08\x00\x05\x00"))],
            0x06,
            id="a data set on another context",
        ),
    ],
)
def test_a_protocol_error_inside_an_association_aborts_it_and_stores_nothing(
    listener, private_storage, settings, tmp_path, no_fault_logged, pdus, reason
):
    with _raw_association(listener) as sock:
        for pdu in pdus:
            sock.sendall(pdu)
        assert _abort_reason(sock) == reason
    _nothing_left(listener, private_storage, settings)
    _still_serves(listener, tmp_path)


def test_an_echo_whose_sop_class_uid_is_garbage_is_answered_as_verification(listener):
    command = _echo_command().replace(b"1.2.840.10008.1.1", b"\xe9" * 17)
    with _raw_association(listener) as sock:
        sock.sendall(_p_data((ECHO, 0x03, command)))
        assert _status(sock) == 0x0000
        sock.sendall(RELEASE_RQ)
        assert read_pdu(sock)[0] == 0x06


def test_a_huge_group_length_is_not_believed(listener, private_storage, settings, tmp_path):
    """The group length is redundant (PS3.7 E.1): the command is read from its elements."""
    data, sop_instance = _data_set(tmp_path)
    command = struct.pack("<HHLL", 0, 0, 4, 0xFFFFFFFF) + _store_command(sop_instance)
    with _raw_association(listener) as sock:
        sock.sendall(_p_data((CT, 0x03, command), (CT, 0x02, data)))
        assert _status(sock) == 0x0000
        sock.sendall(RELEASE_RQ)
        assert read_pdu(sock)[0] == 0x06
    _nothing_left(listener, private_storage, settings, stored=1)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00", id="one byte"),
        pytest.param(b"not DICOM at all, but text" * 40, id="text"),
        pytest.param(b'{"00100010": {"vr": "PN"}}', id="JSON"),
        pytest.param(b"\x08\x00\x05\x00\xff\xff\xff\xff" + b"\x00" * 40, id="an endless element"),
        pytest.param(b"\xfe\xff\x00\xe0\xff\xff\xff\xff" * 20, id="items outside a sequence"),
    ],
)
def test_a_store_whose_data_set_is_not_dicom_fails_and_the_association_goes_on(
    listener, private_storage, settings, tmp_path, data
):
    with _raw_association(listener) as sock:
        sock.sendall(_p_data((CT, 0x03, _store_command()), (CT, 0x02, data)))
        assert _status(sock) in (0xC000, 0xA900)
        sock.sendall(_p_data((ECHO, 0x03, _echo_command(message_id=2))))
        assert _status(sock) == 0x0000
        sock.sendall(RELEASE_RQ)
        assert read_pdu(sock)[0] == 0x06
    _nothing_left(listener, private_storage, settings)
    _still_serves(listener, tmp_path)


def test_a_fragment_after_the_last_one_aborts(listener, private_storage, settings, tmp_path):
    with _raw_association(listener) as sock:
        sock.sendall(_p_data((CT, 0x03, _store_command()), (CT, 0x02, b"not DICOM")))
        assert _status(sock) == 0xC000
        sock.sendall(_p_data((CT, 0x02, b"more of it")))
        assert _abort_reason(sock) == 0x02
    _nothing_left(listener, private_storage, settings)
    _still_serves(listener, tmp_path)


@pytest.mark.parametrize("how", ["closed", "A-ABORT"])
def test_a_data_set_never_finished_leaves_nothing_behind(
    listener, private_storage, settings, tmp_path, how
):
    data, _ = _data_set(tmp_path)
    sock = _raw_association(listener)
    with sock:
        sock.sendall(_p_data((CT, 0x03, _store_command()), (CT, 0x00, data[:1000])))
        _wait_until(lambda: stored_files(Path(settings.SPOOL_DIR)))
        if how == "A-ABORT":
            sock.sendall(_pdu(0x07, b"\x00\x00\x00\x00"))
    _nothing_left(listener, private_storage, settings)
    _still_serves(listener, tmp_path)


def test_a_peer_silent_in_the_middle_of_a_pdu_is_aborted_and_frees_its_thread(
    listener, private_storage, settings, tmp_path, monkeypatch
):
    # The configured limits are finite: 30 s for the request, 60 s for each later PDU.
    assert 0 < dimse.ARTIM_SECONDS <= 60
    assert 0 < dimse.IDLE_SECONDS <= 300
    monkeypatch.setattr(dimse, "IDLE_SECONDS", 0.3)
    with _raw_association(listener) as sock:
        whole = _p_data((CT, 0x03, _store_command()), (CT, 0x00, b"\x08\x00" * 500))
        sock.sendall(whole[: len(whole) // 2])  # the rest never comes
        assert _abort_reason(sock) in (0x00, 0x02)
    _nothing_left(listener, private_storage, settings)
    _still_serves(listener, tmp_path)


def test_a_data_set_in_thousands_of_tiny_fragments_is_stored(
    listener, private_storage, settings, tmp_path
):
    data, sop_instance = _data_set(tmp_path)
    fragments = [(CT, 0x00, data[i : i + 1]) for i in range(len(data))]
    fragments[-1] = (CT, 0x02, fragments[-1][2])
    with _raw_association(listener) as sock:
        sock.sendall(_p_data((CT, 0x03, _store_command(sop_instance))))
        for start in range(0, len(fragments), 5000):  # many PDVs per PDU, several PDUs
            sock.sendall(_p_data(*fragments[start : start + 5000]))
        assert _status(sock) == 0x0000
        # ... and as many empty PDVs in PDUs of their own: each only read.
        sock.sendall(_p_data((CT, 0x03, _store_command(sop_instance))))
        for _ in range(2000):
            sock.sendall(_p_data((CT, 0x00, b"")))
        sock.sendall(_p_data((CT, 0x00, data), (CT, 0x02, b"")))
        assert _status(sock) == 0x0000  # the same instance again: a duplicate, stored once
        sock.sendall(RELEASE_RQ)
        assert read_pdu(sock)[0] == 0x06
    _nothing_left(listener, private_storage, settings, stored=1)


@pytest.mark.parametrize("context", [CT, ECHO], ids=["spooled", "refused, only read"])
def test_a_data_set_past_the_maximum_is_aborted_not_spooled_to_the_end(
    listener, private_storage, settings, tmp_path, context
):
    """One whose last fragment never comes would fill the spool's disk; the maximum is the
    one of a STOW-RS body."""
    settings.STOW_MAX_BYTES = 10_000
    with _raw_association(listener) as sock:
        sock.sendall(_p_data((context, 0x03, _store_command())))
        for _ in range(3):
            sock.sendall(_p_data((context, 0x00, b"\x08\x00" * 2_000)))
        assert _abort_reason(sock) == 0x06
    _nothing_left(listener, private_storage, settings)
    settings.STOW_MAX_BYTES = 10**8  # room for the next instance
    _still_serves(listener, tmp_path)


def test_a_calling_title_that_is_not_ascii_is_refused_without_a_traceback_in_the_log(
    listener, caplog, tmp_path
):
    """pynetdicom logs a traceback for each byte it cannot decode in the request, before the
    peer is known: anyone could fill the logs with them. The refusal itself is enough."""
    request = bytearray(_association_rq())
    request[26:42] = "CHÉM_PACS".encode("latin-1").ljust(16)  # the calling AE title
    with _connect(listener) as sock:
        sock.sendall(bytes(request))
        assert read_pdu(sock)[0] in (0x03, 0x07, 0)  # rejected, aborted or closed
    _still_serves(listener, tmp_path)
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not tracebacks
