"""The header's DICOM JSON is exactly what pydicom's Dataset.to_json_dict gives, except that
an element pydicom cannot encode is dropped where it lies, in a sequence item too (pydicom
drops the whole top-level sequence around it)."""

import contextlib
import json
import struct
import threading
import warnings
from pathlib import Path

import pytest
from pydicom import config, dcmread
from pydicom.data import get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian

from studies import header_json as header_json_module
from studies.dicom import InvalidDicom, read_header
from studies.header_json import header_json, pydicom_element_json
from tests.studies.part10_files import element, part10

OPTIONS = {"bulk_data_threshold": 1024, "bulk_data_element_handler": lambda _elem: ""}


def readable_files() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = sorted(get_testdata_files("*"))
    return [path for path in files if _readable(path)]


def _readable(path: str) -> bool:
    try:
        dcmread(path, stop_before_pixels=True, force=False)
    except Exception:  # not DICOM, or malformed: read_header refuses it before JSON
        return False
    return True


def element_by_element(ds: Dataset) -> dict:
    """pydicom's DICOM JSON of ``ds``, each element its own to_json_dict (strict, as
    to_json_dict(suppress_invalid_tags=True) reads), a sequence's items made the same way:
    an element pydicom cannot encode is dropped alone, at any depth."""
    out = {}
    for tag in list(ds.keys()):
        with contextlib.suppress(Exception), config.strict_reading():
            elem = ds[tag]
            if elem.VR == "SQ":
                value = [element_by_element(item) for item in elem.value]
                out[f"{tag:08X}"] = {"vr": "SQ", "Value": value}
            else:
                out[f"{tag:08X}"] = elem.to_json_dict(**OPTIONS)
    return out


def expected_json(read) -> dict:
    """What the gateway's DICOM JSON of ``read()`` must be: element_by_element, which is
    pydicom's own to_json_dict(suppress_invalid_tags=True) for every element that keeps
    (checked here), and holds besides only the sequences pydicom drops whole."""
    expected = element_by_element(read())
    pydicoms = read().to_json_dict(suppress_invalid_tags=True, **OPTIONS)
    assert {tag: expected.get(tag) for tag in pydicoms} == pydicoms
    assert all(expected[tag]["vr"] == "SQ" for tag in expected.keys() - pydicoms.keys())
    return expected


def both(read) -> tuple[dict, dict]:
    ours = read()
    expected = expected_json(read)
    got = header_json(ours, encode=lambda data, tag: pydicom_element_json(data, tag, **OPTIONS))
    return got, expected


@pytest.mark.parametrize("path", readable_files(), ids=lambda p: Path(p).name)
def test_it_encodes_every_pydicom_file_as_pydicom_does(path):
    got, expected = both(lambda: dcmread(path, stop_before_pixels=True, force=False))
    assert got == expected


@pytest.mark.parametrize("path", readable_files(), ids=lambda p: Path(p).name)
def test_it_encodes_elements_pydicom_converted_already_as_pydicom_does(path):
    def read_and_convert() -> Dataset:
        ds = dcmread(path, stop_before_pixels=True, force=False)
        for tag in list(ds.keys()):
            # What read_header asked for is converted (leniently) already; what pydicom
            # refuses stays raw, as in read_header.
            with contextlib.suppress(Exception):
                ds[tag]
        return ds

    got, expected = both(read_and_convert)
    assert got == expected


def test_it_reads_big_endian_numbers_and_names_as_pydicom_does(tmp_path):
    ds = Dataset()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesNumber = "12"
    ds.SliceThickness = "0.625"
    ds.PatientName = "Doe^Jane=Do^Ja"
    ds.Rows = 512
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    path = tmp_path / "big.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=False)
    got, expected = both(lambda: dcmread(path, force=True))
    assert got == expected
    assert got["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane", "Ideographic": "Do^Ja"}]
    assert got["00280010"] == {"vr": "US", "Value": [512]}
    assert got["00180050"] == {"vr": "DS", "Value": [0.625]}


