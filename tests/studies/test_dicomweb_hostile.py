"""DICOMweb under hostile input: a 4xx naming the problem, never a 500, nothing half-stored."""

import io
import secrets
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from audit.models import AuditEvent
from studies.models import Instance, Study
from tests.conftest import client_for

from .conftest import dicom_copy, ingest, share_with_alice, stored_files


@pytest.fixture
def alice(cast):
    share_with_alice(cast)
    return client_for("alice", "CHL")


@pytest.fixture
def shown(cast, tmp_path):
    """A CHEM study of Xavier that Alice may open."""
    return ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))


def _refused(response, status: int = 400, code: str = "INVALID", names: str = "") -> None:
    """A refusal in the project's error shape, naming what was wrong; no traceback."""
    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == code
    assert names in error["message"]
    assert "Traceback" not in response.content.decode("utf-8", "replace")


# --- QIDO-RS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1e3", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("offset=1e9", "offset"),
        ("offset=-5", "offset"),
        ("offset=1000000001", "offset"),
        ("limit=%00", "limit"),
        ("StudyDate=20241301", "StudyDate"),
        ("StudyDate=20240230-20240301", "StudyDate"),
        ("StudyDate=2024-01-01", "StudyDate"),
        ("StudyDate=--", "StudyDate"),
        ("StudyDate=%FF%FE", "StudyDate"),
        ("StudyInstanceUID=" + "1" * 200, "StudyInstanceUID"),
        ("StudyInstanceUID=1.2.%00.3", "StudyInstanceUID"),
        ("StudyInstanceUID=%C3%28", "StudyInstanceUID"),
        ("PatientID=CHEM%00X1", "PatientID"),
        ("00100020=" + "x" * 2000, "PatientID"),
        ("AccessionNumber=%00", "AccessionNumber"),
        ("PatientName=Doe*", "PatientName"),
        ("patientname=Doe", "patientname"),
        ("00100010=Doe", "00100010"),
        ("PatientID=a&patientid=b", "patientid"),
        ("includefield=%00", "includefield"),
        ("includefield=PatientAge,<script>", "includefield"),
        ("includefield=patientage", "includefield"),  # keywords are case-sensitive
        ("includefield=0010001", "includefield"),
        ("includefield=00400275..", "includefield"),
    ],
)
def test_a_malformed_search_is_refused_naming_the_parameter(alice, shown, query, names):
    _refused(alice.get(f"/dicomweb/studies?{query}"), names=names)


@pytest.mark.parametrize(
    "query",
    [
        "limit=99999999999999999999",  # held to the server's maximum (PS3.18 8.3.4.4.1)
        "offset=1000000000",
        "StudyDate=-",  # a range open at both ends: every date
        "StudyDate=20240101-",
        "PatientID=CHEM-X1&PatientID=CHEM-X1",
        "includefield=all&includefield=00100010,PatientAge",
        "includefield=ffffffff,00400275.00321060,ReferencedSeriesSequence.SeriesInstanceUID",
        "includefield=,,,",
        "ModalitiesInStudy=%FF",  # replaced by U+FFFD: matches nothing
        "_=1700000000&nocache=%00",  # not an attribute: left alone
        "fuzzymatching=maybe",
    ],
)
def test_odd_but_harmless_search_parameters_are_answered(alice, shown, query):
    response = alice.get(f"/dicomweb/studies?{query}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/dicom+json"


# --- WADO-RS paths and Accept --------------------------------------------------------------


def _instance_path(result, suffix: str) -> str:
    return (
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}{suffix}"
    )


@pytest.mark.parametrize(
    "frames",
    ["0", "-1", "1,,x", "99999999999999999999", "1" * 5000, "%00", "1.5", ",,,"],
)
def test_a_malformed_frame_list_is_refused_naming_it(alice, shown, frames):
    _refused(alice.get(_instance_path(shown, f"/frames/{frames}")), names="frames")


def test_empty_items_of_a_frame_list_are_skipped(alice, shown):
    assert alice.get(_instance_path(shown, "/frames/1,,1")).status_code == 200


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "multipart/related; type=application/dicom+xml",
        "application/dicom;q=0",
        "*/*;q=0",
        '*/*;q=nan, multipart/related;q=1e-400;type="application/dicom"',
    ],
)
def test_an_unservable_accept_header_is_not_acceptable(alice, shown, accept):
    _refused(
        alice.get(_instance_path(shown, ""), HTTP_ACCEPT=accept),
        status=406,
        code="NOT_ACCEPTABLE",
        names="Accept",
    )


