"""DICOM_MAX_HEADER_ELEMENTS: a header of more elements is refused at every door, counted
before its elements are parsed, as pydicom would count them; nothing of it is kept."""

import json
import struct
import warnings
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pydicom import dcmread
from pydicom.dataset import Dataset

from audit.models import AuditEvent
from studies.dicom import InvalidDicom, read_header
from studies.models import Instance
from studies.part10 import TooManyElements
from tests.conftest import client_for

from .conftest import dicom_copy, pydicom_files, stored_files
from .part10_files import element, part10
from .test_dicomweb import stow
from .test_listener import _associate, listener  # noqa: F401 (a fixture)

IMPLICIT_LITTLE = b"1.2.840.10008.1.2\0"
DEFLATED = b"1.2.840.10008.1.2.1.99\0"
STUDY = element(0x0020000D, b"UI", b"1.2.3\0") + element(0x0020000E, b"UI", b"1.2.3.5\0")
ITEM, ITEM_END, SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)


def count_elements(path: Path) -> int:
    """The elements and sequence items of a file as pydicom reads them, file meta included
    (its sequences parsed, UN ones too): what DICOM_MAX_HEADER_ELEMENTS bounds."""

    def count(ds: Dataset) -> int:
        total = 0
        for tag in list(ds.keys()):
            total += 1
            try:
                elem = ds[tag]
            except NotImplementedError:
                continue  # a VR pydicom does not know: one element, left raw
            if elem.VR == "SQ":
                total += sum(1 + count(item) for item in elem.value)
        return total

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path)
        return len(ds.file_meta) + count(ds)


def with_private_elements(tmp_path: Path, count: int, name: str = "CT_small.dcm", **kw) -> Path:
    """A copy of a pydicom test file with ``count`` private elements more (and their
    private creators), as a sender could add them."""
    path = dicom_copy(tmp_path, name, **kw)
    ds = dcmread(path)
    for n in range(count):
        block = ds.private_block(0x0029, f"ACME {n // 256}", create=True)
        block.add_new(n % 256, "LO", "ab")
    ds.save_as(path, enforce_file_format=True)
    return path


def _tag(tag: int, *, little: bool = True) -> bytes:
    return struct.pack("<HH" if little else ">HH", tag >> 16, tag & 0xFFFF)


def _item(content: bytes, *, defined: bool) -> bytes:
    if defined:
        return struct.pack("<HHL", *ITEM, len(content)) + content
    return struct.pack("<HHL", *ITEM, 0xFFFFFFFF) + content + struct.pack("<HHL", *ITEM_END, 0)


def explicit_sequence(tag: int, items: list[bytes], *, defined: bool, vr: bytes = b"SQ") -> bytes:
    body = b"".join(_item(i, defined=defined) for i in items)
    if defined:
        return _tag(tag) + vr + b"\0\0" + struct.pack("<L", len(body)) + body
    end = struct.pack("<HHL", *SEQUENCE_END, 0)
    return _tag(tag) + vr + b"\0\0" + struct.pack("<L", 0xFFFFFFFF) + body + end


def implicit(tag: int, value: bytes) -> bytes:
    return _tag(tag) + struct.pack("<L", len(value)) + value


def implicit_sequence(tag: int, items: list[bytes]) -> bytes:
    return implicit(tag, b"".join(_item(i, defined=True) for i in items))


def referenced(n: int, *, explicit: bool = True) -> bytes:
    """One item of Referenced Image Sequence: a class and an instance UID."""
    uid = f"1.2.3.{n}".encode()
    uid += b"\0" * (len(uid) % 2)
    if explicit:
        return element(0x00081150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0") + element(
            0x00081155, b"UI", uid
        )
    return implicit(0x00081150, b"1.2.840.10008.5.1.4.1.1.2\0") + implicit(0x00081155, uid)


