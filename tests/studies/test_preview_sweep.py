"""The sweep that queues the series previews a broker outage or a dead worker left unmade."""

import datetime

import pytest
from django.utils import timezone

from studies import ingest_index, storage, tasks
from studies.dicom import InvalidDicom
from studies.models import Instance, Series

from .conftest import dicom_copy, ingest


@pytest.fixture
def queued(monkeypatch):
    """series_preview.delay, recorded instead of sent to a broker."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.series_preview, "delay", sent.append)
    return sent


def _stored_while_the_broker_was_down(tmp_path, monkeypatch, inline_tasks, name="CT_small.dcm"):
    inline_tasks.conf.task_always_eager = False  # inline_tasks restores it
    monkeypatch.setattr(ingest_index, "_previews_paused_until", 0.0)

    def unreachable(instance_id):
        raise OSError("the broker is down")

    with monkeypatch.context() as m:
        m.setattr(tasks.series_preview, "delay", unreachable)
        assert ingest(dicom_copy(tmp_path, name)).status == "stored"
    inline_tasks.conf.task_always_eager = True
    return Instance.objects.get()


def _age(instance: Instance) -> None:
    earlier = timezone.now() - tasks.PREVIEW_GRACE - datetime.timedelta(seconds=1)
    Instance.objects.filter(pk=instance.pk).update(created_at=earlier)


def test_a_series_stored_while_the_broker_was_down_gets_its_preview_later(
    cast, tmp_path, monkeypatch, inline_tasks, queued
):
    instance = _stored_while_the_broker_was_down(tmp_path, monkeypatch, inline_tasks)
    assert Series.objects.get().preview_key == ""
    assert tasks.previews_due() == 0  # its own queueing may still be on its way
    _age(instance)
    assert tasks.previews_due() == 1
    assert queued == [instance.pk]
    key = tasks.series_preview(instance.pk)
    assert Series.objects.get().preview_key == key != ""
    assert tasks.previews_due() == 0  # nothing more to queue
    assert queued == [instance.pk]


def test_series_without_an_image_are_never_queued_and_leave_the_sweep(cast, tmp_path, queued):
    ingest(dicom_copy(tmp_path, "rtplan.dcm"))
    assert tasks.previews_due() == 0
    assert Series.objects.get().preview_given_up_at is None  # an image may still come
    _age(Instance.objects.get())
    assert tasks.previews_due() == 0
    assert queued == []
    assert Series.objects.get().preview_given_up_at is not None


def test_a_preview_that_never_comes_is_queued_a_bounded_number_of_times(
    cast, tmp_path, monkeypatch, inline_tasks, queued
):
    """A worker killed decoding the image (the OOM killer) records nothing: the sweep must
    not hand the series to a worker every ten minutes for ever."""
    instance = _stored_while_the_broker_was_down(tmp_path, monkeypatch, inline_tasks)
    _age(instance)
    for _ in range(tasks.PREVIEW_REQUEUES + 2):
        tasks.previews_due()  # each task "dies": nothing is recorded
    assert queued == [instance.pk] * tasks.PREVIEW_REQUEUES
    assert Series.objects.get().preview_given_up_at is not None


def test_a_preview_queued_twice_is_made_once(cast, tmp_path, monkeypatch, inline_tasks):
    instance = _stored_while_the_broker_was_down(tmp_path, monkeypatch, inline_tasks)
    key = tasks.series_preview(instance.pk)

    def undecodable(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(tasks, "render_frame", undecodable)
    assert tasks.series_preview(instance.pk) == key


def test_a_series_whose_image_does_not_decode_is_given_up(
    cast, tmp_path, monkeypatch, inline_tasks, queued
):
    instance = _stored_while_the_broker_was_down(tmp_path, monkeypatch, inline_tasks)
    _age(instance)

    def undecodable(*args, **kwargs):
        raise InvalidDicom("The pixel data cannot be decoded.")

    monkeypatch.setattr(tasks, "render_frame", undecodable)
    assert tasks.series_preview(instance.pk) == ""
    series = Series.objects.get()
    assert series.preview_key == ""
    assert series.preview_given_up_at is not None
    assert tasks.previews_due() == 0
    assert queued == []


def test_a_lost_object_is_given_up_and_a_storage_outage_retried(
    cast, tmp_path, monkeypatch, inline_tasks
):
    instance = _stored_while_the_broker_was_down(tmp_path, monkeypatch, inline_tasks)

    def down(*, key):
        raise storage.ObjectUnavailable(conclusive=False)

    with monkeypatch.context() as m:
        m.setattr(tasks.storage, "object_reader", down)
        with pytest.raises(storage.ObjectUnavailable):
            tasks.series_preview.run(instance.pk)
    assert Series.objects.get().preview_given_up_at is None
    storage.object_delete(key=instance.storage_key)
    assert tasks.series_preview.run(instance.pk) == ""
    assert Series.objects.get().preview_given_up_at is not None


def test_a_broker_down_during_the_sweep_spends_no_requeue(
    cast, tmp_path, monkeypatch, inline_tasks
):
    instance = _stored_while_the_broker_was_down(tmp_path, monkeypatch, inline_tasks)
    _age(instance)

    def unreachable(instance_id):
        raise OSError("the broker is down")

    monkeypatch.setattr(tasks.series_preview, "delay", unreachable)
    assert tasks.previews_due() == 0
    assert Series.objects.get().preview_requeues == 0
