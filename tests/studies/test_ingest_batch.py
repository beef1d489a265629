"""Ingest of several objects at once (a STOW-RS body): one transaction, each object answered."""

import json

import psycopg
import pytest
from django.db import DataError, IntegrityError, OperationalError, connection
from django.test.utils import CaptureQueriesContext
from pydicom import dcmread

from audit.models import AuditEvent
from studies import ingest, ingest_index
from studies.ingest import FailureReason, IngestSession, study_ingest
from studies.models import Instance, Series, Study
from studies.spool import spool_path
from tests.conftest import client_for, require_postgres

from .conftest import dicom_copy, stored_files, system_actor
from .test_dicomweb import stow


def ingest_all(paths, code="CHEM"):
    session = IngestSession(actor=system_actor(code))
    return study_ingest(session=session, spooled=[spool_path(p) for p in paths])


def changed_copy(path, tmp_path):
    ds = dcmread(path)
    ds.StudyDescription = "Other content, same UID"
    out = tmp_path / "changed.dcm"
    ds.save_as(out)
    return out


def test_it_indexes_a_batch_of_several_studies_and_series(cast, tmp_path):
    a, b = "1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12"
    paths = [dicom_copy(tmp_path, study_uid=a, patient_id="CHEM-X1") for _ in range(3)]
    paths += [dicom_copy(tmp_path, study_uid=b, Modality="MR") for _ in range(2)]
    assert [r.status for r in ingest_all(paths)] == ["stored"] * 5
    counts = dict(Study.objects.values_list("study_uid", "instance_count"))
    assert counts == {a: 3, b: 2}
    assert Study.objects.get(study_uid=a).patient == cast.xavier
    assert Study.objects.get(study_uid=b).modalities == "MR"
    assert Series.objects.count() == 5
    assert sorted(Series.objects.values_list("instance_count", flat=True)) == [1] * 5


def test_a_batch_joins_a_stored_study_and_series(cast, tmp_path):
    study, series = "1.2.826.0.1.3680043.8.498.13", "1.2.826.0.1.3680043.8.498.14"
    ingest_all([dicom_copy(tmp_path, study_uid=study, series_uid=series)])
    more = [dicom_copy(tmp_path, study_uid=study, series_uid=series) for _ in range(2)]
    more.append(dicom_copy(tmp_path, study_uid=study, Modality="MR"))
    assert [r.status for r in ingest_all(more)] == ["stored"] * 3
    row = Study.objects.get()
    assert (row.instance_count, row.series_count, row.modalities) == (4, 2, "CT\\MR")
    assert Series.objects.get(series_uid=series).instance_count == 3


def test_a_batch_costs_the_same_queries_whatever_its_size(cast, tmp_path):
    def queries(count):
        uid = f"1.2.826.0.1.3680043.8.498.2{count}"
        paths = [dicom_copy(tmp_path, study_uid=uid, series_uid=uid + ".1") for _ in range(count)]
        with CaptureQueriesContext(connection) as captured:
            assert all(r.ok for r in ingest_all(paths))
        return len(captured)

    assert queries(2) == queries(8)


def test_the_same_uid_twice_in_one_batch_is_one_instance(cast, tmp_path, private_storage):
    path = dicom_copy(tmp_path)
    results = ingest_all([path, path])
    assert [r.status for r in results] == ["stored", "duplicate"]
    assert Instance.objects.count() == 1
    assert len(stored_files(private_storage)) == 1


def test_other_bytes_under_a_uid_of_the_same_batch_are_refused_and_audited(cast, tmp_path):
    path = dicom_copy(tmp_path)
    results = ingest_all([path, changed_copy(path, tmp_path)])
    assert [r.status for r in results] == ["stored", "conflict"]
    assert results[1].failure_code == 0x0111
    assert AuditEvent.objects.filter(action="study.store_conflict").count() == 1


def test_a_series_claimed_by_two_studies_of_one_batch_is_refused_once(cast, tmp_path):
    series = "1.2.826.0.1.3680043.8.498.15"
    paths = [dicom_copy(tmp_path, series_uid=series), dicom_copy(tmp_path, series_uid=series)]
    assert [r.status for r in ingest_all(paths)] == ["stored", "rejected"]
    assert Study.objects.count() == 1


