"""Bench corpus: pydicom's test files cloned with new UIDs, and large multi-frame instances."""

from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data.data_manager import DATA_ROOT
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from studies.dicom import InvalidDicom, read_header


def shipped_test_files() -> list[Path]:
    """The .dcm test files that ship with pydicom: get_testdata_files would also try to
    download pydicom-data's, a network access (offline, a 15 s time-out each call)."""
    return sorted((Path(DATA_ROOT) / "test_files").glob("*.dcm"))


def usable_files() -> list[Path]:
    """pydicom's test files that the gateway stores (the others are refused by design)."""
    files = shipped_test_files()
    usable = []
    for path in files:
        try:
            read_header(path)
        except InvalidDicom:
            continue
        usable.append(path)
    return usable


def clones(folder: Path, *, count: int, patient_ids: list[str]) -> list[Path]:
    """``count`` files cloned round-robin from the usable ones, one study each."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = usable_files()
    out = []
    for n in range(count):
        ds = dcmread(sources[n % len(sources)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patient_ids[n % len(patient_ids)]
        ds.StudyDate = f"20{15 + n % 10:02d}{1 + n % 12:02d}{1 + n % 28:02d}"
        path = folder / f"{n:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def large_instance(path: Path, *, mebibytes: int, patient_id: str) -> Path:
    """An uncompressed 16-bit 512x512 multi-frame CT of about ``mebibytes`` MiB."""
    frames = mebibytes * 1024 * 1024 // (512 * 512 * 2)
    ds = dcmread(usable_files()[0])  # a header to start from
    ds = ds.copy()
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.NumberOfFrames = frames
    ramp = np.arange(512 * 512, dtype=np.uint16).reshape(512, 512)
    ds.PixelData = np.tile(ramp, (frames, 1, 1)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
