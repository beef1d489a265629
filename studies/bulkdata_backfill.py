"""Bulk data references added to the metadata of instances stored before they existed."""

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from studies import storage
from studies.dicom import Header, InvalidDicom, read_header
from studies.fixity import failed
from studies.models import METADATA_CURRENT, Instance
from studies.spool import spool_chunks

logger = logging.getLogger(__name__)

UPDATED, CURRENT = "updated", "current"


class BackfillFailed(Exception):
    """This instance cannot be brought up to date: it is left as it was."""


@dataclass
class BackfillSummary:
    """What a run did: instances updated, found already current, and failed (with why)."""

    updated: int = 0
    current: int = 0
    failed: list[tuple[Instance, str]] = field(default_factory=list)
    last_pk: int = 0

    @property
    def read(self) -> int:
        return self.updated + self.current + len(self.failed)


def bulkdata_backfill(
    *, batch_size: int = 200, on_batch: Callable[[BackfillSummary], None] | None = None
) -> BackfillSummary:
    """Bring every instance whose metadata predates bulk data references up to date, in
    batches by primary key; each batch's updates in one transaction.

    Idempotent and resumable: an instance is done once its ``metadata_version`` is current,
    so a second run (or a run after an interrupted one) reads only what is left. A failed
    instance keeps its row as it was, and is tried again by the next run.

    Raises
    ------
    storage.ObjectUnavailable
        When the storage cannot answer (down, not an object missing): the run stops; what
        its earlier batches did stays done.
    """
    summary = BackfillSummary()
    while batch := _due(after=summary.last_pk, size=batch_size):
        updates = {}
        for instance in batch:
            summary.last_pk = instance.pk
            try:
                metadata = referenced_metadata(instance)
            except BackfillFailed as exc:
                logger.warning("Bulk data backfill: instance %s: %s", instance.pk, exc)
                summary.failed.append((instance, str(exc)))
                continue
            updates[instance.pk] = metadata
        _write(updates, batch, summary)
        if on_batch is not None:
            on_batch(summary)
    return summary


def _due(*, after: int, size: int) -> list[Instance]:
    # Read along the primary key: one pass over the table whatever the number of batches.
    fields = (
        "pk",
        "sop_instance_uid",
        "series__series_uid",
        "study__study_uid",
        "transfer_syntax_uid",
        "storage_key",
        "pixel_data_offset",
        "pixel_data_length",
        "metadata",
        "fixity_ok",
    )
    qs = Instance.objects.filter(pk__gt=after, metadata_version__lt=METADATA_CURRENT)
    return list(qs.select_related("study", "series").only(*fields).order_by("pk")[:size])


@transaction.atomic
def _write(updates: dict[int, dict], batch: list[Instance], summary: BackfillSummary) -> None:
    """The batch's new metadata and version; only rows still at the old version (a row
    changed by another run since it was read is that run's)."""
    for instance in batch:
        if instance.pk not in updates:
            continue
        changed = updates[instance.pk] != instance.metadata
        values = {"metadata_version": METADATA_CURRENT}
        if changed:
            values["metadata"] = updates[instance.pk]
        Instance.objects.filter(pk=instance.pk, metadata_version__lt=METADATA_CURRENT).update(
            **values
        )
        if changed:
            summary.updated += 1
        else:
            summary.current += 1


def referenced_metadata(instance: Instance) -> dict:
    """The instance's stored metadata plus the bulk data references its stored header gives
    that it lacks (at any depth); the same metadata when it lacks none.

    Raises
    ------
    BackfillFailed
        The stored copy failed its fixity check (it is not read), is missing, does not
        parse, or is no longer what the row says.
    """
    if failed(instance.fixity_ok):
        # Its bytes are not the patient's image any more: nothing read from them is written.
        raise BackfillFailed("the stored copy failed its fixity check; restore it first")
    header = _stored_header(instance)
    _check_identity(instance, header)
    return with_references(instance.metadata, header.metadata)


def _stored_header(instance: Instance) -> Header:
    """The header as ingest read it, from the stored object (read_header never reads
    pixel data: a local file is mapped, a remote object is first spooled to disk)."""
    try:
        with _local_copy(instance.storage_key) as path:
            return read_header(path)
    except storage.ObjectUnavailable as exc:
        if not exc.conclusive:
            raise  # the storage is down: every next read would fail too
        raise BackfillFailed("the stored object is missing") from exc
    except InvalidDicom as exc:
        raise BackfillFailed(f"the stored object does not parse: {exc}") from exc


@contextlib.contextmanager
def _local_copy(key: str) -> Iterator[Path]:
    """The object's own file on a local storage (opened first: a missing one is told from a
    storage that is down); on S3, a spool copy, streamed to disk and removed after."""
    storage.object_open(key=key).close()
    local = storage.object_local_path(key=key)
    if local is not None:
        yield local
        return
    spooled = spool_chunks(storage.object_chunks(key=key))
    try:
        yield spooled.path
    finally:
        spooled.discard()


def _check_identity(instance: Instance, header: Header) -> None:
    """References name places in the object: they are only written when the object is still
    the one the row describes."""
    expected = (
        instance.study.study_uid,
        instance.series.series_uid,
        instance.sop_instance_uid,
        instance.transfer_syntax_uid,
        instance.pixel_data_offset,
        instance.pixel_data_length,
    )
    found = (
        header.study_uid,
        header.series_uid,
        header.sop_instance_uid,
        header.transfer_syntax_uid,
        header.pixel_data_offset,
        header.pixel_data_length,
    )
    if found != expected:
        raise BackfillFailed("the stored object is no longer the one its row describes")


def with_references(stored: dict, fresh: dict) -> dict:
    """``stored`` (DICOM JSON) with each BulkDataURI element of ``fresh`` it lacks, in the
    data set and in the items of sequences both hold alike; nothing else of it changes."""
    merged = dict(stored)
    for tag, element in fresh.items():
        if tag not in stored:
            if isinstance(element, dict) and "BulkDataURI" in element:
                merged[tag] = element
            continue
        items = _matching_items(stored[tag], element)
        if items is not None:
            merged[tag] = {**stored[tag], "Value": [with_references(s, f) for s, f in items]}
    return merged


def _matching_items(stored: object, fresh: object) -> list[tuple[dict, dict]] | None:
    """The item pairs of a sequence held by both, when they hold as many items."""
    if not (isinstance(stored, dict) and isinstance(fresh, dict)):
        return None
    if stored.get("vr") != "SQ" or fresh.get("vr") != "SQ":
        return None
    old, new = stored.get("Value") or [], fresh.get("Value") or []
    if len(old) != len(new) or not all(isinstance(i, dict) for i in (*old, *new)):
        return None
    return list(zip(old, new, strict=True))
