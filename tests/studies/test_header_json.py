"""The header's DICOM JSON is exactly what pydicom's Dataset.to_json_dict gives."""

import contextlib
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian

from studies.header_json import header_json, pydicom_element_json

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


def both(read) -> tuple[dict, dict]:
    ours = read()
    expected = read().to_json_dict(suppress_invalid_tags=True, **OPTIONS)
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
