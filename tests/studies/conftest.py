"""Helpers for the studies tests: private storage, DICOM copies assigned to the cast."""

import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.uid import generate_uid

from consent.actors import Actor
from consent.models import Institution, Role
from studies.ingest import IngestResult, IngestSession, instance_ingest
from studies.spool import spool_path


def pydicom_files() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # offline: the download of extra files fails, harmless
        return sorted(get_testdata_files("*.dcm"))


def pydicom_file(name: str) -> Path:
    return Path(get_testdata_file(name))


@pytest.fixture(autouse=True)
def private_storage(settings, tmp_path: Path) -> Path:
    """Each test stores into its own folder, so leftovers can be counted."""
    root = tmp_path / "storage"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    settings.SPOOL_DIR = tmp_path / "spool"
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def system_actor(code: str, channel: str = "cli") -> Actor:
    institution = Institution.objects.get(code=code)
    return Actor(
        role=Role.SYSTEM, institution=institution, username=f"test:{code}", channel=channel
    )


def ingest(path: Path, code: str = "CHEM") -> IngestResult:
    session = IngestSession(actor=system_actor(code))
    return instance_ingest(session=session, spooled=spool_path(path))


def dicom_copy(
    tmp_path: Path,
    name: str = "CT_small.dcm",
    *,
    patient_id: str | None = None,
    issuer: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    new_uids: bool = True,
    **attributes: object,
) -> Path:
    """A copy of a pydicom test file with new UIDs and the given patient identity."""
    ds = dcmread(pydicom_file(name))
    if new_uids:
        ds.StudyInstanceUID = study_uid or generate_uid()
        ds.SeriesInstanceUID = series_uid or generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if patient_id is not None:
        ds.PatientID = patient_id
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    out = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out
