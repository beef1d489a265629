"""A hospital heals an instance whose stored copy failed its fixity check by sending it again:
the same bytes (as stored: preamble sanitised) replace the copy, audited (study.restore); other
bytes are still a conflict, and a healthy instance sent again stays a plain duplicate."""

import hashlib
import json

import pytest
from django.core.management import call_command
from pydicom import dcmread

from audit.models import AuditEvent
from consent.models import Role
from consent.services import provisioning
from studies import storage, tasks
from studies.models import Instance
from studies.tasks import fixity_check
from tests.conftest import ADMIN, XAVIER_ID, client_for

from .conftest import dicom_copy, ingest, share_with_alice
from .test_dicomweb import stow
from .test_fixity_served import corrupt
from .test_listener import _associate, listener  # noqa: F401 (a fixture)


def chem_pacs(cast):
    """CHEM's hospital system, which made Xavier's study."""
    provisioning.account_create(
        actor=ADMIN, username="chem-pacs", role=Role.SYSTEM, institution_code="CHEM"
    )
    return client_for("chem-pacs", "CHEM")


def _sha256(key: str) -> str:
    return hashlib.sha256(b"".join(storage.object_chunks(key=key))).hexdigest()


def _stored(path):
    result = ingest(path)
    assert result.status == "stored"
    return result


def _restores() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="study.restore"))


