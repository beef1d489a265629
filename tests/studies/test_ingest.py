"""The ingest service: every pydicom file stored or refused, idempotency, safety, reconciliation."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pydicom import dcmread

from audit.models import AuditEvent
from consent.services import provisioning
from studies import storage
from studies.ingest import IngestSession, instance_ingest
from studies.models import Instance, Series, Study
from studies.spool import spool_path
from studies.storage_errors import StorageUnavailable
from tests.conftest import ADMIN, XAVIER_ID

from .conftest import (
    dicom_copy,
    ingest,
    pydicom_file,
    pydicom_files,
    stored_files,
    system_actor,
)


@pytest.mark.parametrize("path", pydicom_files(), ids=lambda p: Path(p).name)
def test_it_stores_or_refuses_every_pydicom_file(cast, private_storage, settings, path):
    original = Path(path).read_bytes()
    result = ingest(Path(path))
    if result.ok:
        instance = Instance.objects.get(sop_instance_uid=result.sop_instance_uid)
        stored = b"".join(storage.object_chunks(key=instance.storage_key))
        assert stored[128:] == original[128:]
        assert dcmread(storage.object_local_path(key=instance.storage_key)) == dcmread(path)
        assert instance.size == len(original)
    else:
        assert result.status == "rejected"
        assert result.reason
        assert not Instance.objects.exists()
        assert not Study.objects.exists()
        assert stored_files(private_storage) == []
    assert list(Path(settings.SPOOL_DIR).iterdir()) == []


def test_it_indexes_study_series_and_instance(cast, tmp_path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", AccessionNumber="A1"))
    assert result.status == "stored"
    study = Study.objects.get(study_uid=result.study_uid)
    assert study.institution.code == "CHEM"
    assert study.patient == cast.xavier
    assert (study.accession_number, study.modalities) == ("A1", "CT")
    assert (study.series_count, study.instance_count) == (1, 1)
    instance = Instance.objects.get()
    assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert len(instance.sha256) == 64
    # Pixel Data is referenced by where it lies in the stored object, never inline.
    assert set(instance.metadata["7FE00010"]) == {"vr", "BulkDataURI"}
    assert instance.metadata["00100020"]["Value"] == ["CHEM-X1"]
    assert Series.objects.get().preview_key == ""  # inline (no broker): no preview on ingest


def test_it_queues_a_preview_for_a_worker(
    cast, tmp_path, inline_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    from studies import tasks

    queued = []
    monkeypatch.setattr(tasks.series_preview, "delay", queued.append)
    inline_tasks.conf.task_always_eager = False
    with django_capture_on_commit_callbacks(execute=True):
        ingest(dicom_copy(tmp_path))
        ingest(dicom_copy(tmp_path, "rtplan.dcm"))  # no image: no preview
    assert queued == [Instance.objects.get(sop_class_uid="1.2.840.10008.5.1.4.1.1.2").pk]


def test_it_treats_the_same_bytes_again_as_a_duplicate(cast, tmp_path, private_storage):
    path = dicom_copy(tmp_path)
    assert ingest(path).status == "stored"
    again = ingest(path)
    assert again.status == "duplicate"
    assert again.ok
    assert Instance.objects.count() == 1
    assert Study.objects.get().instance_count == 1


def test_it_refuses_different_bytes_under_a_stored_uid_and_audits_it(cast, tmp_path):
    first = dicom_copy(tmp_path, patient_id="CHEM-X1")
    assert ingest(first).status == "stored"
    ds = dcmread(first)
    ds.StudyDescription = "Changed"
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed)
    result = ingest(changed)
    assert result.status == "conflict"
    assert "different content" in result.reason
    assert Instance.objects.count() == 1
    event = AuditEvent.objects.get(action="study.store_conflict")
    assert (event.outcome, event.reason_code, event.patient) == (
        "deny",
        "SOP_INSTANCE_CONFLICT",
        XAVIER_ID,
    )


def test_it_audits_one_store_event_per_study_and_session(cast, tmp_path):
    from studies.ingest import IngestSession, study_ingest
    from studies.spool import spool_path

    from .conftest import system_actor

    study_uid = "1.2.826.0.1.3680043.8.498.1"
    paths = [dicom_copy(tmp_path, study_uid=study_uid) for _ in range(3)]
    session = IngestSession(actor=system_actor("CHEM"))
    results = study_ingest(session=session, spooled=[spool_path(p) for p in paths])
    assert [r.status for r in results] == ["stored"] * 3
    assert AuditEvent.objects.filter(action="study.store", study_uid=study_uid).count() == 1
    study = Study.objects.get()
    assert (study.series_count, study.instance_count) == (3, 3)


def test_it_zeroes_an_unsafe_preamble(cast, tmp_path):
    path = dicom_copy(tmp_path)
    data = bytearray(path.read_bytes())
    data[:4] = b"MZ\x90\x00"  # a Windows executable header: the PE-DICOM polyglot
    path.write_bytes(bytes(data))
    ingest(path)
    stored = storage.object_read(key=Instance.objects.get().storage_key, start=0, length=132)
    assert stored == bytes(128) + b"DICM"


def test_it_keeps_a_tiff_preamble(cast, tmp_path):
    path = dicom_copy(tmp_path)
    data = bytearray(path.read_bytes())
    data[:8] = b"II*\x00\x08\x00\x00\x00"
    path.write_bytes(bytes(data))
    ingest(path)
    stored = storage.object_read(key=Instance.objects.get().storage_key, start=0, length=8)
    assert stored == b"II*\x00\x08\x00\x00\x00"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "Not a DICOM"),
        (b"%PDF-1.4 not an image" * 20, "Not a DICOM"),
        (bytes(128) + b"DICM", "Transfer Syntax"),
    ],
)
def test_it_refuses_what_is_not_dicom(cast, tmp_path, private_storage, content, reason):
    path = tmp_path / "bad.dcm"
    path.write_bytes(content)
    result = ingest(path)
    assert result.status == "rejected"
    assert reason in result.reason
    assert stored_files(private_storage) == []


def test_it_refuses_a_truncated_file(cast, tmp_path, private_storage):
    path = dicom_copy(tmp_path)
    path.write_bytes(path.read_bytes()[:-1000])
    result = ingest(path)
    assert result.status == "rejected"
    assert result.reason.startswith("Truncated")
    assert stored_files(private_storage) == []


def test_it_refuses_an_invalid_uid(cast, tmp_path):
    result = ingest(dicom_copy(tmp_path, new_uids=True, SOPInstanceUID="1.2.3.04"))
    assert result.status == "rejected"
    assert "SOPInstanceUID" in result.reason
    assert not Study.objects.exists()


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        pytest.param(("1.2.840.10008.5.1.4.1.1.4", None), "SOP Class UID", id="another class"),
        pytest.param((None, "1.2.3.4.5"), "SOP Instance UID", id="another instance"),
    ],
)
def test_it_refuses_a_data_set_that_is_not_what_its_request_declared(
    cast, tmp_path, private_storage, declared, reason
):
    path = dicom_copy(tmp_path)
    ds = dcmread(path)
    sop_class, sop_instance = declared
    spooled = replace(
        spool_path(path),
        declared=(sop_class or ds.SOPClassUID, sop_instance or ds.SOPInstanceUID),
    )
    session = IngestSession(actor=system_actor("CHEM", channel="dimse"))
    result = instance_ingest(session=session, spooled=spooled)
    assert (result.status, result.failure_code) == ("rejected", 0xA900)
    assert reason in result.reason
    assert not Study.objects.exists()
    assert stored_files(private_storage) == []
    assert not spooled.path.exists()


def test_it_stores_a_data_set_that_is_what_its_request_declared(cast, tmp_path):
    path = dicom_copy(tmp_path)
    ds = dcmread(path)
    spooled = replace(spool_path(path), declared=(ds.SOPClassUID, ds.SOPInstanceUID))
    session = IngestSession(actor=system_actor("CHEM", channel="dimse"))
    assert instance_ingest(session=session, spooled=spooled).status == "stored"


def test_it_leaves_nothing_when_indexing_fails(
    cast, tmp_path, private_storage, failing_instance_insert
):
    with pytest.raises(failing_instance_insert):
        ingest(dicom_copy(tmp_path))
    assert not Study.objects.exists()
    assert stored_files(private_storage) == []


def test_it_refuses_instances_for_a_study_of_another_institution(cast, tmp_path):
    study_uid = "1.2.826.0.1.3680043.8.498.2"
    assert ingest(dicom_copy(tmp_path, study_uid=study_uid), "CHEM").status == "stored"
    result = ingest(dicom_copy(tmp_path, study_uid=study_uid), "CHL")
    assert result.status == "rejected"
    # The same answer whatever CHEM holds under these UIDs; the audit keeps the attempt.
    assert result.reason == "These UIDs cannot be stored for your institution."
    event = AuditEvent.objects.order_by("-seq").first()
    assert (event.outcome, event.reason_code, event.acting_institution) == (
        "deny",
        "UIDS_OF_ANOTHER_INSTITUTION",
        "CHL",
    )


def test_a_series_or_instance_uid_of_another_institution_gets_the_same_answer(cast, tmp_path):
    stored = ingest(dicom_copy(tmp_path), "CHEM")
    same_instance = ingest(dicom_copy(tmp_path, SOPInstanceUID=stored.sop_instance_uid), "CHL")
    same_series = ingest(dicom_copy(tmp_path, series_uid=stored.series_uid), "CHL")
    for result in (same_instance, same_series):
        assert (result.status, result.reason) == (
            "rejected",
            "These UIDs cannot be stored for your institution.",
        )


def test_it_refuses_an_instance_whose_patient_differs_from_its_study(cast, tmp_path):
    study_uid = "1.2.826.0.1.3680043.8.498.3"
    ingest(dicom_copy(tmp_path, study_uid=study_uid, patient_id="CHEM-X1"))
    result = ingest(dicom_copy(tmp_path, study_uid=study_uid, patient_id="CHEM-OTHER"))
    assert result.status == "rejected"
    assert "PatientID differs" in result.reason


def test_it_reconciles_through_an_explicit_issuer(cast, tmp_path):
    # A study made at CHEM for a patient known by their CHL identifier.
    result = ingest(dicom_copy(tmp_path, patient_id="CHL-Y1", issuer="CHL"), "CHEM")
    study = Study.objects.get(study_uid=result.study_uid)
    assert study.institution.code == "CHEM"
    assert study.patient == cast.yvonne


def test_patients_are_found_by_identifier_with_what_the_gate_reads(cast, django_assert_num_queries):
    from consent.models import Institution
    from studies.reconcile import patients_for

    chem = Institution.objects.get(code="CHEM")
    with django_assert_num_queries(1):
        found = patients_for(institution=chem, patient_ids={"CHEM-X1", "CHEM-NOBODY", ""})
        assert set(found) == {"CHEM-X1"}
        assert found["CHEM-X1"].pk == cast.xavier.pk
        assert found["CHEM-X1"].national_id == cast.xavier.national_id
    # Any other field is read on access, from the database.
    assert found["CHEM-X1"].family_name == cast.xavier.family_name
    assert patients_for(institution=chem, patient_ids={"CHL-Y1"}) == {}  # another hospital's


def test_it_leaves_an_unknown_identifier_unreconciled(cast, tmp_path):
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-NEW"))
    assert Study.objects.get(study_uid=result.study_uid).patient is None
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", issuer="SOMEWHERE-ELSE"))
    assert Study.objects.get(study_uid=result.study_uid).patient is None


def test_it_links_waiting_studies_when_the_identifier_is_registered(
    cast, tmp_path, django_capture_on_commit_callbacks
):
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-NEW"))
    with django_capture_on_commit_callbacks(execute=True):
        provisioning.patient_identifier_add(
            actor=ADMIN, national_id_value=XAVIER_ID, institution_code="CHEM", value="CHEM-NEW"
        )
    assert Study.objects.get(study_uid=result.study_uid).patient == cast.xavier
    event = AuditEvent.objects.get(action="study.reconcile")
    assert (event.patient, event.study_uid) == (XAVIER_ID, result.study_uid)


def test_import_dicom_imports_a_tree_and_summarises(cast, tmp_path, capsys):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    dicom_copy(tree / "a", patient_id="CHEM-X1")
    dicom_copy(tree / "a" / "b", "MR_small.dcm")
    (tree / "a" / "notes.txt").write_text("not dicom")
    (tree / "truncated.dcm").write_bytes(pydicom_file("MR_small.dcm").read_bytes()[:3000])
    # Some rejected: exit 1 once the others are stored (test_import_command.py).
    with pytest.raises(CommandError, match="2 not imported"):
        call_command("import_dicom", str(tree), "--institution", "CHEM", "--no-progress")
    with pytest.raises(CommandError, match="1 not imported"):
        call_command("import_dicom", str(tree / "a"), "--institution", "CHEM", "--no-progress")
    out = capsys.readouterr().out
    assert "4 file(s): 2 stored, 0 duplicate, 2 rejected" in out
    assert "3 file(s): 0 stored, 2 duplicate, 1 rejected" in out
    assert "notes.txt: Not a DICOM" in out
    assert "truncated.dcm: Truncated" in out
    assert Instance.objects.count() == 2


def test_import_dicom_refuses_an_unknown_institution(cast, tmp_path):
    with pytest.raises(CommandError, match="No institution"):
        call_command("import_dicom", str(tmp_path), "--institution", "NOPE")


def test_it_indexes_again_when_a_concurrent_writer_created_the_study(cast, tmp_path, monkeypatch):
    from studies import ingest as ingest_module

    study_uid = "1.2.826.0.1.3680043.8.498.77"
    ours = dicom_copy(tmp_path, patient_id="CHEM-X1", study_uid=study_uid)
    theirs = dicom_copy(tmp_path, patient_id="CHEM-X1", study_uid=study_uid)
    original = ingest_module.objects_put

    def racing(items):
        # Another writer indexes the same study after our checks, before our transaction.
        monkeypatch.setattr(ingest_module, "objects_put", original)
        assert ingest(theirs).status == "stored"
        original(items)

    monkeypatch.setattr(ingest_module, "objects_put", racing)
    result = ingest(ours)
    assert result.status == "stored"
    study = Study.objects.get()
    assert (study.patient, study.instance_count, study.series_count) == (cast.xavier, 2, 2)


def test_it_answers_a_duplicate_when_a_concurrent_writer_stored_the_same_instance(
    cast, tmp_path, monkeypatch, private_storage
):
    from studies import ingest as ingest_module

    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    original = ingest_module.objects_put

    def racing(items):
        monkeypatch.setattr(ingest_module, "objects_put", original)
        assert ingest(path).status == "stored"
        original(items)

    monkeypatch.setattr(ingest_module, "objects_put", racing)
    assert ingest(path).status == "duplicate"
    assert Instance.objects.count() == 1
    assert len(stored_files(private_storage)) == 1


def test_a_spool_file_that_cannot_be_read_is_refused_without_showing_its_path(tmp_path):
    from studies.dicom import InvalidDicom, read_header

    missing = tmp_path / "spool" / "gone.dcm"
    with pytest.raises(InvalidDicom) as caught:
        read_header(missing)
    assert str(tmp_path) not in str(caught.value)
    assert "FileNotFoundError" in str(caught.value)


def test_the_metadata_has_no_nul_no_non_finite_number_and_no_bulk_data_reference():
    from pydicom.dataset import Dataset

    from studies.dicom import to_json

    ds = Dataset()
    ds.StudyDescription = "a\x00b"
    ds.add_new(0x00189087, "FD", float("nan"))  # DiffusionBValue
    ds.add_new(0x00431029, "OB", bytes(4096))  # private bulk data
    ds.Modality = "CT"
    assert to_json(ds) == {
        "00081030": {"vr": "LO", "Value": ["ab"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00189087": {"vr": "FD", "Value": [None]},
    }
    clean = Dataset()
    clean.Modality = "MR"
    assert to_json(clean) == {"00080060": {"vr": "CS", "Value": ["MR"]}}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_number_alone_is_cleaned(value):
    from pydicom.dataset import Dataset

    from studies.dicom import to_json

    ds = Dataset()
    ds.add_new(0x00189087, "FD", [2.5, value])  # nothing else in it to clean
    assert to_json(ds) == {"00189087": {"vr": "FD", "Value": [2.5, None]}}


def test_a_header_with_decimal_strings_and_nulls_is_kept_as_it_is():
    from pydicom.dataset import Dataset
    from pydicom.valuerep import DSfloat

    from studies.dicom import _is_clean, to_json
    from studies.ingest_sql import _json

    ds = Dataset()
    ds.PixelSpacing = [DSfloat("0.5"), DSfloat("0.25")]
    ds.WindowCenter = ""
    assert to_json(ds) == {
        "00280030": {"vr": "DS", "Value": [0.5, 0.25]},
        "00281050": {"vr": "DS"},
    }
    # A null that is not a non-finite number leaves a header clean.
    assert _is_clean({"00189087": {"vr": "FD", "Value": [None, 2.5]}})
    assert not _is_clean({"00189087": {"vr": "FD", "Value": [float("nan"), 2.5]}})
    assert json.loads(_json([{"spacing": DSfloat("0.5")}])) == [{"spacing": 0.5}]


def test_it_syncs_each_stored_object_and_its_folders_before_indexing(
    cast, tmp_path, private_storage, monkeypatch
):
    synced: list[tuple[Path, bool]] = []
    original = storage._fsync

    def recording(path: Path) -> None:
        synced.append((path, Study.objects.exists()))  # indexed yet?
        original(path)

    monkeypatch.setattr(storage, "_fsync", recording)
    result = ingest(dicom_copy(tmp_path))
    assert result.status == "stored"
    stored = storage.object_local_path(key=Instance.objects.get().storage_key)
    paths = {path for path, _ in synced}
    assert {stored, stored.parent, stored.parent.parent, private_storage / "dicom"} <= paths
    assert private_storage in paths
    assert not any(indexed for _, indexed in synced)


def test_it_leaves_nothing_when_an_object_cannot_be_synced(
    cast, tmp_path, private_storage, monkeypatch
):
    def failing(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage, "_fsync", failing)
    with pytest.raises(StorageUnavailable, match="Input/output"):  # the disk, told as such
        ingest(dicom_copy(tmp_path))
    assert not Study.objects.exists()
    assert stored_files(private_storage) == []


@pytest.mark.parametrize("path", pydicom_files(), ids=lambda p: Path(p).name)
def test_the_header_values_are_those_pydicom_converts(path, monkeypatch):
    from studies import dicom

    try:
        fast = dicom.read_header(Path(path))
    except dicom.InvalidDicom:
        return
    monkeypatch.setattr(dicom, "_get", lambda ds, keyword: ds.get(keyword))
    slow = dicom.read_header(Path(path))
    assert fast == slow


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("SeriesNumber", "99999999999999999999"),
        ("SeriesNumber", "3000000000"),  # past PostgreSQL's integer, within SQLite's
        ("InstanceNumber", "-99999999999999999999"),
        ("InstanceNumber", "-2147483649"),
    ],
)
def test_a_number_out_of_its_vrs_range_is_stored_as_unknown(cast, tmp_path, keyword, value):
    """IS values lie within a signed 32-bit integer (PS3.5 6.2); one outside could not be
    indexed (a server error on either database), so it is read as no number at all."""
    result = ingest(dicom_copy(tmp_path, **{keyword: value}))
    assert result.status == "stored"
    assert Series.objects.get().series_number is (None if keyword == "SeriesNumber" else 1)
    instance = Instance.objects.get()
    assert instance.instance_number is (None if keyword == "InstanceNumber" else 1)


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "CT_small.dcm"])  # coded, native
def test_a_number_of_frames_out_of_range_is_refused(cast, tmp_path, private_storage, name):
    """Read as one frame, a native instance short of its frames would pass as whole."""
    result = ingest(dicom_copy(tmp_path, name, NumberOfFrames="3000000000"))
    assert result.status == "rejected"
    assert "Number of Frames (0028,0008)" in result.reason
    assert not Instance.objects.exists()
    assert stored_files(private_storage) == []
