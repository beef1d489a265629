"""Copies that failed their fixity check: never served, restored by the same bytes sent again."""

import logging
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.gate import StudyRef
from consent.models import Patient
from studies import storage
from studies.ingest_index import Planned, objects_delete, objects_left_to_sweep, objects_put
from studies.models import Instance
from studies.storage_errors import STORAGE_ERRORS, StorageError

logger = logging.getLogger(__name__)

FIXITY_FAILED = "FIXITY_FAILED"
REFUSED = "The stored copy failed its fixity check (altered or lost); it was not served."
# A refusal's audit event names at most this many instances (and counts them all).
NAMED_IN_EVENT = 100


class StoredCopy(NamedTuple):
    """An instance's stored object, as a study's or series' retrieval reads it."""

    key: str
    sop_instance_uid: str
    failed: bool
    transfer_syntax: str = ""


def failed(fixity_ok: bool | None) -> bool:
    """Whether a copy failed its last fixity check; never checked yet (None) is served."""
    return fixity_ok is False


# --- the read path -------------------------------------------------------------------------


def refuse_if_failed(
    actor: Actor, instance: Instance, *, study: StudyRef, audit_action: str
) -> None:
    """Refuse an instance whose copy failed its fixity check (see ``refuse``).

    Raises
    ------
    ObjectUnavailable
        For a failed copy, as for a lost one (500).
    """
    if failed(instance.fixity_ok):
        refuse(actor, study=study, sop_uids=[instance.sop_instance_uid], audit_action=audit_action)


def refuse(
    actor: Actor, *, study: StudyRef, sop_uids: Sequence[str], audit_action: str
) -> NoReturn:
    """Audit and log the refusal of copies that failed their fixity check, and answer as the
    read path answers for a lost object: never serve a copy that is not the patient's image.

    Raises
    ------
    ObjectUnavailable
        Always (500 OBJECT_UNAVAILABLE); AuditUnavailable when the refusal cannot be audited.
    """
    refusal_audited(actor, study=study, sop_uids=sop_uids, audit_action=audit_action)
    raise storage.ObjectUnavailable()


def refusal_audited(
    actor: Actor, *, study: StudyRef, sop_uids: Sequence[str], audit_action: str
) -> None:
    """One ``study.fixity_failed`` event (outcome ``error``) for the copies a request was
    refused, after the gate's permit of the request; logged for the operators by UID only.

    Raises
    ------
    AuditUnavailable
        When the event cannot be written: the request is refused (503), nothing served.
    """
    logger.error(
        "Fixity: %d instance(s) of study %s refused (%s), the first %s",
        len(sop_uids),
        study.study_uid,
        audit_action,
        sop_uids[0] if sop_uids else "none",  # a caller naming none must not fail the audit
    )
    audit_event(
        actor,
        action=Action.STUDY_FIXITY_FAILED,
        outcome="error",
        reason_code=FIXITY_FAILED,
        patient=_national_id(study.patient_id),
        study_uid=study.study_uid,
        message=REFUSED,
        detail={
            "request": audit_action,
            "instances": len(sop_uids),
            "sop_instance_uids": list(sop_uids[:NAMED_IN_EVENT]),
        },
    )


def unreadable_keys(
    actor: Actor, *, study: StudyRef, copies: Sequence[StoredCopy], audit_action: str
) -> list[str]:
    """The keys of a study's (or series') copies that cannot be served: those that failed
    their fixity check (their refusal audited), and those lost (``storage.objects_missing``,
    which the failed ones are not asked about)."""
    refused = [copy for copy in copies if copy.failed]
    if refused:
        uids = [copy.sop_instance_uid for copy in refused]
        refusal_audited(actor, study=study, sop_uids=uids, audit_action=audit_action)
    rest = [copy.key for copy in copies if not copy.failed]
    return [copy.key for copy in refused] + storage.objects_missing(rest)


def _national_id(patient_id: int | None) -> str:
    # Only on a refusal: the served path reads no more than it did.
    if patient_id is None:
        return ""
    found = Patient.objects.filter(pk=patient_id).values_list("national_id", flat=True)
    return found.first() or ""


# --- healing -------------------------------------------------------------------------------


def copy_restore(*, actor: Actor, item: Planned, patient: str) -> bool:
    """Replace the failed copy of an indexed instance by the same bytes sent again (the
    caller checked that their SHA-256 is the one recorded at ingest).

    As ingest stores: the new copy under a new key, made durable, then in one transaction
    the index points at it, ``fixity_ok`` is True as of now and ``study.restore`` is
    audited; the failed copy is deleted after. At no time does the index name a copy that
    is half-written. Any failure deletes the new copy and leaves the failed one as it was.

    Returns
    -------
    bool
        False when the copy no longer needs restoring (a concurrent resend restored it
        first): the new copy is deleted, the answer is a plain duplicate.
    """
    objects_put([item])
    try:
        failed_key = _index_restored(actor=actor, item=item, patient=patient)
    except (OperationalError, InterfaceError):
        objects_left_to_sweep([item])  # the index may have committed (its answer lost)
        raise
    except BaseException:
        objects_delete([item])
        raise
    if failed_key is None:
        objects_delete([item])
        return False
    _failed_copy_delete(failed_key)
    return True


@transaction.atomic
def _index_restored(*, actor: Actor, item: Planned, patient: str) -> str | None:
    """Point the instance at its new copy if its copy still is the failed one; the failed
    copy's key, or None."""
    header = item.header
    failed_row = Instance.objects.filter(sop_instance_uid=header.sop_instance_uid, fixity_ok=False)
    row = failed_row.values_list("pk", "storage_key").first()
    if row is None:
        return None
    pk, failed_key = row
    # Conditional: a concurrent resend that restored it first leaves nothing to change here.
    updated = Instance.objects.filter(pk=pk, storage_key=failed_key, fixity_ok=False).update(
        storage_key=item.key, fixity_ok=True, fixity_checked_at=timezone.now()
    )
    if not updated:
        return None
    audit_event(
        actor,
        action=Action.STUDY_RESTORE,
        reason_code=FIXITY_FAILED,
        patient=patient,
        study_uid=header.study_uid,
        message="The stored copy, which had failed its fixity check, was replaced by the "
        "same bytes sent again.",
        detail={
            "channel": actor.channel,
            "sop_instance_uid": header.sop_instance_uid,
            "sha256": item.spooled.sha256,
        },
    )
    return failed_key


def _failed_copy_delete(key: str) -> None:
    """Delete the replaced copy; one the storage cannot delete now is left to the orphan
    sweep (no row names it any more)."""
    try:
        storage.object_delete(key=key)
    except (*STORAGE_ERRORS, StorageError):
        logger.warning("Fixity: the replaced copy %s is left to the orphan sweep", key)
        return
    logger.warning("Fixity: the failed copy %s was replaced by a resend and deleted", key)
