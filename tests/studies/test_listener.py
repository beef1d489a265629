"""The DICOM listener: C-ECHO and C-STORE from member AEs, with pynetdicom and dcmtk's storescu."""

import shutil
import socket
import subprocess

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

from studies.dicom_net import start_listener, stop_listener
from studies.models import Instance, Study
from tests.conftest import REQUIRE_SERVICES

from .conftest import dicom_copy, pydicom_file

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listener(cast):
    port = _free_port()
    server = start_listener(ae_title="ANIM_GATEWAY", host="127.0.0.1", port=port, block=False)
    yield port
    stop_listener(server)


def _associate(port: int, calling: str = "CHEM_PACS"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(MRImageStorage)
    return ae.associate("127.0.0.1", port, ae_title="ANIM_GATEWAY")


def test_it_answers_an_echo(listener):
    assoc = _associate(listener)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_a_file_whose_meta_names_another_instance_is_refused_when_sent_by_its_path(
    listener, monkeypatch
):
    from pynetdicom import _config
    from pynetdicom.sop_class import RTDoseStorage

    # pynetdicom then streams a file from disk as it is, declaring its meta's UIDs.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)

    path = pydicom_file("rtdose.dcm")  # its file meta and its data set disagree
    ds = dcmread(path)
    assert ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID
    ae = AE(ae_title="CHEM_PACS")
    ae.add_requested_context(RTDoseStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", listener, ae_title="ANIM_GATEWAY")
    by_path = assoc.send_c_store(path)  # pynetdicom declares the meta's UIDs
    as_dataset = assoc.send_c_store(ds)  # ... and the data set's own
    assoc.release()
    assert by_path.Status == 0xA900, by_path
    assert as_dataset.Status == 0x0000
    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [ds.SOPInstanceUID]


def test_it_stores_and_indexes_before_acknowledging(listener, cast, tmp_path):
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assoc = _associate(listener)
    status = assoc.send_c_store(ds)
    # The instance is in the index by the time the success status arrives.
    assert status.Status == 0x0000
    assert Instance.objects.filter(sop_instance_uid=ds.SOPInstanceUID).exists()
    assoc.release()
    study = Study.objects.get()
    assert (study.institution.code, study.patient) == ("CHEM", cast.xavier)


def test_a_known_ae_title_from_an_unadmitted_address_is_rejected(listener):
    from consent.models import InstitutionAETitle
    from studies import dicom_net

    # The title is public; only the PACS's own network may use it, even to associate.
    InstitutionAETitle.objects.filter(ae_title="CHEM_PACS").update(peer_networks="10.20.0.0/16")
    # As an administrator's change reaches the listener: an association still ending from an
    # earlier test may have read the titles again since the listener started.
    dicom_net.forget_member_titles()
    assoc = _associate(listener)
    assert assoc.is_rejected
    assert not Instance.objects.exists()


def test_an_open_association_stops_storing_once_its_title_is_narrowed(listener, tmp_path):
    from consent.models import InstitutionAETitle
    from studies import dicom_net

    assoc = _associate(listener)
    first = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assert assoc.send_c_store(first).Status == 0x0000
    # The admin narrows the title to the PACS's network; the cached titles expire.
    InstitutionAETitle.objects.filter(ae_title="CHEM_PACS").update(peer_networks="10.20.0.0/16")
    dicom_net.forget_member_titles()
    second = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    status = assoc.send_c_store(second)
    assoc.release()
    assert status.Status == 0x0124  # not authorized, on the association already open
    assert not Instance.objects.filter(sop_instance_uid=second.SOPInstanceUID).exists()


def test_it_refuses_an_unknown_calling_ae(listener):
    assoc = _associate(listener, calling="STRANGER")
    assert assoc.is_rejected
    assert not assoc.is_established


def test_it_refuses_an_instance_without_study_uid(listener, tmp_path):
    ds = dcmread(dicom_copy(tmp_path))
    del ds.StudyInstanceUID
    assoc = _associate(listener)
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status.Status == 0xC000
    assert "StudyInstanceUID is missing" in status.ErrorComment
    assert not Instance.objects.exists()


def test_a_store_for_another_hospitals_study_is_refused(listener, tmp_path):
    first = dcmread(dicom_copy(tmp_path))
    assoc = _associate(listener, calling="CHEM_PACS")
    assert assoc.send_c_store(first).Status == 0x0000
    assoc.release()
    second = dcmread(dicom_copy(tmp_path, study_uid=first.StudyInstanceUID))
    assoc = _associate(listener, calling="CHL_PACS")
    status = assoc.send_c_store(second)
    assoc.release()
    assert status.Status != 0x0000
    assert Instance.objects.count() == 1


def _storescu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["storescu", "-aec", "ANIM_GATEWAY", *args], capture_output=True, text=True, timeout=60
    )


def test_dcmtk_storescu_stores_files(listener, tmp_path):
    if shutil.which("storescu") is None:
        if REQUIRE_SERVICES:
            pytest.fail("ANIM_REQUIRE_SERVICES=1 but dcmtk's storescu is not installed")
        pytest.skip("needs dcmtk's storescu")
    plain = [str(dicom_copy(tmp_path, name)) for name in ("CT_small.dcm", "MR_small.dcm")]
    result = _storescu("-aet", "HRS_PACS", "127.0.0.1", str(listener), *plain)
    assert result.returncode == 0, result.stderr
    # -xw: propose JPEG 2000 (lossy), the file's own syntax, so it travels compressed.
    j2k = str(dicom_copy(tmp_path, "JPEG2000.dcm"))
    result = _storescu("-xw", "-aet", "HRS_PACS", "127.0.0.1", str(listener), j2k)
    assert result.returncode == 0, result.stderr
    assert Instance.objects.count() == 3
    assert set(Study.objects.values_list("institution__code", flat=True)) == {"HRS"}
    assert Instance.objects.filter(transfer_syntax_uid="1.2.840.10008.1.2.4.91").exists()


def test_dcmtk_storescu_from_an_unknown_ae_is_rejected(listener, tmp_path):
    storescu = shutil.which("storescu")
    if storescu is None:
        pytest.skip("needs dcmtk's storescu")
    result = subprocess.run(
        [
            storescu,
            "-aet",
            "STRANGER",
            "-aec",
            "ANIM_GATEWAY",
            "127.0.0.1",
            str(listener),
            str(dicom_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Rejected" in result.stderr + result.stdout or "rejected" in result.stderr.lower()
    assert not Instance.objects.exists()


def test_pynetdicom_storescu_stores_a_folder(listener, tmp_path):
    import sys

    folder = tmp_path / "outgoing"
    folder.mkdir()
    # Its default contexts are uncompressed (the listener accepts more: see the dcmtk test).
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm"):
        dicom_copy(folder, name)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pynetdicom",
            "storescu",
            "127.0.0.1",
            str(listener),
            str(folder),
            "-aet",
            "CHL_PACS",
            "-aec",
            "ANIM_GATEWAY",
            "-r",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert Instance.objects.count() == 3, result.stdout + result.stderr


def test_a_database_connection_is_checked_only_when_idle_or_after_an_error(db, monkeypatch):
    from django.db import connection

    from studies import dicom_net

    checks = []
    connection.ensure_connection()
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(1) or True)
    monkeypatch.setattr(dicom_net._last_used, "at", 0.0, raising=False)
    dicom_net._with_usable_connection(lambda: None)  # idle since ever: checked
    dicom_net._with_usable_connection(lambda: None)  # just used: not checked again
    assert len(checks) == 1
    connection.errors_occurred = True
    dicom_net._with_usable_connection(lambda: None)
    assert len(checks) == 2


def test_member_titles_are_read_at_most_once_per_ttl(cast, monkeypatch):
    from studies import dicom_net

    reads = []
    read = dicom_net._member_titles
    monkeypatch.setattr(dicom_net, "_member_titles", lambda: reads.append(1) or read())
    dicom_net.forget_member_titles()
    try:
        assert dicom_net.member_titles()["CHEM_PACS"].institution.code == "CHEM"
        assert "CHEM_PACS" in dicom_net.member_titles()
        assert len(reads) == 1
        fetched_at, titles = dicom_net._titles
        monkeypatch.setattr(dicom_net, "_titles", (fetched_at - dicom_net.TITLES_TTL - 1, titles))
        dicom_net.member_titles()
        assert len(reads) == 2
    finally:
        dicom_net.close_db_connections()  # the reads ran on the listener's database threads


def test_a_thread_busy_while_connections_close_closes_its_own_when_its_association_ends(
    listener, tmp_path, monkeypatch
):
    import threading

    from django.db import connection

    from studies import dicom_net

    monkeypatch.setattr(dicom_net, "CLOSE_WAIT", 0.2)
    storing, go_on, closed = threading.Event(), threading.Event(), []
    ingest, ended = dicom_net._ingest, dicom_net.Listener.ended
    # Observed by call: closing SQLite's in-memory test database does nothing.
    wrapper, closing_threads = type(connection._connections["default"]), []
    close = wrapper.close
    monkeypatch.setattr(
        wrapper, "close", lambda db: closing_threads.append(threading.get_ident()) or close(db)
    )

    def held_ingest(session, spooled):
        storing.set()
        go_on.wait(10)
        return ingest(session, spooled)

    def observed_end(self, association):
        before = len(closing_threads)
        ended(self, association)
        closed.append(threading.get_ident() in closing_threads[before:])

    monkeypatch.setattr(dicom_net, "_ingest", held_ingest)
    monkeypatch.setattr(dicom_net.Listener, "ended", observed_end)
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assoc = _associate(listener)
    sender = threading.Thread(target=lambda: assoc.send_c_store(ds) and assoc.release())
    sender.start()
    assert storing.wait(10)
    dicom_net.close_db_connections()  # the storing thread misses its job
    go_on.set()
    sender.join(10)
    for _ in range(100):
        if closed:
            break
        threading.Event().wait(0.05)
    assert closed == [True]
    # Once closed for that request, a thread keeps its connection for later associations.
    assoc = _associate(listener)
    assoc.send_c_echo()
    assoc.release()
    for _ in range(100):
        if len(closed) == 2:
            break
        threading.Event().wait(0.05)
    assert closed == [True, False]


def test_a_store_that_fails_on_the_gateways_side_says_why_and_to_retry(
    listener, tmp_path, monkeypatch
):
    from django.db import OperationalError

    from studies import dicom_net

    def database_down(session, spooled):
        raise OperationalError("the database went away")

    monkeypatch.setattr(dicom_net, "_ingest", database_down)
    assoc = _associate(listener)
    status = assoc.send_c_store(dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1")))
    assoc.release()
    assert status.Status == 0xA700  # out of resources: the SCU sends it again later
    assert status.ErrorComment == "The gateway cannot store now; send it again later."
    assert not Instance.objects.exists()
