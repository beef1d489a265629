"""Follow-up work on stored studies: previews and fixity checks (Celery; inline without broker)."""

import datetime
import itertools
import logging
import time
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone

from studies import selectors, storage
from studies.dicom import InvalidDicom
from studies.dicom_render import render_frame
from studies.fixity import failed
from studies.models import Instance, Series
from studies.storage_errors import StorageUnavailable

logger = logging.getLogger(__name__)
PREVIEW_SIZE = 256


# Both tasks are idempotent: acknowledged once done, so a worker that stops mid-task (a
# deploy) leaves its task to another. A database that is down or restarting is retried like
# a storage that is, for about 13 minutes (1, 2, 4... 256, then 300 s): a restart or a
# failover, not only a blip.
UNAVAILABLE = (
    OSError,
    storage.ObjectUnavailable,
    StorageUnavailable,
    OperationalError,
    InterfaceError,
)
_RETRIED = {
    "autoretry_for": UNAVAILABLE,
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": False,
    "max_retries": 10,
    "acks_late": True,
}


# Not requeued when its worker dies: an instance whose decoding kills the worker (the OOM
# killer) would kill every next one; a series without a preview is only that.
@shared_task(**_RETRIED)
def series_preview(instance_id: int) -> str:
    """Render a small PNG of the instance's first frame as its series' preview."""
    instance = _preview_source(Instance.objects.select_related("series").get(pk=instance_id))
    if instance.series.preview_key:
        return instance.series.preview_key  # queued twice (the sweep and a late queue)
    if failed(instance.fixity_ok):
        logger.info("No preview for series %s: its images failed fixity", instance.series_id)
        _preview_given_up(instance.series_id)
        return ""
    try:
        with storage.object_reader(key=instance.storage_key) as reader:
            png = render_frame(reader, index=0, media_type="image/png", max_size=PREVIEW_SIZE)
    except (InvalidDicom, storage.ObjectUnavailable) as exc:
        if isinstance(exc, storage.ObjectUnavailable) and not exc.conclusive:
            raise  # the storage is down: retried
        logger.info("No preview for instance %s: %s", instance.pk, exc)
        _preview_given_up(instance.series_id)
        return ""
    key = storage.storage().save(
        storage.preview_key(series_uid=instance.series.series_uid), ContentFile(png)
    )
    updated = Series.objects.filter(pk=instance.series_id, preview_key="").update(preview_key=key)
    if not updated:
        storage.object_delete(key=key)  # another worker made it first
    return key


def _preview_source(instance: Instance) -> Instance:
    """The instance, unless its copy failed its fixity check (never read: it is not the
    patient's image): then the series' middle good image, else the instance all the same."""
    if not failed(instance.fixity_ok):
        return instance
    good = selectors.thumbnail_instance(
        study=instance.study, series=instance.series, intact_only=True
    )
    return good or instance


def _preview_given_up(series_id: int) -> None:
    Series.objects.filter(pk=series_id, preview_key="").update(preview_given_up_at=timezone.now())


def fixity_check(*, instance_ids: list[int]) -> list[str]:
    """Re-hash stored objects against their recorded SHA-256.

    A storage that cannot answer (S3 unreachable, a local storage whose root is gone or
    failing) gives no verdict: the check stops there, the instances already checked keep
    theirs, and the rest stay due for the next run, rather than all being marked as failed
    by an outage.

    Returns
    -------
    list[str]
        SOP Instance UIDs whose object is missing or does not match (also logged).
    """
    mismatches = []
    for instance in Instance.objects.filter(pk__in=instance_ids).iterator():
        try:
            ok = storage.object_sha256(key=instance.storage_key) == instance.sha256
        except storage.ObjectUnavailable as exc:
            if not exc.conclusive:
                raise
            ok = False
        with transaction.atomic():
            # Not if a resend restored it meanwhile (studies.fixity): this verdict is about
            # the copy it replaced.
            Instance.objects.filter(pk=instance.pk, storage_key=instance.storage_key).update(
                fixity_ok=ok, fixity_checked_at=timezone.now()
            )
        if not ok:
            logger.error("Fixity failure: instance %s (%s)", instance.pk, instance.storage_key)
            mismatches.append(instance.sop_instance_uid)
    return mismatches


# Requeued when its worker dies (a fixity check streams the object: memory cannot kill it).
@shared_task(**_RETRIED, reject_on_worker_lost=True)
def fixity_check_batch(instance_ids: list[int]) -> list[str]:
    return fixity_check(instance_ids=instance_ids)


# A series' preview is queued once its first image is committed. A broker that was down then,
# or a worker that died making it, leaves the series without one until this sweep.
PREVIEW_GRACE = datetime.timedelta(minutes=10)
PREVIEW_REQUEUES = 3