@pytest.mark.parametrize(
    "accept",
    [
        ";;;,,,",
        "*/*;;q=1;;",
        'multipart/related; type="application/dicom, */*"',
        "x" * 10_000 + ", */*",
        "*/*; q=0.5; q=0",
    ],
)
def test_an_odd_accept_header_never_breaks_a_retrieve(alice, shown, accept):
    response = alice.get(_instance_path(shown, ""), HTTP_ACCEPT=accept)
    assert response.status_code in (200, 406)
    if response.status_code == 406:
        assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(
    "path",
    [
        "/dicomweb/studies/%00",
        "/dicomweb/studies/1.2.%FF/metadata",
        "/dicomweb/studies/" + "1." * 100 + "1",
        "/dicomweb/studies/1.2.3/series/%C3%28/instances",
        "/dicomweb/studies/1.2.3/series/4.5/instances/" + "9" * 200 + "/frames/1",
    ],
)
def test_a_malformed_uid_in_a_path_is_not_found(alice, shown, path):
    _refused(alice.get(path), status=404, code="NOT_FOUND")


# --- STOW-RS -------------------------------------------------------------------------------

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={b}'


@pytest.fixture
def chl_pacs(cast):
    return client_for("chl-pacs", "CHL")


def _post(client, body: bytes, content_type: str, **extra):
    # The test client leaves Content-Length out for an empty body: a client sends 0.
    extra = {"CONTENT_LENGTH": str(len(body)), **extra}
    return client.generic("POST", "/dicomweb/studies", body, content_type=content_type, **extra)


def _nothing_stored(private_storage: Path, settings) -> None:
    assert not Instance.objects.exists()
    assert not Study.objects.exists()
    assert stored_files(private_storage) == []
    assert stored_files(Path(settings.SPOOL_DIR)) == []


@pytest.mark.parametrize(
    ("body", "content_type", "names"),
    [
        (b"", STOW_TYPE, "No opening boundary"),
        (b"--b\r\n\r\nno end", STOW_TYPE, "closing boundary"),
        (b"--b\r\nContent-Type: application/dicom\r\n", STOW_TYPE, "part headers"),
        (b"--b\r\nno colon\r\n\r\nx\r\n--b--\r\n", STOW_TYPE, "part header"),
        (b"--bX\r\n\r\nx\r\n--b--\r\n", STOW_TYPE, "boundary"),
        (b"anything", "multipart/related; type=application/dicom", "boundary"),
        (b"anything", "multipart/related; type=application/dicom; boundary=", "boundary"),
        (
            b"anything",
            "multipart/related; type=application/dicom; boundary=" + "x" * 71,
            "boundary",
        ),
        (b"anything", "multipart/related; boundary*=utf-8''%C3%A9", "boundary"),
        # (A parameter in a charset Python does not know never reaches a view: Django cannot
        # build the request, and anim_gateway.wsgi refuses it first.)
    ],
)
def test_a_malformed_stow_body_is_refused_and_nothing_is_stored(
    chl_pacs, private_storage, settings, body, content_type, names
):
    response = _post(chl_pacs, body, content_type.format(b="b"))
    _refused(response, names=names)
    _nothing_stored(private_storage, settings)


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "application/dicom",
        "multipart/form-data; boundary=b",
        'multipart/related; type="application/json"; boundary=b',
        "multipart/related; type=; boundary=b",
        "multipart/related;;;; type",
        "\x00multipart/related; boundary=b",
    ],
)
def test_another_media_type_is_unsupported(chl_pacs, private_storage, settings, content_type):
    response = _post(chl_pacs, b"--b\r\n\r\nx\r\n--b--\r\n", content_type)
    _refused(response, status=415, code="UNSUPPORTED_MEDIA_TYPE", names="Content-Type")
    _nothing_stored(private_storage, settings)


