"""The quick header read gives what pydicom's reader gives, or leaves the file to it."""

import random
import struct
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement

from studies import dicom
from studies.dicom import InvalidDicom, read_header
from studies.part10 import read_plain
from tests.studies.conftest import pydicom_file, pydicom_files
from tests.studies.part10_files import element, part10

IMPLICIT_LITTLE = b"1.2.840.10008.1.2\0"


# Listed once: every listing asks the network for pydicom's extra files first (offline here).
TEST_FILES = [Path(p) for p in pydicom_files()]


def outcome(path: Path, *, quick: bool, monkeypatch) -> tuple[str, object]:
    """read_header's result, or its refusal, with or without the quick read."""
    with monkeypatch.context() as patch:
        if not quick:
            patch.setattr(dicom, "read_plain", lambda path, **_: None)
        try:
            return "stored", read_header(path)
        except InvalidDicom as exc:
            return "refused", str(exc)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_every_pydicom_file_is_read_as_pydicom_reads_it(path, monkeypatch):
    assert outcome(path, quick=True, monkeypatch=monkeypatch) == outcome(
        path, quick=False, monkeypatch=monkeypatch
    )


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # explicit VR little endian
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "JPEG2000.dcm",  # encapsulated pixel data
        "waveform_ecg.dcm",  # sequences of undefined length
        "reportsi.dcm",  # a structured report, nested sequences
    ],
)
def test_plain_files_give_the_dataset_pydicom_gives(name):
    path = pydicom_file(name)
    quick = read_plain(path)
    assert quick is not None
    ds, syntax, pixel = quick
    expected = dcmread(path, stop_before_pixels=True)
    assert ds == expected
    assert ds.file_meta == expected.file_meta
    assert str(syntax) == expected.file_meta.TransferSyntaxUID
    assert (pixel is None) == ("PixelData" not in dcmread(path))


@pytest.mark.parametrize(
    "name",
    [
        "image_dfl.dcm",  # deflated: pydicom inflates it
        "no_meta.dcm",  # no preamble, no file meta: pydicom refuses it
        "meta_missing_tsyntax.dcm",
        "UN_sequence.dcm",  # UN of undefined length, read by pydicom as a sequence
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
    ],
)
def test_anything_unusual_is_left_to_pydicom(name):
    path = pydicom_file(name)
    assert read_plain(path) is None


def _mutants(path: Path, rng: random.Random, count: int) -> list[bytes]:
    """Truncated, altered and shortened copies of a file: what a broken sender sends."""
    data = path.read_bytes()
    mutants = []
    for index in range(count):
        copy = bytearray(data)
        at = rng.randrange(132, min(len(copy), 4096))
        if index % 3 == 0:
            del copy[rng.randrange(132, len(copy)) :]
        elif index % 3 == 1:
            for _ in range(3):
                copy[rng.randrange(132, min(len(copy), 4096))] = rng.randrange(256)
        else:
            del copy[at : at + rng.randrange(1, 9)]
        mutants.append(bytes(copy))
    return mutants


PART10_FILES = [p for p in TEST_FILES if p.read_bytes()[128:132] == b"DICM"]


@pytest.mark.parametrize("path", PART10_FILES, ids=lambda p: p.name)
def test_damaged_files_are_refused_or_read_as_pydicom_reads_them(path, tmp_path, monkeypatch):
    rng = random.Random(path.name)  # the same mutants on every run
    for number, data in enumerate(_mutants(path, rng, 12)):
        mutant = tmp_path / f"mutant{number}.dcm"
        mutant.write_bytes(data)
        quick = outcome(mutant, quick=True, monkeypatch=monkeypatch)
        assert quick == outcome(mutant, quick=False, monkeypatch=monkeypatch), number


def _sequence_of_undefined_length(tag: int, item: bytes) -> bytes:
    group, number = tag >> 16, tag & 0xFFFF
    return (
        struct.pack("<HH", group, number)
        + b"SQ\0\0"
        + struct.pack("<L", 0xFFFFFFFF)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )


STUDY = element(0x0020000D, b"UI", b"1.2.3\0") + element(0x0020000E, b"UI", b"1.2.3.5\0")


@pytest.mark.parametrize(
    ("dataset", "quick"),
    [
        # A sequence of undefined length, before the study's UIDs: read quickly.
        (
            _sequence_of_undefined_length(0x00081115, element(0x00081150, b"UI", b"1.2\0"))
            + element(0x00100020, b"LO", b"PID1")
            + STUDY,
            True,
        ),
        # The same tag twice: pydicom keeps the last one.
        (
            element(0x00100020, b"LO", b"PID1") + STUDY + element(0x00100020, b"LO", b"PID2"),
            True,
        ),
        # An empty number (pydicom's empty raw value is None, not b"").
        (element(0x00280010, b"US", b"") + STUDY, True),
        # Elements after the pixel data are walked, not read; Float Pixel Data stops the
        # reading as Pixel Data does.
        (STUDY + element(0x7FE00010, b"OB", b"\0\0") + element(0xFFFCFFFC, b"OB", b"\0\0"), True),
        (STUDY + element(0x7FE00008, b"OF", b"\0\0\x80?"), True),
        # A command set element, a file meta element in the dataset, an unknown VR.
        (element(0x00000002, b"UI", b"1.2\0") + STUDY, False),
        (STUDY + element(0x00020016, b"AE", b"AE\0\0"), False),
        (STUDY + element(0x00091010, b"QQ", b"ab"), False),
    ],
)
def test_crafted_files_are_read_as_pydicom_reads_them(tmp_path, monkeypatch, dataset, quick):
    path = part10(tmp_path / "crafted.dcm", dataset)
    read = read_plain(path)
    assert (read is not None) is quick
    if quick:
        assert raw_elements(read[0]) == raw_elements(dcmread(path, stop_before_pixels=True))
    expected = outcome(path, quick=False, monkeypatch=monkeypatch)
    assert outcome(path, quick=True, monkeypatch=monkeypatch) == expected


def raw_elements(ds) -> dict:
    """The elements as read, before any conversion; a sequence (which pydicom parses when
    its length is undefined) as its items."""
    found = {}
    for tag in list(ds.keys()):
        read = ds.get_item(tag)
        plain = isinstance(read, RawDataElement) and read.VR != "SQ"
        found[tag] = read[1:4] if plain else ds[tag].value
    return found


def _implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def test_an_implicit_file_that_starts_as_explicit_is_left_to_pydicom(tmp_path, monkeypatch):
    """pydicom reads it as explicit VR after a look at its first element (and warns): here
    a first value 16,705 bytes long, whose length reads as the VR "AA"."""
    dataset = (
        _implicit(0x00104000, b"x" * 0x4141)
        + _implicit(0x0020000D, b"1.2.3\0")
        + _implicit(0x0020000E, b"1.2.3.5\0")
    )
    path = part10(tmp_path / "switched.dcm", dataset, syntax=IMPLICIT_LITTLE)
    assert read_plain(path) is None
    assert outcome(path, quick=True, monkeypatch=monkeypatch) == outcome(
        path, quick=False, monkeypatch=monkeypatch
    )


def test_a_sequence_of_undefined_length_is_kept_as_its_items(tmp_path):
    """Its bytes up to the delimiter: the same sequence with a defined length, which
    header_json encodes straight from them."""
    item = element(0x00081150, b"UI", b"1.2\0")
    path = part10(tmp_path / "sq.dcm", _sequence_of_undefined_length(0x00081115, item) + STUDY)
    raw = read_plain(path)[0].get_item(0x00081115)
    items = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + item
    assert raw.value == items + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    assert raw.VR == "SQ"