def _nested_file(tmp_path, depth: int):
    """An explicit VR file whose sequences (of defined length) nest `depth` deep."""
    inner = element(0x00100010, b"PN", b"X\0")
    for _ in range(depth):
        item = struct.pack("<HHL", 0xFFFE, 0xE000, len(inner)) + inner
        inner = element(0x00081115, b"SQ", item)
    dataset = (
        inner
        + element(0x00100020, b"LO", b"PID1")
        + element(0x0020000D, b"UI", b"1.2.3\0")
        + element(0x0020000E, b"UI", b"1.2.3.5\0")
    )
    return part10(tmp_path / f"nested{depth}.dcm", dataset)


@pytest.mark.parametrize("depth", [40, 400, 3000])
def test_sequences_nested_too_deep_are_refused_not_a_server_error(tmp_path, depth):
    with pytest.raises(InvalidDicom, match="nested too deeply"):
        read_header(_nested_file(tmp_path, depth))


def test_sequences_nested_a_few_levels_are_read(tmp_path):
    header = read_header(_nested_file(tmp_path, 5))
    assert header.patient_id == "PID1"


def test_long_values_are_validated_without_being_remembered():
    before = header_json_module._validated_cached.cache_info().currsize
    assert header_json_module._valid("LT", "x" * 10_000)
    assert header_json_module._valid("LO", "short and often repeated")
    assert header_json_module._validated_cached.cache_info().currsize == before + 1


def test_a_strict_section_waits_for_another_threads_to_end():
    """pydicom's reading mode is process-wide: sections toggling it never interleave."""
    inside, release, entered = threading.Event(), threading.Event(), []

    def first():
        with header_json_module._strict_reading():
            inside.set()
            release.wait(5)
            entered.append("first leaves")

    def second():
        with header_json_module._strict_reading():
            entered.append("second enters")

    one = threading.Thread(target=first)
    one.start()
    inside.wait(5)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.2)
    assert entered == []  # the second waits while the first is strict
    release.set()
    one.join(5)
    two.join(5)
    assert entered == ["first leaves", "second enters"]
    assert config.settings.reading_validation_mode == config.IGNORE


def without_bulk_references(value: object) -> object:
    """pydicom's DICOM JSON with every element it referenced as bulk data left out."""
    if isinstance(value, dict):
        return {
            key: without_bulk_references(item)
            for key, item in value.items()
            if not (isinstance(item, dict) and item.get("BulkDataURI") == "")
        }
    if isinstance(value, list):
        return [without_bulk_references(item) for item in value]
    return value


@pytest.mark.parametrize("path", readable_files(), ids=lambda p: Path(p).name)
def test_bulk_data_is_left_out_where_pydicom_would_reference_it(path):
    def read() -> Dataset:
        return dcmread(path, stop_before_pixels=True, force=False)

    expected = expected_json(read)
    got = header_json(
        read(),
        encode=lambda data, tag: pydicom_element_json(data, tag, **OPTIONS),
        bulk_data_threshold=OPTIONS["bulk_data_threshold"],
    )
    assert without_bulk_references(got) == without_bulk_references(expected)
    # Only UN elements, which pydicom may read as their dictionary VR, are left to it.
    assert bulk_reference_vrs(got) <= {"UN"}


def bulk_reference_vrs(value: object) -> set[str]:
    if isinstance(value, dict):
        if value.get("BulkDataURI") == "":
            return {value["vr"]}
        return set().union(*map(bulk_reference_vrs, value.values()))
    if isinstance(value, list):
        return set().union(*map(bulk_reference_vrs, value))
    return set()


def test_a_waveforms_samples_are_left_out_of_its_sequence_items():
    (path,) = [p for p in readable_files() if Path(p).name == "waveform_ecg.dcm"]
    got = header_json(
        dcmread(path, stop_before_pixels=True),
        encode=lambda data, tag: pydicom_element_json(data, tag, **OPTIONS),
        bulk_data_threshold=1024,
    )
    items = got["54000100"]["Value"]  # WaveformSequence
    assert items
    assert all("54001010" not in item for item in items)  # WaveformData
    assert all(item["003A0005"]["Value"] for item in items)  # NumberOfWaveformChannels kept


