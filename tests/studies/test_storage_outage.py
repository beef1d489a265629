"""A disk that cannot take a STOW-RS body is a 503 that names it, and leaves nothing behind."""

import errno

import pytest

from studies import spool, storage
from studies.models import Instance, Series, Study
from tests.conftest import client_for

from .conftest import dicom_copy, stored_files
from .test_dicomweb import stow

pytestmark = pytest.mark.django_db(transaction=True)


MESSAGES = {
    errno.ENOSPC: "No space left on device",
    errno.EIO: "Input/output error",
    errno.EACCES: "Permission denied",
}


def _failing(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, MESSAGES[code])

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EACCES])
@pytest.mark.parametrize(
    "where",
    [
        (spool.SpoolWriter, "_consume"),  # spooling the body
        (storage, "object_put"),  # moving a spool file into storage
        (storage, "_fsync"),  # making the stored objects durable
    ],
    ids=["spool", "move", "sync"],
)
def test_a_failing_disk_is_a_503_and_nothing_is_half_stored(
    cast, tmp_path, private_storage, monkeypatch, where, code
):
    data = [dicom_copy(tmp_path, patient_id="CHL-Y1").read_bytes() for _ in "ab"]
    monkeypatch.setattr(*where, _failing(code))
    response = stow(client_for("chl-pacs", "CHL"), data)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "STORAGE_UNAVAILABLE"
    assert MESSAGES[code] in error["message"]
    assert (Study.objects.count(), Series.objects.count(), Instance.objects.count()) == (0, 0, 0)
    assert stored_files(private_storage) == []
    assert list((tmp_path / "spool").glob("*")) == []
    monkeypatch.undo()
    assert stow(client_for("chl-pacs", "CHL"), data).status_code == 200
