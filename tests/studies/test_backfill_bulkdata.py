"""manage.py backfill_bulkdata: idempotent, resumable, a failed instance left as it was."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict
from pydicom import dcmread

from studies import storage
from studies.models import Instance, Series, Study
from tests.conftest import client_for

from .conftest import dicom_copy, ingest, pydicom_file, share_with_alice

MARKER = "anim-bulkdata:"


def _without_references(value: object) -> object:
    """DICOM JSON as ingest wrote it before bulk data references: those elements left out."""
    if isinstance(value, list):
        return [_without_references(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        k: _without_references(v)
        for k, v in value.items()
        if not (isinstance(v, dict) and "BulkDataURI" in v)
    }


def _make_old(instance: Instance) -> None:
    Instance.objects.filter(pk=instance.pk).update(
        metadata=_without_references(instance.metadata), metadata_version=1
    )


def _rows() -> dict[int, dict]:
    """Every stored field of every instance, study and series, to compare runs by."""
    return {
        **{("i", i.pk): model_to_dict(i) for i in Instance.objects.all()},
        **{("s", s.pk): model_to_dict(s) for s in Study.objects.all()},
        **{("e", e.pk): model_to_dict(e) for e in Series.objects.all()},
    }


@pytest.fixture
def stored(cast, tmp_path) -> dict[str, Instance]:
    """Three instances as ingest writes them today, then made as they were stored before
    bulk data references: native Pixel Data (CT), waveform samples in a sequence (ECG), and
    a JPEG image whose Pixel Data is encapsulated (it has no reference to add)."""
    found = {}
    for name, file in (
        ("ct", "CT_small.dcm"),
        ("ecg", "waveform_ecg.dcm"),
        ("jpeg", "SC_rgb_jpeg_dcmtk.dcm"),
    ):
        result = ingest(dicom_copy(tmp_path, file, patient_id="CHEM-X1"))
        assert result.status == "stored", result.reason
        found[name] = Instance.objects.get(sop_instance_uid=result.sop_instance_uid)
    for instance in found.values():
        _make_old(instance)
    return found


def _run(**options) -> str:
    out = io.StringIO()
    call_command("backfill_bulkdata", stdout=out, **options)
    return out.getvalue()


def _references(instance: Instance) -> list[str]:
    from studies.bulkdata import references

    return list(references(Instance.objects.get(pk=instance.pk).metadata))


def test_ingest_writes_the_current_metadata_version(cast, tmp_path):
    ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assert Instance.objects.get().metadata_version == 2


def test_it_gives_old_instances_the_references_ingest_writes_today(stored):
    today = {name: instance.metadata for name, instance in stored.items()}
    assert _references(stored["ct"]) == []
    before = _rows()
    output = _run()
    assert "done: 3 instances: 2 updated, 1 already current, 0 failed" in output
    after = _rows()
    for name, instance in stored.items():
        row = Instance.objects.get(pk=instance.pk)
        assert row.metadata == today[name]
        assert row.metadata_version == 2
    # The waveform's samples are referenced inside its WaveformSequence items.
    (first_waveform, *_) = today["ecg"]["54000100"]["Value"]
    assert first_waveform["54001010"]["BulkDataURI"].startswith(MARKER)
    # Nothing else changed: each instance's other fields, its study and series.
    for key, row in before.items():
        changed = {f for f in row if row[f] != after[key][f]}
        assert changed <= ({"metadata", "metadata_version"} if key[0] == "i" else set())


def test_a_second_run_changes_nothing(stored):
    _run()
    before = _rows()
    output = _run()
    assert "done: 0 instances: 0 updated, 0 already current, 0 failed" in output
    assert _rows() == before


def test_the_references_it_adds_are_served(cast, stored):
    _run()
    share_with_alice(cast)
    ct = stored["ct"]
    alice = client_for("alice", "CHL")
    base = (
        f"/dicomweb/studies/{ct.study.study_uid}/series/{ct.series.series_uid}"
        f"/instances/{ct.sop_instance_uid}"
    )
    (metadata,) = json.loads(b"".join(alice.get(f"{base}/metadata").streaming_content))
    url = metadata["7FE00010"]["BulkDataURI"]
    assert url.startswith(f"http://testserver{base}/bulkdata/")
    response = alice.get(
        url.removeprefix("http://testserver"), HTTP_ACCEPT="application/octet-stream"
    )
    assert b"".join(response.streaming_content) == dcmread(pydicom_file("CT_small.dcm")).PixelData


def test_it_works_in_batches_with_a_progress_line_for_each(stored):
    output = _run(batch_size=2)
    lines = output.splitlines()
    assert lines[:2] == [
        "read: 2 instances: 2 updated, 0 already current, 0 failed",
        "read: 3 instances: 2 updated, 1 already current, 0 failed",
    ]
    assert lines[2] == "done: 3 instances: 2 updated, 1 already current, 0 failed"


def test_it_only_adds_references_leaving_the_rest_of_the_metadata_as_stored(stored):
    """Whatever ingest would write today besides, the stored attributes stay as they are."""
    ct = stored["ct"]
    old = Instance.objects.get(pk=ct.pk).metadata
    old["00081030"] = {"vr": "LO", "Value": ["As stored long ago"]}
    del old["00100010"]
    Instance.objects.filter(pk=ct.pk).update(metadata=old)
    _run()
    row = Instance.objects.get(pk=ct.pk).metadata
    assert row["00081030"] == {"vr": "LO", "Value": ["As stored long ago"]}
    assert "00100010" not in row
    assert _without_references(row) == old
    assert MARKER in row["7FE00010"]["BulkDataURI"]
    assert len(_references(ct)) == 2  # Pixel Data and a private OB value of 2,068 bytes


def _fails(stored, name: str, break_it) -> tuple[str, dict]:
    broken = stored[name]
    break_it(broken)
    before = model_to_dict(Instance.objects.get(pk=broken.pk))
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 instances were left as they were"):
        call_command("backfill_bulkdata", stdout=out)
    assert model_to_dict(Instance.objects.get(pk=broken.pk)) == before
    # The others were brought up to date all the same.
    others = Instance.objects.exclude(pk=broken.pk)
    assert set(others.values_list("metadata_version", flat=True)) == {2}
    return out.getvalue(), broken


def test_a_missing_object_is_reported_and_its_instance_left_as_it_was(stored):
    output, broken = _fails(stored, "ct", lambda i: storage.object_delete(key=i.storage_key))
    assert "done: 3 instances: 1 updated, 1 already current, 1 failed" in output
    assert (
        f"failed: instance {broken.pk} ({broken.sop_instance_uid}): the stored object is missing"
        in output
    )


def test_a_corrupt_object_is_reported_and_its_instance_left_as_it_was(stored):
    def truncate(instance: Instance) -> None:
        path = storage.object_local_path(key=instance.storage_key)
        path.write_bytes(path.read_bytes()[:400])

    output, broken = _fails(stored, "ecg", truncate)
    assert f"({broken.sop_instance_uid}): the stored object does not parse:" in output


def test_an_object_that_is_no_longer_its_rows_is_left_alone(stored, tmp_path):
    """Another file in its place: references would name places in the wrong object."""

    def replace(instance: Instance) -> None:
        path = storage.object_local_path(key=instance.storage_key)
        path.write_bytes(dicom_copy(tmp_path, "MR_small.dcm").read_bytes())

    output, _ = _fails(stored, "ct", replace)
    assert "the stored object is no longer the one its row describes" in output


def test_a_run_stopped_by_a_storage_outage_is_resumed_by_the_next(stored, monkeypatch):
    real = storage.object_open
    opened = []

    def down_after_one(*, key: str):
        opened.append(key)
        if len(opened) > 1:
            raise storage.ObjectUnavailable(conclusive=False, what="test")
        return real(key=key)

    monkeypatch.setattr(storage, "object_open", down_after_one)
    with pytest.raises(CommandError, match="Run it again"):
        _run(batch_size=1)
    versions = dict(Instance.objects.values_list("pk", "metadata_version"))
    assert sorted(versions.values()) == [1, 1, 2]
    monkeypatch.setattr(storage, "object_open", real)
    assert "done: 2 instances: 1 updated, 1 already current, 0 failed" in _run()
    assert set(Instance.objects.values_list("metadata_version", flat=True)) == {2}


def test_it_refuses_a_batch_size_below_one(db):
    with pytest.raises(CommandError, match="--batch-size"):
        _run(batch_size=0)
