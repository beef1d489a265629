"""The gateway's own disk failing under a STOW-RS: an outage is a 503 that names it, a folder
it may not write a 500 of its own, anything else's error no storage error; nothing is left
behind."""

import errno

import pytest
from django.core.files.storage import filesystem

from studies import spool, storage
from studies.models import Instance, Series, Study
from tests.conftest import client_for

from .conftest import dicom_copy, stored_files
from .test_dicomweb import stow

pytestmark = pytest.mark.django_db(transaction=True)


MESSAGES = {
    errno.ENOSPC: "No space left on device",
    errno.EIO: "Input/output error",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
}


def _failing(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, MESSAGES[code])

    return fail


WHERE = pytest.mark.parametrize(
    "where",
    [
        (spool.SpoolWriter, "_consume"),  # spooling the body
        (filesystem, "file_move_safe"),  # moving a spool file into storage
        (storage, "_fsync"),  # making the stored objects durable
    ],
    ids=["spool", "move", "sync"],
)


def _nothing_half_stored(tmp_path, private_storage) -> None:
    assert (Study.objects.count(), Series.objects.count(), Instance.objects.count()) == (0, 0, 0)
    assert stored_files(private_storage) == []
    assert list((tmp_path / "spool").glob("*")) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EROFS])
@WHERE
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
    _nothing_half_stored(tmp_path, private_storage)
    monkeypatch.undo()
    assert stow(client_for("chl-pacs", "CHL"), data).status_code == 200


@WHERE
def test_a_storage_folder_the_gateway_may_not_write_is_a_500_of_its_own(
    cast, tmp_path, private_storage, monkeypatch, where
):
    """No retry fixes permissions: not "unavailable, retry" but a fault for an operator."""
    data = [dicom_copy(tmp_path, patient_id="CHL-Y1").read_bytes() for _ in "ab"]
    monkeypatch.setattr(*where, _failing(errno.EACCES))
    response = stow(client_for("chl-pacs", "CHL"), data)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "STORAGE_MISCONFIGURED"
    assert "Permission denied" in error["message"]
    assert str(tmp_path) not in error["message"]
    _nothing_half_stored(tmp_path, private_storage)


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC])
def test_an_os_error_that_is_not_the_storage_is_no_storage_error(cast, monkeypatch, code):
    """A file something else reads (a template, a settings file) failing is a plain server
    error, never told to the client as the storage being down."""
    monkeypatch.setattr("consent.selectors.record_history", _failing(code))
    response = client_for("xavier").get("/api/v1/me/record/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "SERVER_ERROR"
