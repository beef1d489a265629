"""Page-test fixtures: a clean throttle cache, logged-in portal clients, real DICOM studies."""

import datetime
import warnings
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from consent.actors import Actor
from consent.models import CareRelationship, Consent, Institution, Role, StudyVisibility
from studies.ingest import IngestResult, IngestSession, instance_ingest
from studies.spool import spool_path
from tests.portal.helpers import portal_client


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def portal_as(cast):
    return portal_client


@pytest.fixture
def storage_dir(settings, tmp_path: Path) -> Path:
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


def ingest_copy(folder: Path, name: str, code: str, **attributes: object) -> IngestResult:
    """A pydicom test file with fresh UIDs, stored as the hospital system of `code` would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(get_testdata_file(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    institution = Institution.objects.get(code=code)
    actor = Actor(role=Role.SYSTEM, institution=institution, username=f"test:{code}")
    result = instance_ingest(session=IngestSession(actor=actor), spooled=spool_path(path))
    assert result.ok, result.reason
    return result


@pytest.fixture
def xavier_studies(cast, storage_dir, tmp_path) -> dict[str, IngestResult]:
    """Xavier's CT and MR made at CHEM (he hid the MR), and a CT of Yvonne made at CHL."""
    studies = {
        "ct": ingest_copy(
            tmp_path, "CT_small.dcm", "CHEM", PatientID="CHEM-X1", StudyDescription="CT thorax"
        ),
        "mr": ingest_copy(
            tmp_path, "MR_small.dcm", "CHEM", PatientID="CHEM-X1", StudyDescription="MR knee"
        ),
        "yvonne": ingest_copy(tmp_path, "CT_small.dcm", "CHL", PatientID="CHL-Y1"),
    }
    StudyVisibility.objects.create(
        patient=cast.xavier, study_uid=studies["mr"].study_uid, hidden_by="xavier"
    )
    return studies


@pytest.fixture
def xavier_ct_series(tmp_path, xavier_studies) -> tuple[str, str, list[str]]:
    """Three CT slices of Xavier's made at CHEM, stored out of their instance order."""
    study, series = generate_uid(), generate_uid()
    sops = {}
    for number in (3, 1, 2):
        result = ingest_copy(
            tmp_path,
            "CT_small.dcm",
            "CHEM",
            PatientID="CHEM-X1",
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
            InstanceNumber=number,
        )
        sops[number] = result.sop_instance_uid
    return study, series, [sops[n] for n in (1, 2, 3)]


def consent_to_all(patient) -> Consent:
    return Consent.objects.create(patient=patient, all_members=True, granted_by="test")


def admit(practitioner, patient) -> CareRelationship:
    return CareRelationship.objects.create(
        practitioner=practitioner,
        patient=patient,
        kind="admission",
        asserted_by="test",
        end=timezone.now() + datetime.timedelta(days=30),
    )