@shared_task
def previews_due(batch_size: int = 1000) -> int:
    """Queue the previews still missing for series stored over PREVIEW_GRACE ago, and give up
    on those that have no image or whose requeues are spent (for beat)."""
    settled = timezone.now() - PREVIEW_GRACE
    waiting = Series.objects.filter(preview_key="", preview_given_up_at__isnull=True).exclude(
        Exists(Instance.objects.filter(series=OuterRef("pk"), created_at__gte=settled))
    )
    # Out of the sweep's index, so that it holds only the series still to look at.
    waiting.exclude(
        Exists(Instance.objects.filter(series=OuterRef("pk"), number_of_frames__gt=0))
    ).update(preview_given_up_at=timezone.now())
    waiting.filter(preview_requeues__gte=PREVIEW_REQUEUES).update(
        preview_given_up_at=timezone.now()
    )
    first_image = (
        Instance.objects.filter(series=OuterRef("pk"), number_of_frames__gt=0)
        .order_by("pk")
        .values("pk")[:1]
    )
    due = list(
        waiting.filter(preview_requeues__lt=PREVIEW_REQUEUES)
        .annotate(image=Subquery(first_image))
        .filter(image__isnull=False)
        .order_by("pk")
        .values_list("pk", "image")[:batch_size]
    )
    queued = []
    for series_pk, instance_id in due:
        try:
            series_preview.delay(instance_id)
        except Exception:
            # The broker is down: the rest wait for the next sweep, their requeues unspent.
            logger.exception("Previews not queued (is the broker down?)")
            break
        queued.append(series_pk)
    Series.objects.filter(pk__in=queued).update(preview_requeues=F("preview_requeues") + 1)
    return len(queued)


# Instances per fixity task: a task that fails or is requeued repeats this much work.
FIXITY_BATCH = 500


@shared_task
def fixity_check_due(count: int | None = None) -> int:
    """Queue the fixity checks of the ``count`` instances checked longest ago (for Celery
    beat, hourly: FIXITY_CHECKS_PER_HOUR by default), in tasks of FIXITY_BATCH."""
    count = settings.FIXITY_CHECKS_PER_HOUR if count is None else count
    ids = _fixity_due_ids(count)
    for start in range(0, len(ids), FIXITY_BATCH):
        fixity_check_batch.delay(ids[start : start + FIXITY_BATCH])
    return len(ids)


def _fixity_due_ids(count: int) -> list[int]:
    """The instances never checked, then those checked longest ago. Two queries, each read
    off the instance_fixity index: one ordered NULLS FIRST could not use it, and would sort
    the whole instance table every hour."""
    never = list(
        Instance.objects.filter(fixity_checked_at__isnull=True).values_list("pk", flat=True)[:count]
    )
    # By the checking time alone, the index's order (each check stamps its own time).
    oldest = Instance.objects.filter(fixity_checked_at__isnull=False).order_by("fixity_checked_at")
    return never + list(oldest.values_list("pk", flat=True)[: count - len(never)])


# Stored objects are checked against the index this many at a time (one query each).
SWEEP_BATCH = 500


def orphans_sweep(*, older_than: datetime.timedelta = datetime.timedelta(hours=1)) -> list[str]:
    """Delete stored objects that no instance references (a process killed between storing
    and indexing), and stale spool files; recent ones may belong to an ingest in progress.

    Returns
    -------
    list[str]
        The keys deleted (also logged).
    """
    cutoff = timezone.now() - older_than
    deleted = []
    old = (key for key, modified in storage.objects_under("dicom") if modified < cutoff)
    while batch := list(itertools.islice(old, SWEEP_BATCH)):
        indexed = set(
            Instance.objects.filter(storage_key__in=batch).values_list("storage_key", flat=True)
        )
        for key in batch:
            if key not in indexed:
                storage.object_delete(key=key)
                logger.warning("Deleted an unindexed stored object: %s", key)
                deleted.append(key)
    # A spool file may wait, complete, while the rest of a slow upload arrives: only files
    # older than any request can last are left over from a killed process.
    spool_cutoff = time.time() - settings.SPOOL_MAX_AGE_HOURS * 3600
    spool_dir = Path(settings.SPOOL_DIR)
    for path in spool_dir.glob("*.dcm") if spool_dir.exists() else []:
        if path.stat().st_mtime < min(spool_cutoff, cutoff.timestamp()):
            path.unlink(missing_ok=True)
    return deleted


@shared_task
def orphans_sweep_due() -> int:
    """For Celery beat: the sweep above, daily."""
    return len(orphans_sweep())
