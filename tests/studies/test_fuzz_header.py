"""Damaged pydicom files: read_header gives what pydicom reads, or refuses them with a reason;
never another exception, and never a header its own reading of pydicom's would not give."""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydicom import dcmread

from studies import dicom
from studies.dicom import InvalidDicom, read_frame, read_header
from tests.studies.fuzz_dicom import damaged_file, fuzz_settings, part10_files
from tests.studies.test_header_cap import count_elements
from tests.studies.test_header_json import OPTIONS, element_by_element

FUZZ = fuzz_settings(60)
FILES = part10_files()


def outcome(path: Path, *, quick: bool) -> tuple[str, object]:
    """read_header's result or its refusal's reason, with or without the quick read; any
    other exception propagates (and fails the test)."""
    original = dicom.read_plain
    if not quick:
        dicom.read_plain = lambda path, **_: None
    try:
        return "stored", read_header(path)
    except InvalidDicom as exc:
        return "refused", str(exc)
    finally:
        dicom.read_plain = original


def written(data: bytes, folder: Path) -> Path:
    path = folder / "mutant.dcm"
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(settings):
    with tempfile.TemporaryDirectory() as name:
        settings.SPOOL_DIR = Path(name) / "spool"
        yield Path(name)


@FUZZ
@given(mutant=damaged_file(FILES))
def test_a_damaged_file_is_read_as_pydicom_reads_it_or_refused(folder, mutant):
    path = written(mutant[1], folder)
    quick = outcome(path, quick=True)
    event(quick[0] if quick[0] == "stored" else quick[1][:40])
    assert quick == outcome(path, quick=False)
    if quick[0] == "refused":
        assert quick[1]
        return
    header = quick[1]
    expected = dcmread(path, stop_before_pixels=True, force=False)
    assert header.sop_instance_uid == expected.SOPInstanceUID
    assert header.study_uid == expected.StudyInstanceUID
    if header.pixel_data_offset is not None:
        assert header.pixel_data_offset + header.pixel_data_length <= path.stat().st_size
    json.dumps(header.metadata, allow_nan=False)  # storable in a JSON column
    assert "\\u0000" not in json.dumps(header.metadata)


@FUZZ
@given(mutant=damaged_file(FILES))
def test_a_damaged_files_header_json_is_pydicoms(folder, mutant):
    path = written(mutant[1], folder)
    try:
        ds = dcmread(path, stop_before_pixels=True, force=False)
        expected = element_by_element(ds)
    except Exception:
        return  # pydicom cannot read it: read_header refuses it (the test above)
    from studies.header_json import header_json, pydicom_element_json

    ds = dcmread(path, stop_before_pixels=True, force=False)
    try:
        got = header_json(ds, encode=lambda data, tag: pydicom_element_json(data, tag, **OPTIONS))
    except RecursionError:
        return  # refused by to_json: nested too deeply
    assert got == expected


@FUZZ
@given(mutant=damaged_file([p for p in FILES if "PixelData" in dcmread(p)]))
def test_a_damaged_files_frames_are_read_or_refused(folder, mutant):
    path = written(mutant[1], folder)
    kind, header = outcome(path, quick=True)
    if kind == "refused" or header.pixel_data_offset is None:
        return
    ds = dcmread(path, stop_before_pixels=True)
    rows, columns = ds.get("Rows") or 0, ds.get("Columns") or 0
    samples, bits = ds.get("SamplesPerPixel") or 1, ds.get("BitsAllocated") or 8
    frame_size = max(1, rows * columns * samples * bits // 8)
    with path.open("rb") as fp:
        for index in range(min(header.number_of_frames, 3)):
            kind, frame = frame_or_refusal(fp, header, index=index, frame_size=frame_size)
            assert frame if kind == "refused" else isinstance(frame, bytes)


def frame_or_refusal(fp, header, *, index: int, frame_size: int) -> tuple[str, object]:
    """read_frame's frame, or its refusal's reason; any other exception propagates."""
    try:
        return "read", read_frame(
            fp,
            transfer_syntax_uid=header.transfer_syntax_uid,
            offset=header.pixel_data_offset,
            index=index,
            number_of_frames=header.number_of_frames,
            frame_size=frame_size,
        )
    except InvalidDicom as exc:
        return "refused", str(exc)


@FUZZ
@given(mutant=damaged_file(FILES), limit=st.integers(5, 150))
def test_a_damaged_file_within_the_element_limit_holds_no_more_than_it(
    folder, settings, mutant, limit
):
    """DICOM_MAX_HEADER_ELEMENTS: a file read_header accepts holds no more elements and
    items than the limit, as pydicom counts them (where pydicom can read it whole)."""
    settings.DICOM_MAX_HEADER_ELEMENTS = limit
    path = written(mutant[1], folder)
    kind, _ = outcome(path, quick=True)
    event(kind)
    if kind == "refused":
        return
    try:
        counted = count_elements(path)
    except Exception:
        return  # pydicom cannot read it whole (its pixel data, say)
    assert counted <= limit
