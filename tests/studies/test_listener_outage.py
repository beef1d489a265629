"""The DICOM listener through PostgreSQL's restarts and outages: never Success for what is
not stored, and storing again as soon as the database is back."""

import time

import pytest
from django.db import connection
from pydicom import dcmread

from studies import dicom_net
from studies.models import Instance
from tests.conftest import require_postgres

from .conftest import dicom_copy
from .test_listener import _associate, listener  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


OTHERS = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def _others_terminated() -> None:
    """End every other session of the test database (the listener's), as a restart of
    PostgreSQL does, and wait until they are gone."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) " + OTHERS)
        for _ in range(100):
            cursor.execute("SELECT count(*) " + OTHERS)
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)
    pytest.fail("the listener's database sessions did not end")


def _instance(tmp_path):
    return dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))


def test_a_c_store_after_a_database_restart_is_stored(listener, tmp_path):  # noqa: F811
    require_postgres()
    assoc = _associate(listener)
    assert assoc.send_c_store(_instance(tmp_path)).Status == 0x0000
    _others_terminated()
    after = _instance(tmp_path)
    status = assoc.send_c_store(after)
    assoc.release()
    assert status.Status == 0x0000
    assert Instance.objects.filter(sop_instance_uid=after.SOPInstanceUID).exists()


def test_a_c_store_while_the_database_is_down_fails_and_the_next_is_stored(
    listener,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    require_postgres()
    assoc = _associate(listener)
    assert assoc.send_c_store(_instance(tmp_path)).Status == 0x0000
    # The listener's threads share these settings: their next connection is refused.
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")
    _others_terminated()
    refused = _instance(tmp_path)
    assert assoc.send_c_store(refused).Status == 0xA700  # Out of Resources: send it later
    monkeypatch.undo()
    assert assoc.send_c_store(refused).Status == 0x0000
    assoc.release()
    assert Instance.objects.filter(sop_instance_uid=refused.SOPInstanceUID).count() == 1


def test_an_association_while_the_database_is_down_is_rejected_as_transient(
    listener,  # noqa: F811
    monkeypatch,
):
    require_postgres()
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")
    _others_terminated()
    dicom_net.forget_member_titles()  # the calling titles must be read again
    refused = _associate(listener)
    monkeypatch.undo()
    dicom_net.forget_member_titles()
    admitted = _associate(listener)
    echo = admitted.send_c_echo()
    admitted.release()
    assert refused.is_rejected
    assert not refused.is_aborted
    assert echo.Status == 0x0000