@pytest.mark.parametrize(
    ("headers", "data"),
    [
        ("", b"DICM" * 100),  # no headers: application/octet-stream
        ("Content-Type: application/json\r\n", b'{"00100010": {"vr": "PN"}}'),
        ("Content-Type: application/dicom\r\n", b'{"00100010": {"vr": "PN"}}'),
        ("Content-Type: application/dicom\r\n", b""),
        ("Content-Type: application/dicom\r\n", b"\x00" * 128 + b"DICM" + b"\xff" * 64),
        (
            "Content-Type: multipart/related; boundary=inner\r\n",
            b"--inner\r\nContent-Type: application/dicom\r\n\r\nx\r\n--inner--",
        ),
        ("Content-Type: application/dicom; transfer-syntax=\x00\r\n", b"x"),
    ],
)
def test_a_part_that_is_not_dicom_is_a_failure_of_the_store(
    chl_pacs, private_storage, settings, headers, data
):
    body = f"--b\r\n{headers}\r\n".encode() + data + b"\r\n--b--\r\n"
    response = _post(chl_pacs, body, STOW_TYPE.format(b="b"))
    assert response.status_code == 409, response.content[:300]
    failed = response.json()["00081198"]["Value"]
    assert len(failed) == 1
    assert failed[0]["00091001"]["Value"][0], "the failure says why"
    _nothing_stored(private_storage, settings)


class _CutShort:
    """A request body whose connection closes (reset, or at its end) after ``data``."""

    def __init__(self, data: bytes, error: Exception | None) -> None:
        self._data = io.BytesIO(data)
        self._error = error

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        if not chunk and self._error is not None:
            raise self._error
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self._data.readline(size)


def _first_half_of_a_stow(tmp_path) -> tuple[bytes, str]:
    data = dicom_copy(tmp_path).read_bytes()
    boundary = secrets.token_hex(8)
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    return body[: len(body) // 2], STOW_TYPE.format(b=boundary)


@pytest.mark.parametrize(
    "error",
    [None, ConnectionResetError(104, "Connection reset by peer"), TimeoutError("timed out")],
    ids=["closed", "reset", "timed out"],
)
def test_a_body_shorter_than_its_length_is_refused_and_nothing_is_stored(
    chl_pacs, private_storage, settings, tmp_path, error
):
    _refused_half_of_a_stow(chl_pacs, tmp_path, error, chunked=False)
    _nothing_stored(private_storage, settings)


def _refused_half_of_a_stow(client, tmp_path, error: Exception | None, *, chunked: bool) -> None:
    """The first half of a STOW-RS body, then ``error`` from the server's reader: a 400
    that names the body. Chunked, the server de-chunks it and there is no length."""
    half, content_type = _first_half_of_a_stow(tmp_path)
    environ = {"wsgi.input": _CutShort(half, error)}
    if chunked:
        environ.update(CONTENT_LENGTH="", **{"wsgi.input_terminated": True})
    else:
        environ.update(CONTENT_LENGTH=str(2 * len(half)))
    _refused(_post(client, b"", content_type, **environ), names="body")


def _gunicorn_error(name: str) -> Exception:
    from gunicorn.http import errors

    return getattr(errors, name)(b"zz")  # each takes what it was given, and keeps it


@pytest.mark.parametrize(
    "error",
    [
        "NoMoreData",
        "InvalidChunkSize",
        "ChunkMissingTerminator",
        "InvalidChunkExtension",
        "InvalidHeader",
    ],
)
def test_a_chunked_body_cut_or_malformed_is_refused_and_nothing_is_stored(
    chl_pacs, private_storage, settings, tmp_path, error
):
    # gunicorn de-chunks the body (no Content-Length): it raises NoMoreData when the
    # connection closes inside a chunk, and a ParseException for a chunk size that is not
    # hexadecimal, a chunk without its CRLF, a bad extension or a bad trailer.
    _refused_half_of_a_stow(chl_pacs, tmp_path, _gunicorn_error(error), chunked=True)
    _nothing_stored(private_storage, settings)


def test_a_store_is_refused_before_its_body_is_read_when_the_length_is_not_a_number(
    chl_pacs, private_storage, settings
):
    response = _post(chl_pacs, b"--b--", STOW_TYPE.format(b="b"), CONTENT_LENGTH="-1")
    _refused(response, status=411, code="LENGTH_REQUIRED", names="Content-Length")
    _nothing_stored(private_storage, settings)


# --- the gate ------------------------------------------------------------------------------


def test_a_malformed_path_answers_like_an_unknown_study_and_is_audited_as_one(alice, shown):
    unknown = alice.get(f"/dicomweb/studies/{generate_uid()}/metadata")
    malformed = alice.get("/dicomweb/studies/1.2.%00/metadata")
    assert unknown.status_code == malformed.status_code == 404
    assert unknown.json() == malformed.json()
    reasons = AuditEvent.objects.filter(outcome="deny").values_list("reason_code", flat=True)
    assert set(reasons) == {"NOT_FOUND"}