def test_a_patient_change_within_a_new_study_of_one_batch_is_refused(cast, tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.16"
    paths = [
        dicom_copy(tmp_path, study_uid=uid, patient_id="CHEM-X1"),
        dicom_copy(tmp_path, study_uid=uid, patient_id="CHEM-OTHER"),
    ]
    results = ingest_all(paths)
    assert [r.status for r in results] == ["stored", "rejected"]
    assert "PatientID" in results[1].reason


def test_a_failing_batch_leaves_nothing(cast, tmp_path, private_storage, failing_instance_insert):
    paths = [dicom_copy(tmp_path) for _ in range(3)]
    with pytest.raises(failing_instance_insert):
        ingest_all(paths)
    assert not Study.objects.exists()
    assert stored_files(private_storage) == []


def test_a_stow_body_answers_each_part_in_order(cast, tmp_path):
    good = dicom_copy(tmp_path).read_bytes()
    other = dicom_copy(tmp_path).read_bytes()
    response = stow(client_for("chl-pacs", "CHL"), [good, b"not dicom", other, good])
    assert response.status_code == 202
    body = json.loads(response.content)
    assert len(body["00081199"]["Value"]) == 3
    (failed,) = body["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert Instance.objects.count() == 2


def test_each_study_of_a_batch_is_linked_to_its_own_patient(cast, tmp_path):
    paths = [
        dicom_copy(tmp_path, patient_id="CHEM-X1"),
        dicom_copy(tmp_path, patient_id="CHL-Y1", issuer="CHL"),
        dicom_copy(tmp_path, patient_id="CHEM-UNKNOWN"),
        dicom_copy(tmp_path, patient_id="CHL-Y1"),  # a CHEM identifier nobody has
    ]
    results = ingest_all(paths, "CHEM")
    patients = [Study.objects.get(study_uid=r.study_uid).patient for r in results]
    assert patients == [cast.xavier, cast.yvonne, None, None]
    identifier_of = Study.objects.get(study_uid=results[1].study_uid).identifier_institution
    assert identifier_of.code == "CHL"


def _racing_index(monkeypatch, losses):
    """index_batch as if a concurrent writer won the first `losses` times."""
    real, calls = ingest.index_batch, []

    def racing(**kwargs):
        calls.append(len(kwargs["items"]))
        if len(calls) <= losses:
            raise IntegrityError("duplicate key value violates unique constraint")
        return real(**kwargs)

    monkeypatch.setattr(ingest, "index_batch", racing)
    return calls


def test_an_instance_that_loses_a_race_is_indexed_again_from_fresh_rows(
    cast, tmp_path, monkeypatch
):
    calls = _racing_index(monkeypatch, losses=2)
    paths = [dicom_copy(tmp_path) for _ in range(2)]
    assert [r.status for r in ingest_all(paths)] == ["stored", "stored"]
    assert calls == [2, 1, 1, 1]  # the batch, then one at a time (the first one twice more)
    assert Instance.objects.count() == 2


def test_an_instance_that_keeps_losing_the_race_is_refused_not_a_server_error(
    cast, tmp_path, private_storage, monkeypatch
):
    _racing_index(monkeypatch, losses=100)
    results = ingest_all([dicom_copy(tmp_path) for _ in range(2)])
    assert [r.status for r in results] == ["rejected", "rejected"]
    assert {r.failure_code for r in results} == {FailureReason.PROCESSING_FAILURE}
    assert "send this instance again" in results[0].reason
    assert not Instance.objects.exists()
    assert stored_files(private_storage) == []


def test_a_long_session_asks_the_gate_again_once_its_permit_is_old(cast, tmp_path, monkeypatch):
    uid = "1.2.826.0.1.3680043.8.498.77"
    session = IngestSession(actor=system_actor("CHEM"))
    clock = [1000.0]
    monkeypatch.setattr(ingest.time, "monotonic", lambda: clock[0])

    def store_one():
        (result,) = study_ingest(
            session=session, spooled=[spool_path(dicom_copy(tmp_path, study_uid=uid))]
        )
        assert result.status == "stored"

    def permits():
        return AuditEvent.objects.filter(action="study.store", outcome="permit").count()

    store_one()
    store_one()
    assert permits() == 1  # the association's second instance: the permit still holds
    clock[0] += ingest.AUTHORIZATION_TTL + 1
    store_one()
    assert permits() == 2  # asked again


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_batch_is_written_whole_or_not_at_all(
    cast, tmp_path, private_storage, monkeypatch
):
    # As in production: no caller's transaction, so PostgreSQL's one statement commits
    # alone; a study and its series already written by it must go when an instance fails.
    require_postgres()  # SQLite does not check the length that makes the write fail
    uid = "1.2.826.0.1.3680043.8.498.31"
    good = [dicom_copy(tmp_path, study_uid=uid, series_uid=uid + ".1") for _ in range(2)]
    assert [r.status for r in ingest_all(good)] == ["stored"] * 2
    more = [dicom_copy(tmp_path, study_uid=uid, series_uid=uid + ".1")]
    more += [dicom_copy(tmp_path, study_uid=uid + ".2") for _ in range(2)]
    original = ingest_index._instance
    failing = dcmread(more[-1]).SOPInstanceUID

    def fail_last(item, **kwargs):
        row = original(item, **kwargs)
        if item.header.sop_instance_uid == failing:
            row.sha256 = "f" * 65  # too long for its column: the statement fails there
        return row

    monkeypatch.setattr(ingest_index, "_instance", fail_last)
    with pytest.raises(DataError):
        ingest_all(more)
    row = Study.objects.get()
    assert (row.study_uid, row.instance_count, row.series_count) == (uid, 2, 1)
    assert Series.objects.get().instance_count == 2
    assert Instance.objects.count() == 2
    assert len(stored_files(private_storage)) == 2


def test_a_batch_that_loses_a_deadlock_is_indexed_again_not_refused(cast, tmp_path, monkeypatch):
    # PostgreSQL ends one of two writers that lock the same studies in opposite orders;
    # its statement is rolled back whole and its objects are indexed again from fresh rows.
    require_postgres()
    from studies import ingest_sql

    original, calls = ingest_sql.index_rows, []

    def deadlocked_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            try:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            except psycopg.Error as exc:
                raise OperationalError("deadlock detected") from exc
        return original(**kwargs)

    monkeypatch.setattr(ingest_sql, "index_rows", deadlocked_once)
    paths = [dicom_copy(tmp_path) for _ in range(2)]
    assert [r.status for r in ingest_all(paths)] == ["stored", "stored"]
    assert len(calls) == 3  # the batch, then each object again
    assert Instance.objects.count() == 2


# --- a session that goes on storing into the study it created (a C-STORE association) ------


def _one(session, path):
    return study_ingest(session=session, spooled=[spool_path(path)])[0]


def test_a_new_instance_of_a_study_the_session_created_is_not_looked_up_first(cast, tmp_path):
    session = IngestSession(actor=system_actor("CHEM"))
    study, series = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.72"
    assert _one(session, dicom_copy(tmp_path, study_uid=study, series_uid=series)).ok
    second = dicom_copy(tmp_path, study_uid=study, series_uid=series)
    with CaptureQueriesContext(connection) as queries:
        assert _one(session, second).status == "stored"
    looked_up = [q["sql"] for q in queries.captured_queries if "sop_instance_uid" in q["sql"]]
    assert not [sql for sql in looked_up if sql.lstrip().upper().startswith("SELECT")]
    assert Study.objects.get().instance_count == 2
    # The same instance again in the same session: looked up, and a duplicate.
    assert _one(session, second).status == "duplicate"
    assert Study.objects.get().instance_count == 2


def test_an_instance_another_writer_stored_meanwhile_is_still_a_duplicate_or_a_conflict(
    cast, tmp_path, private_storage
):
    session = IngestSession(actor=system_actor("CHEM"))
    study, series = "1.2.826.0.1.3680043.8.498.73", "1.2.826.0.1.3680043.8.498.74"
    first = dicom_copy(tmp_path, study_uid=study, series_uid=series)
    assert _one(session, first).ok
    # Another association of the same hospital stores two more instances of the study.
    twin = dicom_copy(tmp_path, study_uid=study, series_uid=series)
    other = dicom_copy(tmp_path, study_uid=study, series_uid=series)
    assert [r.status for r in ingest_all([twin, other])] == ["stored", "stored"]
    # This session thinks both are new: the index refuses the insert, and the objects are
    # indexed again from fresh rows: the same bytes are a duplicate, others a conflict.
    assert _one(session, twin).status == "duplicate"
    assert _one(session, changed_copy(other, tmp_path)).status == "conflict"
    assert Instance.objects.count() == 3
    assert Study.objects.get().instance_count == 3
    assert len(stored_files(private_storage)) == 3, "no object is left behind"


def test_a_sop_uid_of_another_study_is_refused_even_when_the_session_thinks_it_new(
    cast, tmp_path, private_storage
):
    elsewhere_path = dicom_copy(tmp_path)
    elsewhere = dcmread(elsewhere_path)
    assert ingest_all([elsewhere_path])[0].ok
    session = IngestSession(actor=system_actor("CHEM"))
    study, series = "1.2.826.0.1.3680043.8.498.75", "1.2.826.0.1.3680043.8.498.76"
    assert _one(session, dicom_copy(tmp_path, study_uid=study, series_uid=series)).ok
    reused = dicom_copy(tmp_path, study_uid=study, series_uid=series)
    ds = dcmread(reused)
    ds.SOPInstanceUID = elsewhere.SOPInstanceUID  # the UID of an instance of another study
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(reused, enforce_file_format=True)
    result = _one(session, reused)
    assert result.status in ("rejected", "conflict")
    assert Instance.objects.filter(sop_instance_uid=elsewhere.SOPInstanceUID).count() == 1
    assert Study.objects.get(study_uid=study).instance_count == 1
    assert len(stored_files(private_storage)) == 2, "no object is left behind"


def test_a_long_session_forgets_what_it_created_beyond_its_limit(cast, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_index, "CREATED_LIMIT", 2)
    session = IngestSession(actor=system_actor("CHEM"))
    study, series = "1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.78"
    for expected in (1, 2, 0):  # the third instance is over the limit: all forgotten
        assert _one(session, dicom_copy(tmp_path, study_uid=study, series_uid=series)).ok
        assert sum(len(sops) for sops in session.cache.created.values()) == expected
    assert _one(session, dicom_copy(tmp_path, study_uid=study, series_uid=series)).ok
    assert Study.objects.get().instance_count == 4
