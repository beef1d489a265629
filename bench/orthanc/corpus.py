"""The bench corpus: pydicom's test files cloned with new UIDs into studies, and large instances."""

import datetime
import json
import logging
import random
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data.data_manager import DATA_ROOT
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

logging.getLogger("pydicom").setLevel(logging.CRITICAL)
MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
FIRST_DATE = datetime.date(2015, 1, 1)
DAYS = 3652


@dataclass
class Item:
    path: str
    sop_uid: str
    size: int


@dataclass
class StudySpec:
    study_uid: str
    series_uid: str
    patient_id: str
    study_date: str
    template: str
    items: list[Item] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(i.size for i in self.items)


def _accepted(path: Path) -> bool:
    """Whether the gateway's own header reader accepts the file (studies.dicom.read_header)."""
    from studies.dicom import InvalidDicom, read_header

    try:
        read_header(path)
    except InvalidDicom:
        return False
    return True


def templates() -> tuple[list[Path], list[str]]:
    """pydicom's test files that the gateway accepts and that clone cleanly; and the refused."""
    # Those that ship with pydicom: get_testdata_files would also try to download
    # pydicom-data's, a network access (offline, a 15 s time-out).
    files = sorted((Path(DATA_ROOT) / "test_files").glob("*.dcm"))
    good, refused = [], []
    for path in files:
        (good if _accepted(path) else refused).append(path)
    return good, [p.name for p in refused]


def clone(template: Path, out: Path, *, study: StudySpec, number: int) -> Item:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(template, force=True)
    sop_uid = generate_uid()
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = study.series_uid
    ds.SOPInstanceUID = sop_uid
    ds.PatientID = study.patient_id
    ds.PatientName = f"BENCH^{study.patient_id}"
    ds.StudyDate = study.study_date
    ds.AccessionNumber = study.study_uid[-16:]
    ds.InstanceNumber = number
    if "IssuerOfPatientID" in ds:
        del ds.IssuerOfPatientID
    if not getattr(ds, "file_meta", None):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    if "SOPClassUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(out, enforce_file_format=True)
    return Item(path=str(out), sop_uid=sop_uid, size=out.stat().st_size)


def build_small(
    out_dir: Path, *, instances: int, per_study: int, patient_ids: list[str], seed: int = 5
) -> tuple[list[StudySpec], list[str]]:
    """Studies of ``per_study`` clones of one template each, ``instances`` files in all."""
    rng = random.Random(seed)
    candidates, refused = templates()
    usable = []
    probe = out_dir / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    for template in candidates:
        spec = StudySpec(generate_uid(), generate_uid(), patient_ids[0], "20200101", template.name)
        try:
            item = clone(template, probe / template.name, study=spec, number=1)
        except Exception as exc:  # pydicom cannot write some odd files back
            refused.append(f"{template.name} (clone: {type(exc).__name__})")
            continue
        if _accepted(Path(item.path)):
            usable.append(template)
        else:
            refused.append(f"{template.name} (clone refused)")
    studies: list[StudySpec] = []
    made = 0
    while made < instances:
        template = usable[len(studies) % len(usable)]
        day = FIRST_DATE + datetime.timedelta(days=rng.randrange(DAYS))
        spec = StudySpec(
            study_uid=generate_uid(),
            series_uid=generate_uid(),
            patient_id=rng.choice(patient_ids),
            study_date=day.strftime("%Y%m%d"),
            template=template.name,
        )
        folder = out_dir / f"s{len(studies):05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(min(per_study, instances - made)):
            spec.items.append(clone(template, folder / f"{n}.dcm", study=spec, number=n + 1))
            made += 1
        studies.append(spec)
    return studies, refused


def build_large(out_dir: Path, *, sizes_mb: list[int], patient_id: str) -> list[StudySpec]:
    """One uncompressed 16-bit 512x512 multi-frame instance per size (MiB), each its own study."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    frame_bytes = 512 * 512 * 2
    made = []
    for mb in sizes_mb:
        frames = max(1, mb * 1024 * 1024 // frame_bytes)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = MULTIFRAME_WORD_SC
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.PatientID = patient_id
        ds.PatientName = f"BENCH^{patient_id}"
        ds.StudyDate = "20240601"
        ds.StudyTime = "120000"
        ds.AccessionNumber = f"LARGE{mb}"
        ds.StudyDescription = f"Bench multi-frame {mb} MiB"
        ds.Modality = "OT"
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = 40
        ds.PixelData = rng.integers(0, 4096, size=frames * 512 * 512, dtype=np.uint16).tobytes()
        path = out_dir / f"large_{mb}.dcm"
        ds.save_as(path, enforce_file_format=True)
        spec = StudySpec(
            study_uid=ds.StudyInstanceUID,
            series_uid=ds.SeriesInstanceUID,
            patient_id=patient_id,
            study_date=ds.StudyDate,
            template=f"multiframe-{mb}MiB",
        )
        spec.items.append(Item(str(path), ds.SOPInstanceUID, path.stat().st_size))
        made.append(spec)
        del ds
    return made


def save_manifest(path: Path, **groups: list[StudySpec]) -> None:
    path.write_text(json.dumps({k: [asdict(s) for s in v] for k, v in groups.items()}))