def _shapes(tmp_path: Path) -> dict[str, Path]:
    """Files whose elements lie where each reading finds them."""
    items = [referenced(n) for n in range(40)]
    implicit_uids = (
        implicit(0x00080016, b"1.2.840.10008.5.1.4.1.1.7\0")
        + implicit(0x00080018, b"1.2.3.4\0")
        + implicit(0x0020000D, b"1.2.3\0")
        + implicit(0x0020000E, b"1.2.3.5\0")
    )
    nested = [explicit_sequence(0x00081140, items[:5], defined=True)] * 8
    return {
        # Read by the quick walk: top-level elements, a sequence of undefined length.
        "top level": with_private_elements(tmp_path, 300),
        "undefined length": part10(
            tmp_path / "undefined.dcm",
            explicit_sequence(0x00081140, items, defined=False) + STUDY,
        ),
        # Stepped over by the walk, counted when they could pass the limit.
        "defined length": part10(
            tmp_path / "defined.dcm", explicit_sequence(0x00081140, items, defined=True) + STUDY
        ),
        "nested, defined length": part10(
            tmp_path / "nested.dcm",
            explicit_sequence(0x00081111, nested, defined=True) + STUDY,
        ),
        "UN of defined length": part10(
            tmp_path / "un.dcm",
            explicit_sequence(
                0x00081140,
                [referenced(n, explicit=False) for n in range(40)],
                defined=True,
                vr=b"UN",
            )
            + STUDY,
        ),
        "implicit VR": part10(
            tmp_path / "implicit.dcm",
            implicit_uids
            + implicit_sequence(0x00081140, [referenced(n, explicit=False) for n in range(40)]),
            syntax=IMPLICIT_LITTLE,
        ),
        # Left to pydicom (an unknown VR): counted before it parses.
        "left to pydicom": part10(
            tmp_path / "unusual.dcm",
            element(0x00091010, b"QQ", b"ab")
            + explicit_sequence(0x00081140, items, defined=False)
            + STUDY,
        ),
        "deflated": deflated(tmp_path / "deflated.dcm", with_private_elements(tmp_path, 300)),
    }


def deflated(path: Path, source: Path) -> Path:
    """``source``'s data set deflated (PS3.5 A.5)."""
    ds = dcmread(source)
    ds.file_meta.TransferSyntaxUID = DEFLATED.rstrip(b"\0").decode()
    ds.save_as(path, enforce_file_format=True)
    return path


SHAPES = [
    "top level",
    "undefined length",
    "defined length",
    "nested, defined length",
    "UN of defined length",
    "implicit VR",
    "left to pydicom",
    "deflated",
]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_header_at_the_limit_is_read_and_one_element_more_is_refused(tmp_path, settings, shape):
    path = _shapes(tmp_path)[shape]
    elements = count_elements(path)
    settings.DICOM_MAX_HEADER_ELEMENTS = elements
    read_header(path)
    settings.DICOM_MAX_HEADER_ELEMENTS = elements - 1
    with pytest.raises(TooManyElements, match=f"more than {elements - 1} data elements"):
        read_header(path)


def readable(path: Path) -> bool:
    """Whether the gateway reads the file at all (the caps aside, with their defaults)."""
    try:
        read_header(path)
    except InvalidDicom:
        return False
    return True


@pytest.mark.parametrize("path", pydicom_files(), ids=lambda p: Path(p).name)
def test_every_pydicom_file_is_counted_as_pydicom_reads_it(path, settings):
    """The walk's count is pydicom's, exactly, for every file the gateway reads."""
    path = Path(path)
    if not readable(path):
        pytest.skip("refused for another reason")
    elements = count_elements(path)
    settings.DICOM_MAX_HEADER_ELEMENTS = elements
    read_header(path)
    settings.DICOM_MAX_HEADER_ELEMENTS = elements - 1
    with pytest.raises(TooManyElements):
        read_header(path)


def test_the_fragments_of_encapsulated_pixel_data_are_not_elements(tmp_path, settings):
    fragments = b"".join(_item(b"\xff\xd8\xff\xd9", defined=True) for _ in range(500))
    pixel = (
        _tag(0x7FE00010)
        + b"OB\0\0"
        + struct.pack("<L", 0xFFFFFFFF)
        + _item(b"", defined=True)  # the basic offset table
        + fragments
        + struct.pack("<HHL", *SEQUENCE_END, 0)
    )
    jpeg = b"1.2.840.10008.1.2.4.50\0"
    meta_and_uids = element(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0") + element(
        0x00080018, b"UI", b"1.2.3.4\0"
    )
    path = part10(tmp_path / "frames.dcm", meta_and_uids + STUDY + pixel, syntax=jpeg)
    settings.DICOM_MAX_HEADER_ELEMENTS = count_elements(path)  # Pixel Data is one element
    read_header(path)


def test_a_value_that_cannot_be_read_as_items_counts_as_many_as_it_could_hold(tmp_path, settings):
    """A private value that starts like a sequence and then is not one: pydicom may read
    some of it as elements, so its bytes count as the most elements they could hold."""
    garbage = bytes(range(256)) * 4
    value = struct.pack("<HHL", *ITEM, len(garbage)) + garbage
    unknown = _tag(0x00091001) + b"UN\0\0" + struct.pack("<L", len(value)) + value
    path = part10(tmp_path / "garbage.dcm", element(0x00090010, b"LO", b"ACME") + unknown + STUDY)
    settings.DICOM_MAX_HEADER_ELEMENTS = 100  # 1 KiB holds up to 128
    with pytest.raises(TooManyElements):
        read_header(path)


