"""Celery tasks: previews and fixity checks, inline and on a real worker with Redis."""

import io
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from django.core.files import File

from studies import storage
from studies.models import Instance, Series
from studies.tasks import fixity_check, fixity_check_batch, fixity_check_due, series_preview
from tests.conftest import require_redis

from .conftest import dicom_copy, ingest


def _tamper(instance: Instance) -> None:
    path = storage.object_local_path(key=instance.storage_key)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_fixity_reports_an_altered_object(cast, tmp_path):
    for _ in range(2):
        ingest(dicom_copy(tmp_path))
    altered, intact = Instance.objects.order_by("pk")
    _tamper(altered)
    assert fixity_check(instance_ids=[altered.pk, intact.pk]) == [altered.sop_instance_uid]
    altered.refresh_from_db()
    intact.refresh_from_db()
    assert (altered.fixity_ok, intact.fixity_ok) == (False, True)
    assert altered.fixity_checked_at is not None


def test_fixity_reports_a_missing_object(cast, tmp_path):
    ingest(dicom_copy(tmp_path))
    instance = Instance.objects.get()
    storage.object_delete(key=instance.storage_key)
    assert fixity_check(instance_ids=[instance.pk]) == [instance.sop_instance_uid]


class _FailingStream(io.BytesIO):
    """An S3 object whose reads fail with ``error`` (S3 opens lazily: errors come at read)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def read(self, *args):
        raise self.error


def _s3_reads_fail(monkeypatch, error: Exception, *, on_key: str) -> None:
    object_open = storage.object_open

    def opened(key):
        return File(_FailingStream(error), name=key) if key == on_key else object_open(key=key)

    monkeypatch.setattr(storage, "object_open", opened)


def test_fixity_reports_an_object_s3_says_it_does_not_have(cast, tmp_path, monkeypatch):
    ingest(dicom_copy(tmp_path))
    instance = Instance.objects.get()
    missing = ClientError({"Error": {"Code": "NoSuchKey", "Message": "-"}}, "GetObject")
    _s3_reads_fail(monkeypatch, missing, on_key=instance.storage_key)
    assert fixity_check(instance_ids=[instance.pk]) == [instance.sop_instance_uid]
    instance.refresh_from_db()
    assert instance.fixity_ok is False


def test_a_storage_that_cannot_answer_gives_no_fixity_verdict(cast, tmp_path, monkeypatch):
    for _ in range(2):
        ingest(dicom_copy(tmp_path))
    checked, unreachable = Instance.objects.order_by("pk")
    down = EndpointConnectionError(endpoint_url="https://s3.example")
    _s3_reads_fail(monkeypatch, down, on_key=unreachable.storage_key)
    with pytest.raises(storage.ObjectUnavailable):
        fixity_check(instance_ids=[checked.pk, unreachable.pk])
    checked.refresh_from_db()
    unreachable.refresh_from_db()
    assert (checked.fixity_ok, checked.fixity_checked_at is not None) == (True, True)
    assert unreachable.fixity_checked_at is None, "still due for the next run, not failed"


def test_fixity_due_checks_the_longest_unchecked_first(cast, tmp_path):
    for _ in range(3):
        ingest(dicom_copy(tmp_path))
    assert fixity_check_due(count=2) == 2
    assert Instance.objects.filter(fixity_ok=True).count() == 2
    fixity_check_due(count=2)
    assert Instance.objects.filter(fixity_ok=True).count() == 3


def test_fixity_due_checks_the_hourly_count_in_batches(cast, tmp_path, settings, monkeypatch):
    """An archive of millions needs thousands checked an hour; a task holds FIXITY_BATCH."""
    from studies import tasks

    for _ in range(5):
        ingest(dicom_copy(tmp_path))
    monkeypatch.setattr(tasks, "FIXITY_BATCH", 2)
    settings.FIXITY_CHECKS_PER_HOUR = 4
    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.fixity_check_batch, "delay", queued.append)
    assert fixity_check_due() == 4
    assert [len(batch) for batch in queued] == [2, 2]


def test_a_preview_is_a_small_png(cast, tmp_path):
    ingest(dicom_copy(tmp_path, "examples_overlay.dcm"))
    instance = Instance.objects.get()
    key = series_preview(instance.pk)
    assert key.endswith(".png")
    data = b"".join(storage.object_chunks(key=key))
    assert data.startswith(b"\x89PNG")
    assert Series.objects.get().preview_key == key


def test_no_preview_for_an_instance_without_image(cast, tmp_path):
    ingest(dicom_copy(tmp_path, "rtplan.dcm"))
    assert Series.objects.filter(preview_key="").count() == 1


def _wait_for(condition, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the worker did not finish in time"
        time.sleep(0.2)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_fixity_and_previews(cast, tmp_path, inline_tasks):
    from celery.contrib.testing.worker import start_worker

    url = require_redis()
    app = inline_tasks
    ingest(dicom_copy(tmp_path))
    ingest(dicom_copy(tmp_path, "MR_small.dcm"))
    Series.objects.update(preview_key="")
    altered = Instance.objects.order_by("pk").first()
    _tamper(altered)
    app.conf.task_always_eager = False
    app.conf.broker_url = url
    # Results are read from the database, so no result backend is needed.
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        ids = list(Instance.objects.values_list("pk", flat=True))
        fixity_check_batch.delay(ids)
        for pk in ids:
            series_preview.delay(pk)
        _wait_for(lambda: not Instance.objects.filter(fixity_checked_at__isnull=True).exists())
        waiting = Series.objects.filter(preview_key="", preview_given_up_at__isnull=True)
        _wait_for(lambda: not waiting.exists())
    assert list(Instance.objects.filter(fixity_ok=False)) == [altered]
    assert Instance.objects.filter(fixity_ok=True).count() == 1
    # The altered copy, checked first, is never read for a preview: its series (of that one
    # image) has none; the other series has its preview.
    assert list(Series.objects.filter(preview_key="")) == [altered.series]
    assert Series.objects.exclude(preview_key="").count() == 1


def test_the_sweep_deletes_only_old_unindexed_objects(cast, tmp_path, settings):
    import datetime
    import os
    import time

    from django.core.files.base import ContentFile

    from studies.tasks import orphans_sweep

    ingest(dicom_copy(tmp_path))
    indexed = Instance.objects.get().storage_key
    orphan = storage.storage().save("dicom/1.2/3.4/5.6.abc.dcm", ContentFile(b"x"))
    fresh = storage.storage().save("dicom/1.2/3.4/7.8.abc.dcm", ContentFile(b"x"))
    old = time.time() - 7200
    for key in (indexed, orphan):
        os.utime(storage.object_local_path(key=key), (old, old))
    stale_spool = Path(settings.SPOOL_DIR) / "stale.dcm"
    waiting_spool = Path(settings.SPOOL_DIR) / "waiting.dcm"  # a slow upload's first part
    stale_spool.parent.mkdir(parents=True, exist_ok=True)
    for path, age_hours in ((stale_spool, 25), (waiting_spool, 2)):
        path.write_bytes(b"x")
        then = time.time() - age_hours * 3600
        os.utime(path, (then, then))
    assert orphans_sweep(older_than=datetime.timedelta(hours=1)) == [orphan]
    assert storage.storage().exists(indexed)
    assert storage.storage().exists(fresh)
    assert not stale_spool.exists()
    assert waiting_spool.exists()


def test_fixity_due_takes_the_never_checked_then_the_oldest_checked(cast, tmp_path, monkeypatch):
    import datetime

    from django.utils import timezone

    from studies import tasks

    for _ in range(4):
        ingest(dicom_copy(tmp_path))
    yesterday, last_week, never, too = Instance.objects.order_by("pk")
    now = timezone.now()
    Instance.objects.filter(pk=yesterday.pk).update(fixity_checked_at=now - datetime.timedelta(1))
    Instance.objects.filter(pk=last_week.pk).update(fixity_checked_at=now - datetime.timedelta(7))
    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.fixity_check_batch, "delay", queued.append)
    assert fixity_check_due(count=3) == 3
    assert sorted(queued[0]) == sorted([never.pk, too.pk, last_week.pk])
