"""A local storage that is gone (its root removed, an empty mount point, a disk answering
EIO) is an outage, not every object lost: no fixity verdict, and 503 to a retrieval."""

import errno
import io
from pathlib import Path

import pytest
from django.core.files.storage import filesystem

from studies import storage
from studies.models import Instance
from studies.tasks import fixity_check
from tests.conftest import client_for

from .conftest import dicom_copy, ingest, share_with_alice


class _FailingDisk(io.BytesIO):
    """A file whose reads fail as a failing disk's do."""

    def read(self, *args):
        raise OSError(errno.EIO, "Input/output error")


def _removed(root: Path, monkeypatch) -> None:
    root.rename(root.with_name("unmounted"))


def _empty_mount_point(root: Path, monkeypatch) -> None:
    root.rename(root.with_name("unmounted"))
    root.mkdir()  # what an unmounted mount point looks like: a folder, empty


def _failing_disk(root: Path, monkeypatch) -> None:
    # FileSystemStorage opens with the builtin open; its reads fail with EIO.
    monkeypatch.setattr(filesystem, "open", lambda *a, **k: _FailingDisk(), raising=False)


OUTAGES = pytest.mark.parametrize(
    "outage",
    [_removed, _empty_mount_point, _failing_disk],
    ids=["root-removed", "empty-mount-point", "eio"],
)


def _restore(root: Path, monkeypatch) -> None:
    monkeypatch.undo()
    moved = root.with_name("unmounted")
    if moved.exists():
        if root.exists():
            root.rmdir()
        moved.rename(root)


@OUTAGES
def test_a_fixity_check_during_a_storage_outage_gives_no_verdict(
    cast, tmp_path, private_storage, monkeypatch, outage
):
    for _ in range(2):
        ingest(dicom_copy(tmp_path))
    ids = list(Instance.objects.order_by("pk").values_list("pk", flat=True))
    outage(private_storage, monkeypatch)
    with pytest.raises(storage.ObjectUnavailable) as raised:
        fixity_check(instance_ids=ids)
    assert raised.value.conclusive is False
    assert raised.value.status_code == 503
    assert not Instance.objects.filter(fixity_checked_at__isnull=False).exists(), "none judged"
    _restore(private_storage, monkeypatch)
    assert fixity_check(instance_ids=ids) == []
    assert Instance.objects.filter(fixity_ok=True).count() == 2


def test_a_file_missing_under_a_storage_that_is_there_is_still_lost(
    cast, tmp_path, private_storage
):
    for _ in range(2):
        ingest(dicom_copy(tmp_path))
    lost, kept = Instance.objects.order_by("pk")
    storage.object_local_path(key=lost.storage_key).unlink()
    assert fixity_check(instance_ids=[lost.pk, kept.pk]) == [lost.sop_instance_uid]
    with pytest.raises(storage.ObjectUnavailable) as raised:
        storage.object_sha256(key=lost.storage_key)
    assert (raised.value.conclusive, raised.value.status_code) == (True, 500)


def _shared_study(cast, tmp_path):
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    share_with_alice(cast)
    return result


@OUTAGES
def test_an_instance_retrieved_during_a_storage_outage_is_a_503(
    cast, tmp_path, private_storage, monkeypatch, outage
):
    result = _shared_study(cast, tmp_path)
    outage(private_storage, monkeypatch)
    response = client_for("alice", "CHL").get(
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}",
        HTTP_ACCEPT="application/dicom",
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "OBJECT_UNAVAILABLE"


@pytest.mark.parametrize("outage", [_removed, _empty_mount_point], ids=["removed", "empty"])
def test_a_study_retrieved_while_the_storage_root_is_gone_is_a_503(
    cast, tmp_path, private_storage, monkeypatch, outage
):
    result = _shared_study(cast, tmp_path)
    outage(private_storage, monkeypatch)
    response = client_for("alice", "CHL").get(f"/dicomweb/studies/{result.study_uid}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "OBJECT_UNAVAILABLE"