def test_a_deflated_data_set_inflating_beyond_the_largest_object_is_refused(tmp_path, settings):
    source = dicom_copy(tmp_path)
    ds = dcmread(source)
    ds.add_new(0x00091010, "LO", "ACME")
    ds.add_new(0x00091001, "OB", bytes(200_000))  # deflates to a few hundred bytes
    ds.save_as(source, enforce_file_format=True)
    path = deflated(tmp_path / "bomb.dcm", source)
    assert path.stat().st_size < 100_000
    settings.STOW_MAX_BYTES = 100_000
    with pytest.raises(InvalidDicom, match="inflates to more than 100000 bytes"):
        read_header(path)


def test_a_deflate_stream_pydicom_cannot_inflate_gets_pydicoms_refusal(tmp_path):
    path = deflated(tmp_path / "deflated.dcm", dicom_copy(tmp_path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidDicom, match="Unreadable DICOM header"):
        read_header(path)


# --- The doors ---------------------------------------------------------------------------


def _refusal_audited(code: str, channel: str) -> AuditEvent:
    event = AuditEvent.objects.get(reason_code="TOO_MANY_ELEMENTS")
    assert (event.action, event.outcome, event.acting_institution) == ("study.store", "deny", code)
    assert event.detail["channel"] == channel
    return event


def test_stow_rs_refuses_a_header_over_the_limit_and_stores_one_at_it(
    cast, tmp_path, settings, private_storage
):
    path = with_private_elements(tmp_path, 300, patient_id="CHL-Y1")
    elements = count_elements(path)
    client = client_for("chl-pacs", "CHL")
    settings.DICOM_MAX_HEADER_ELEMENTS = elements - 1
    response = stow(client, [path.read_bytes()])
    assert response.status_code == 409
    (failed,) = json.loads(response.content)["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert failed["00091001"]["Value"] == [
        f"The data set holds more than {elements - 1} data elements, the most this gateway reads."
    ]
    assert not Instance.objects.exists()
    assert stored_files(private_storage) == []
    assert stored_files(Path(settings.SPOOL_DIR)) == []
    event = _refusal_audited("CHL", "api")
    assert event.detail["limit"] == elements - 1
    settings.DICOM_MAX_HEADER_ELEMENTS = elements
    assert stow(client, [path.read_bytes()]).status_code == 200
    assert Instance.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_c_store_refuses_a_header_over_the_limit(listener, tmp_path, settings, private_storage):  # noqa: F811
    settings.DICOM_MAX_HEADER_ELEMENTS = 400  # CT_small holds 270 or so, with its file meta
    crowded = dcmread(with_private_elements(tmp_path, 300))
    plain = dcmread(dicom_copy(tmp_path))
    assoc = _associate(listener)
    refused = assoc.send_c_store(crowded)
    stored = assoc.send_c_store(plain)
    assoc.release()
    assert refused.Status == 0xC000
    assert "more than 400 data elements" in refused.ErrorComment
    assert stored.Status == 0x0000
    assert [i.sop_instance_uid for i in Instance.objects.all()] == [plain.SOPInstanceUID]
    assert len(stored_files(private_storage)) == 1
    assert stored_files(Path(settings.SPOOL_DIR)) == []
    _refusal_audited("CHEM", "dimse")


def test_import_dicom_rejects_a_header_over_the_limit(cast, tmp_path, settings, capsys):
    tree = tmp_path / "tree"
    tree.mkdir()
    crowded = with_private_elements(tree, 300)
    elements = count_elements(crowded)
    settings.DICOM_MAX_HEADER_ELEMENTS = elements - 1
    with pytest.raises(CommandError, match="1 not imported"):
        call_command("import_dicom", str(tree), "--institution", "CHEM", "--no-progress")
    out = capsys.readouterr().out
    assert "1 file(s): 0 stored, 0 duplicate, 1 rejected" in out
    assert f"{crowded.name}: The data set holds more than {elements - 1} data elements" in out
    assert not Instance.objects.exists()
    _refusal_audited("CHEM", "cli")
    settings.DICOM_MAX_HEADER_ELEMENTS = elements
    call_command("import_dicom", str(tree), "--institution", "CHEM", "--no-progress")
    assert "1 file(s): 1 stored" in capsys.readouterr().out