@pytest.mark.parametrize(
    "name",
    [
        "rtplan.dcm",  # implicit VR little endian
        "liver_expb_1frame.dcm",  # explicit VR big endian, AT values in per-frame items
        "reportsi_with_empty_number_tags.dcm",  # empty IS and DS values in items
    ],
)
def test_raw_sequences_are_encoded_from_their_bytes_as_pydicom_does(name, monkeypatch):
    (path,) = [p for p in readable_files() if Path(p).name == name]
    expected = expected_json(lambda: dcmread(path, stop_before_pixels=True))

    def parsed_by_pydicom(data, tag):
        raise AssertionError(f"sequence {tag:08X} was left to pydicom")

    monkeypatch.setattr(header_json_module, "_converted_sequence", parsed_by_pydicom)
    got = header_json(
        dcmread(path, stop_before_pixels=True),
        encode=lambda data, tag: pydicom_element_json(data, tag, **OPTIONS),
        bulk_data_threshold=OPTIONS["bulk_data_threshold"],
    )
    assert any(value["vr"] == "SQ" for value in got.values())
    assert got == without_bulk_references(expected)


def _item(content: bytes, *, defined: bool) -> bytes:
    if defined:
        return struct.pack("<HHL", 0xFFFE, 0xE000, len(content)) + content
    end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + content + end


def _undefined_sequence(tag: int, items: bytes) -> bytes:
    end = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ\0\0" + b"\xff" * 4 + items + end


def _raw_sequence(value: bytes) -> RawDataElement:
    return RawDataElement(0x00081115, "SQ", len(value), value, 0, False, True, True)