def test_the_same_bytes_sent_by_stow_restore_a_failed_copy(cast, tmp_path, private_storage):
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    result = _stored(path)
    failed = corrupt(result)
    response = stow(chem_pacs(cast), [path.read_bytes()])
    assert response.status_code == 200
    (referenced,) = json.loads(response.content)["00081199"]["Value"]
    assert referenced["00081155"]["Value"] == [result.sop_instance_uid]
    restored = Instance.objects.get(pk=failed.pk)
    assert restored.fixity_ok is True
    assert restored.fixity_checked_at > failed.fixity_checked_at
    assert restored.storage_key != failed.storage_key
    assert _sha256(restored.storage_key) == restored.sha256 == failed.sha256
    # The failed copy is gone; only the restored one is left.
    assert not storage.object_local_path(key=failed.storage_key).exists()
    assert [p.name for p in private_storage.rglob("*.dcm")] == [
        restored.storage_key.rpartition("/")[2]
    ]
    (event,) = _restores()
    assert (event.outcome, event.actor_username, event.acting_institution) == (
        "permit",
        "chem-pacs",
        "CHEM",
    )
    assert (event.patient, event.study_uid) == (XAVIER_ID, result.study_uid)
    assert event.detail["sop_instance_uid"] == result.sop_instance_uid
    # Served again, and found intact by the next check.
    share_with_alice(cast)
    alice = client_for("alice", "CHL")
    instance_path = (
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}"
    )
    response = alice.get(instance_path, HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == path.read_bytes()
    assert fixity_check(instance_ids=[failed.pk]) == []


def test_an_import_of_the_same_file_restores_a_failed_copy(cast, tmp_path, capsys):
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    failed = corrupt(_stored(path))
    call_command("import_dicom", str(path), "--institution", "CHEM", "--no-progress")
    assert "1 file(s): 0 stored, 0 duplicate, 1 restored, 0 rejected" in capsys.readouterr().out
    restored = Instance.objects.get(pk=failed.pk)
    assert restored.fixity_ok is True
    assert _sha256(restored.storage_key) == restored.sha256
    assert [e.detail["channel"] for e in _restores()] == ["cli"]


def test_a_file_whose_preamble_was_zeroed_restores_its_copy(cast, tmp_path):
    """The recorded SHA-256 is of the object as stored (an unsafe preamble zeroed): the
    same file sent again, unsafe preamble and all, is the same object."""
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    data = bytearray(path.read_bytes())
    data[:4] = b"MZ\x90\x00"  # a Windows executable header: zeroed at ingest
    path.write_bytes(bytes(data))
    failed = corrupt(_stored(path))
    assert ingest(path).status == "restored"
    restored = Instance.objects.get(pk=failed.pk)
    assert restored.fixity_ok is True
    assert storage.object_read(key=restored.storage_key, start=0, length=132) == (
        bytes(128) + b"DICM"
    )


def test_other_bytes_under_the_uid_of_a_failed_copy_are_still_a_conflict(cast, tmp_path):
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    failed = corrupt(_stored(path))
    other = tmp_path / "other.dcm"
    ds = dcmread(path)
    ds.StudyDescription = "Not the stored one"
    ds.save_as(other, enforce_file_format=True)
    response = stow(chem_pacs(cast), [other.read_bytes()])
    assert response.status_code == 409
    (refused,) = json.loads(response.content)["00081198"]["Value"]
    assert refused["00081197"]["Value"] == [0x0111]
    unchanged = Instance.objects.get(pk=failed.pk)
    assert (unchanged.fixity_ok, unchanged.storage_key) == (False, failed.storage_key)
    assert AuditEvent.objects.filter(action="study.store_conflict").count() == 1
    assert _restores() == []


def test_a_healthy_instance_sent_again_stays_a_plain_duplicate(cast, tmp_path):
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    result = _stored(path)
    fixity_check(instance_ids=list(Instance.objects.values_list("pk", flat=True)))
    before = Instance.objects.get(sop_instance_uid=result.sop_instance_uid)
    assert before.fixity_ok is True
    assert ingest(path).status == "duplicate"
    after = Instance.objects.get(pk=before.pk)
    assert (after.storage_key, after.fixity_checked_at) == (
        before.storage_key,
        before.fixity_checked_at,
    )
    assert _restores() == []


def test_a_failed_copy_sent_twice_in_one_body_is_restored_once(cast, tmp_path):
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    failed = corrupt(_stored(path))
    response = stow(chem_pacs(cast), [path.read_bytes()] * 2)
    assert response.status_code == 200
    assert len(json.loads(response.content)["00081199"]["Value"]) == 2
    assert len(_restores()) == 1
    restored = Instance.objects.get(pk=failed.pk)
    assert _sha256(restored.storage_key) == restored.sha256
    assert len(list(storage.objects_under("dicom"))) == 1


def test_a_restore_whose_index_fails_keeps_the_failed_copy_and_leaves_nothing(
    cast, tmp_path, monkeypatch, private_storage
):
    from studies import fixity

    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    failed = corrupt(_stored(path))

    def broken(*args, **kwargs):
        raise RuntimeError("the index write failed")

    monkeypatch.setattr(fixity, "audit_event", broken)
    with pytest.raises(RuntimeError):
        ingest(path)
    unchanged = Instance.objects.get(pk=failed.pk)
    assert (unchanged.fixity_ok, unchanged.storage_key) == (False, failed.storage_key)
    assert len(list(private_storage.rglob("*.dcm"))) == 1  # the new copy deleted


def test_a_fixity_verdict_on_a_copy_replaced_meanwhile_is_not_written(cast, tmp_path, monkeypatch):
    """A check that read the failed copy while a resend replaced it must not mark the
    restored instance as failed again."""
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    failed = corrupt(_stored(path))
    object_sha256 = storage.object_sha256

    def restored_while_hashing(*, key):
        digest = object_sha256(key=key)
        assert ingest(path).status == "restored"
        return digest

    monkeypatch.setattr(tasks.storage, "object_sha256", restored_while_hashing)
    fixity_check(instance_ids=[failed.pk])
    assert Instance.objects.get(pk=failed.pk).fixity_ok is True


@pytest.mark.django_db(transaction=True)
def test_an_instance_stored_by_c_store_is_restored_by_c_store(listener, cast, tmp_path):  # noqa: F811
    """The listener writes each received data set into the same Part 10 object: sent again,
    it matches the SHA-256 recorded at the first C-STORE."""
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assoc = _associate(listener)
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    instance = Instance.objects.get()
    failed = corrupt(instance)
    assoc = _associate(listener)
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    restored = Instance.objects.get(pk=failed.pk)
    assert restored.fixity_ok is True
    assert _sha256(restored.storage_key) == restored.sha256
    (event,) = _restores()
    assert (event.detail["channel"], event.acting_institution) == ("dimse", "CHEM")
