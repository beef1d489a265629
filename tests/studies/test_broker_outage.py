"""A Celery broker that cannot be reached never undoes an instance already stored and indexed."""

import json

import pytest
from pydicom import dcmread

from studies import storage
from studies.models import Instance
from tests.conftest import client_for

from .conftest import dicom_copy, ingest, stored_files
from .test_dicomweb import stow
from .test_listener import _associate, listener  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker_down(inline_tasks, monkeypatch, caplog):
    """Tasks go to a broker on a closed port (Redis down), as in production with a broker."""
    broker_url = inline_tasks.conf.broker_url
    inline_tasks.conf.task_always_eager = False  # inline_tasks restores it
    inline_tasks.conf.broker_url = "redis://127.0.0.1:1/0"
    # Celery's own settings prefer this variable to broker_url (CI sets it to a live Redis).
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    # Each test's first store tries the broker (an earlier test's failure paused them).
    monkeypatch.setattr("studies.ingest_index._previews_paused_until", 0.0)
    # The app keeps its connection pools: new ones are made for the closed port.
    monkeypatch.setattr(inline_tasks, "_pool", None)
    monkeypatch.setattr(inline_tasks.amqp, "_producer_pool", None)
    yield caplog
    inline_tasks.conf.broker_url = broker_url


def _intact(instance: Instance) -> bool:
    return storage.object_sha256(key=instance.storage_key) == instance.sha256


def test_a_stow_is_stored_and_acknowledged_while_the_broker_is_down(cast, tmp_path, broker_down):
    data = dicom_copy(tmp_path, patient_id="CHL-Y1").read_bytes()
    response = stow(client_for("chl-pacs", "CHL"), [data])
    assert response.status_code == 200, response.content
    assert len(json.loads(response.content)["00081199"]["Value"]) == 1
    assert _intact(Instance.objects.get())
    assert "preview" in broker_down.text.lower()


def test_an_instance_stored_while_the_broker_is_down_keeps_its_object(
    cast, tmp_path, private_storage, broker_down
):
    path = dicom_copy(tmp_path)
    result = ingest(path)
    assert result.status == "stored", result
    (instance,) = Instance.objects.all()
    assert stored_files(private_storage) == [storage.object_local_path(key=instance.storage_key)]
    # Sent again (as a sender does after a failure), it is the same instance, still readable.
    assert ingest(path).status == "duplicate"
    assert _intact(Instance.objects.get())


def test_a_c_store_is_acknowledged_only_with_its_object_while_the_broker_is_down(
    listener,  # noqa: F811
    tmp_path,
    broker_down,
):
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assoc = _associate(listener)
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status.Status == 0x0000
    assert _intact(Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID))


def test_after_a_failed_queueing_previews_are_not_tried_for_a_while(
    cast, tmp_path, inline_tasks, monkeypatch
):
    """Each attempt on a broker that is down holds the store path (~0.6 s): one attempt,
    then none until BROKER_RETRY_AFTER has passed."""
    from studies import ingest_index, tasks

    inline_tasks.conf.task_always_eager = False  # inline_tasks restores it
    monkeypatch.setattr(ingest_index, "_previews_paused_until", 0.0)
    tried = []

    def unreachable(instance_id):
        tried.append(instance_id)
        raise OSError("the broker is down")

    monkeypatch.setattr(tasks.series_preview, "delay", unreachable)
    for _ in range(3):  # three new series
        assert ingest(dicom_copy(tmp_path)).status == "stored"
    assert len(tried) == 1
    monkeypatch.setattr(ingest_index, "_previews_paused_until", 0.0)  # the pause is over
    assert ingest(dicom_copy(tmp_path)).status == "stored"
    assert len(tried) == 2