def test_items_and_sequences_of_undefined_length_inside_a_raw_sequence_are_read():
    leaf = (
        element(0x00081150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0")
        + element(0x00209165, b"AT", struct.pack("<HH", 0x0020, 0x9057))
        + element(0x40000020, b"UT", b"line one\r\nline two ")
    )
    nested = _undefined_sequence(0x00081199, _item(leaf, defined=False) * 2)
    value = _item(nested + element(0x00100020, b"LO", b"PID1"), defined=False)
    value += _item(element(0x00100020, b"LO", b"PID2"), defined=True)
    got = header_json_module._sequence_from_bytes(_raw_sequence(value), limit=768, depth=1)
    leaf_json = {
        "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
        "00209165": {"vr": "AT", "Value": ["00209057"]},
        "40000020": {"vr": "UT", "Value": ["line one\r\nline two"]},
    }
    assert got == {
        "vr": "SQ",
        "Value": [
            {
                "00081199": {"vr": "SQ", "Value": [leaf_json, leaf_json]},
                "00100020": {"vr": "LO", "Value": ["PID1"]},
            },
            {"00100020": {"vr": "LO", "Value": ["PID2"]}},
        ],
    }


@pytest.mark.parametrize(
    "value",
    [
        _item(element(0x00100020, b"LO", b"PID1"), defined=True)[:-2],  # item past the end
        struct.pack("<HHL", 0xFFFE, 0xE000, 4) + b"\x10\x00\x20\x00",  # element past the item
        _item(element(0x00100010, b"PN", "Jörg".encode("latin-1")), defined=True),
        _item(element(0x7FE00010, b"OB", b"\0" * 8), defined=False),  # binary: pydicom's
        struct.pack("<HHL", 0xFFFE, 0xE0DD, 0),  # a sequence delimiter in a defined length
    ],
    ids=["item-past-end", "element-past-item", "non-ascii", "binary", "stray-delimiter"],
)
def test_anything_else_in_a_raw_sequence_is_left_to_pydicom(value):
    assert header_json_module._sequence_from_bytes(_raw_sequence(value), limit=768, depth=1) is None


def _file_with_sequence(tmp_path, items: bytes) -> Path:
    """An explicit VR little endian file whose (0008,1115) sequence holds ``items``."""
    return part10(tmp_path / "items.dcm", element(0x00081115, b"SQ", items))


LO_AB = element(0x00100020, b"LO", b"AB")


@pytest.mark.parametrize(
    "items",
    [
        _item(element(0x00080005, b"CS", b"ISO_IR 999") + LO_AB, defined=True),
        _item(element(0x00080005, b"CS", b"ISO_IR100 ") + LO_AB, defined=True),
        _item(element(0x00080005, b"CS", b"ISO_IR 100") + LO_AB, defined=True),
        # An item delimiter whose length field spells a long VR, then another item.
        struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + LO_AB
        + struct.pack("<HH", 0xFFFE, 0xE00D)
        + b"OB\0\0"
        + _item(element(0x00100021, b"LO", b"CD"), defined=True),
        # The same tag twice, the second time as bulk data.
        _item(
            element(0x00420011, b"LO", b"AB") + element(0x00420011, b"OB", b"\1" * 800),
            defined=True,
        ),
        _item(element(0x00281101, b"SS", struct.pack("<hhh", -32768, 0, 16)), defined=True),
    ],
    ids=["unknown-charset", "misspelt-charset", "charset", "odd-delimiter", "twice", "lut"],
)
def test_crafted_items_are_encoded_as_pydicom_encodes_them(tmp_path, items):
    path = _file_with_sequence(tmp_path, items)
    expected = expected_json(lambda: dcmread(path, stop_before_pixels=True))
    got = header_json(
        dcmread(path, stop_before_pixels=True),
        encode=lambda data, tag: pydicom_element_json(data, tag, **OPTIONS),
        bulk_data_threshold=OPTIONS["bulk_data_threshold"],
    )
    assert without_bulk_references(got) == without_bulk_references(expected)


# --- One invalid value deep inside a sequence ----------------------------------------------


def _sequence_element(tag: int, items: list[bytes], *, defined: bool) -> bytes:
    body = b"".join(_item(item, defined=defined) for item in items)
    if defined:
        return element(tag, b"SQ", body)
    return _undefined_sequence(tag, body)


def _file_with_one_bad_value_per_sequence(tmp_path, *, defined: bool) -> Path:
    """A Referenced Series Sequence whose second referenced image has a malformed frame
    number (IS), and a shared functional group whose slice thickness is malformed (DS),
    each among valid siblings."""
    image = element(0x00081150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0")
    images = [
        image + element(0x00081155, b"UI", b"1.2.3.9.1\0"),
        image + element(0x00081155, b"UI", b"1.2.3.9.2\0") + element(0x00081160, b"IS", b"1a"),
    ]
    series = _sequence_element(0x00081140, images, defined=defined) + element(
        0x0020000E, b"UI", b"1.2.3.9\0"
    )
    measures = element(0x00180050, b"DS", b"1.5x") + element(0x00280030, b"DS", b"0.5\\0.25")
    group = _sequence_element(0x00289110, [measures], defined=defined)
    dataset = (
        _sequence_element(0x00081115, [series], defined=defined)
        + element(0x00100020, b"LO", b"CHEM-UNKNOWN")
        + element(0x0020000D, b"UI", b"1.2.3\0")
        + element(0x0020000E, b"UI", b"1.2.3.5\0")
        + _sequence_element(0x52009229, [group], defined=defined)
    )
    return part10(tmp_path / "one-bad-value.dcm", dataset)


def _check_only_the_bad_values_are_dropped(metadata: dict) -> None:
    (series,) = metadata["00081115"]["Value"]
    assert series["0020000E"] == {"vr": "UI", "Value": ["1.2.3.9"]}
    first, second = series["00081140"]["Value"]
    assert first["00081155"] == {"vr": "UI", "Value": ["1.2.3.9.1"]}
    assert second["00081155"] == {"vr": "UI", "Value": ["1.2.3.9.2"]}
    assert "00081160" not in second  # "1a" is no IS
    (group,) = metadata["52009229"]["Value"]
    (measures,) = group["00289110"]["Value"]
    assert measures == {"00280030": {"vr": "DS", "Value": [0.5, 0.25]}}  # "1.5x" is no DS


@pytest.mark.parametrize("defined", [True, False], ids=["defined", "undefined"])
def test_an_invalid_value_in_a_sequence_drops_that_value_alone(tmp_path, defined):
    path = _file_with_one_bad_value_per_sequence(tmp_path, defined=defined)
    metadata = read_header(path).metadata
    _check_only_the_bad_values_are_dropped(metadata)
    expected = expected_json(lambda: dcmread(path, stop_before_pixels=True))
    assert without_bulk_references(metadata) == without_bulk_references(expected)


def test_metadata_keeps_the_valid_siblings_of_an_invalid_nested_value(cast, tmp_path):
    from tests.conftest import client_for

    from .conftest import ingest

    path = _file_with_one_bad_value_per_sequence(tmp_path, defined=True)
    result = ingest(path)
    assert result.status == "stored"
    response = client_for("bob", "CHEM").get(f"/dicomweb/studies/{result.study_uid}/metadata")
    assert response.status_code == 200
    (instance,) = json.loads(b"".join(response.streaming_content))
    _check_only_the_bad_values_are_dropped(instance)
