"""Helpers for the studies tests: private storage, DICOM copies assigned to the cast."""

import warnings
from pathlib import Path

import pytest
from django.db import DatabaseError
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


@pytest.fixture(autouse=True)
def inline_tasks():
    """Tasks run inline here even when CI configures a broker; the worker test opts out."""
    from anim_gateway.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = before


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


def multipart_parts(response) -> list[tuple[str, bytes]]:
    """(content type, body) of each part of a multipart/related response."""
    content_type = response["Content-Type"]
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    body = b"".join(response.streaming_content)
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        part_type = head.decode().split(":", 1)[1].strip()
        parts.append((part_type, data[:-2]))
    return parts


def share_with_alice(cast) -> None:
    """Xavier consents to sharing with all members; Alice (CHL) has an admission with him."""
    import datetime

    from django.utils import timezone

    from consent.models import CareRelationship, Consent

    Consent.objects.create(patient=cast.xavier, all_members=True, granted_by="test")
    CareRelationship.objects.create(
        practitioner=cast.alice,
        patient=cast.xavier,
        kind="admission",
        asserted_by="test",
        end=timezone.now() + datetime.timedelta(days=30),
    )


def hide(patient, study_uid: str) -> None:
    from consent.models import StudyVisibility

    StudyVisibility.objects.create(patient=patient, study_uid=study_uid, hidden_by="test")


@pytest.fixture
def failing_instance_insert(monkeypatch):
    """Indexing fails at the instances, after the study and series are written: a database
    error on PostgreSQL (its one statement fails mid-way), a broken bulk insert on SQLite."""
    from django.db import connection

    from studies import ingest_index
    from studies.models import Instance

    if connection.vendor == "postgresql":
        original = ingest_index._instance

        def too_long(item, **kwargs):
            row = original(item, **kwargs)
            row.sha256 = "f" * 65  # over the column's 64 characters
            return row

        monkeypatch.setattr(ingest_index, "_instance", too_long)
        return DatabaseError

    def broken(*args, **kwargs):
        raise DatabaseError("database went away")

    monkeypatch.setattr(Instance.objects, "bulk_create", broken)
    return DatabaseError
