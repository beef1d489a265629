"""DICOM_MAX_PIXEL_FRAGMENTS: encapsulated Pixel Data of more fragments is refused at every
door, counted by the walk before anything is parsed; nothing of it is kept."""

import json
import struct
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_fragments, get_frame
from pynetdicom import AE

from audit.models import AuditEvent
from studies.dicom import read_header
from studies.models import Instance
from studies.part10 import TooManyFragments
from tests.conftest import client_for

from .conftest import dicom_copy, pydicom_files, stored_files
from .part10_files import element, part10
from .test_dicomweb import stow
from .test_header_cap import count_elements, readable
from .test_listener import listener  # noqa: F401 (a fixture)

ITEM, SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
RLE = "MR_small_RLE.dcm"  # an MR image, RLE Lossless: one frame, one fragment


def fragmented(folder: Path, fragments: int, name: str = RLE, **kw) -> Path:
    """A copy of a pydicom test file whose one frame is split into ``fragments`` fragments
    (after a Basic Offset Table), as some encoders split a frame."""
    path = dicom_copy(folder, name, **kw)
    ds = dcmread(path)
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([frame], fragments_per_frame=fragments)
    ds.save_as(path, enforce_file_format=True)
    return path


def count_fragments(path: Path) -> int:
    """The fragments of the file's encapsulated Pixel Data as pydicom reads them, its Basic
    Offset Table aside."""
    ds = dcmread(path)
    return sum(1 for _ in generate_fragments(ds.PixelData)) - 1


def test_pixel_data_at_the_limit_is_read_and_one_fragment_more_is_refused(tmp_path, settings):
    path = fragmented(tmp_path, 50)
    assert count_fragments(path) == 50
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 50
    assert read_header(path).sop_instance_uid
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 49
    with pytest.raises(TooManyFragments, match="Pixel Data holds more than 49 fragments"):
        read_header(path)


def test_the_basic_offset_table_is_not_a_fragment(tmp_path, settings):
    path = fragmented(tmp_path, 1)
    assert dcmread(path).PixelData[4:8] != b"\0\0\0\0"  # a Basic Offset Table of one offset
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 1
    read_header(path)


def _encapsulated(path: Path) -> bool:
    try:
        ds = dcmread(path, stop_before_pixels=True)
        return ds.file_meta.TransferSyntaxUID.is_encapsulated
    except Exception:
        return False


@pytest.mark.parametrize(
    "path", [p for p in pydicom_files() if _encapsulated(Path(p))], ids=lambda p: Path(p).name
)
def test_every_pydicom_file_is_counted_as_pydicom_reads_its_fragments(path, settings):
    path = Path(path)
    if not readable(path):
        pytest.skip("refused for another reason")
    fragments = count_fragments(path)
    settings.DICOM_MAX_PIXEL_FRAGMENTS = fragments
    read_header(path)
    settings.DICOM_MAX_PIXEL_FRAGMENTS = fragments - 1
    with pytest.raises(TooManyFragments):
        read_header(path)


def _pixel_item(fragments: int) -> bytes:
    """An item holding an encapsulated Pixel Data (as an Icon Image Sequence's does) of
    ``fragments`` fragments of 4 bytes."""
    return (
        struct.pack("<HH", 0x7FE0, 0x0010)
        + b"OB\0\0"
        + struct.pack("<L", 0xFFFFFFFF)
        + struct.pack("<HHL", *ITEM, 0)
        + (struct.pack("<HHL", *ITEM, 4) + b"\xff\xd8\xff\xd9") * fragments
        + struct.pack("<HHL", *SEQUENCE_END, 0)
    )


def test_fragments_in_a_sequence_of_defined_length_are_counted(tmp_path, settings):
    """A sequence the walk steps over (its length defined) is counted when it could hold
    more than the header limit allows; its pixel data's fragments are counted then too."""
    item = _pixel_item(600)
    icons = (
        struct.pack("<HH", 0x0088, 0x0200)
        + b"SQ\0\0"
        + struct.pack("<L", len(item) + 8)
        + struct.pack("<HHL", *ITEM, len(item))
        + item
    )
    study = element(0x0020000D, b"UI", b"1.2.3\0") + element(0x0020000E, b"UI", b"1.2.3.5\0")
    path = part10(tmp_path / "icon.dcm", icons + study)
    settings.DICOM_MAX_HEADER_ELEMENTS = count_elements(path)
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 600
    read_header(path)
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 599
    with pytest.raises(TooManyFragments):
        read_header(path)


# --- The doors ---------------------------------------------------------------------------


def _refusal_audited(code: str, channel: str, limit: int) -> AuditEvent:
    event = AuditEvent.objects.get(reason_code="TOO_MANY_FRAGMENTS")
    assert (event.action, event.outcome, event.acting_institution) == ("study.store", "deny", code)
    assert event.detail["channel"] == channel
    assert event.detail["limit"] == limit
    return event


def test_stow_rs_refuses_pixel_data_over_the_limit_and_stores_it_at_the_limit(
    cast, tmp_path, settings, private_storage
):
    path = fragmented(tmp_path, 40, patient_id="CHL-Y1")
    client = client_for("chl-pacs", "CHL")
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 39
    response = stow(client, [path.read_bytes()])
    assert response.status_code == 409
    (failed,) = json.loads(response.content)["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert failed["00091001"]["Value"] == [
        "The encapsulated Pixel Data holds more than 39 fragments, the most this gateway reads."
    ]
    assert not Instance.objects.exists()
    assert stored_files(private_storage) == []
    assert stored_files(Path(settings.SPOOL_DIR)) == []
    _refusal_audited("CHL", "api", 39)
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 40
    assert stow(client, [path.read_bytes()]).status_code == 200
    assert Instance.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_c_store_refuses_pixel_data_over_the_limit(listener, tmp_path, settings, private_storage):  # noqa: F811
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 40
    crowded = dcmread(fragmented(tmp_path, 41))
    plain = dcmread(fragmented(tmp_path, 40))
    ae = AE(ae_title="CHEM_PACS")
    ae.add_requested_context(crowded.SOPClassUID, crowded.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", listener, ae_title="ANIM_GATEWAY")
    refused = assoc.send_c_store(crowded)
    stored = assoc.send_c_store(plain)
    assoc.release()
    assert refused.Status == 0xC000
    assert "Pixel Data holds more than 40 fragments" in refused.ErrorComment
    assert stored.Status == 0x0000
    assert [i.sop_instance_uid for i in Instance.objects.all()] == [plain.SOPInstanceUID]
    assert len(stored_files(private_storage)) == 1
    assert stored_files(Path(settings.SPOOL_DIR)) == []
    _refusal_audited("CHEM", "dimse", 40)


def test_import_dicom_rejects_pixel_data_over_the_limit(cast, tmp_path, settings, capsys):
    tree = tmp_path / "tree"
    tree.mkdir()
    crowded = fragmented(tree, 30)
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 29
    with pytest.raises(CommandError, match="1 not imported"):
        call_command("import_dicom", str(tree), "--institution", "CHEM", "--no-progress")
    out = capsys.readouterr().out
    assert "1 file(s): 0 stored, 0 duplicate, 1 rejected" in out
    assert f"{crowded.name}: The encapsulated Pixel Data holds more than 29 fragments" in out
    assert not Instance.objects.exists()
    _refusal_audited("CHEM", "cli", 29)
    settings.DICOM_MAX_PIXEL_FRAGMENTS = 30
    call_command("import_dicom", str(tree), "--institution", "CHEM", "--no-progress")
    assert "1 file(s): 1 stored" in capsys.readouterr().out
