"""The one ingest service behind STOW-RS, the C-STORE listener and import_dicom."""

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, InterfaceError, OperationalError

from anim_gateway.errors import Forbidden
from audit.actions import Action
from consent import gate
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import Institution, Patient
from studies import fixity
from studies.dicom import Header, InvalidDicom, read_header
from studies.ingest_index import (
    Identity,
    IndexCache,
    InstanceRow,
    Planned,
    SeriesRow,
    StudyRow,
    identities_of,
    index_batch,
    objects_delete,
    objects_left_to_sweep,
    objects_put,
    rows_find,
)
from studies.part10 import OverLimit
from studies.spool import Spooled

logger = logging.getLogger(__name__)
# Seconds a session (a DICOM association, a STOW-RS request, an import) relies on the gate's
# permit to store a study before asking again.
AUTHORIZATION_TTL = 60.0


class FailureReason:
    """DICOM failure codes (PS3.4 Annex B, PS3.18 Table I.2-2) used in responses and C-STORE."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_CONFLICT = 0x0111
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_MISMATCH = 0xA900  # the data set is not what its request declared
    CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True, kw_only=True)
class StudyKey:
    """A StudyRef (for the gate) of a study that may not exist yet."""

    study_uid: str
    institution_id: int
    patient_id: int | None


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    # stored, duplicate, restored (a duplicate whose failed copy it replaced), rejected,
    # conflict
    status: str
    reason: str = ""
    failure_code: int = 0
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("stored", "duplicate", "restored")


@dataclass
class IngestSession:
    """One STOW-RS request, DICOM association or import run: the writer and what it may write.

    The gate is asked once per study per session, so a 2,000-image series is one audit event;
    the studies and series the session indexed are not looked up again.
    """

    actor: Actor
    # The study a STOW-RS request targets (/studies/{study}); "" for any study.
    target_study_uid: str = ""
    # Study UID -> when the gate permitted storing it (time.monotonic()).
    authorized: dict[str, float] = field(default_factory=dict)
    cache: IndexCache = field(default_factory=IndexCache)

    def is_authorized(self, study_uid: str) -> bool:
        """Whether the gate permitted this study lately: a long DICOM association asks it
        again after AUTHORIZATION_TTL, so that a revoked account or title takes effect."""
        permitted_at = self.authorized.get(study_uid)
        return permitted_at is not None and time.monotonic() - permitted_at < AUTHORIZATION_TTL

    @classmethod
    def for_writer(cls, actor: Actor, *, target_study_uid: str = "") -> "IngestSession":
        """A session for an actor that stores for its institution; 403 for one without."""
        if actor.institution is None:
            raise Forbidden("Storing needs a token bound to the performing institution.")
        return cls(actor=actor, target_study_uid=target_study_uid)

    @property
    def institution(self) -> Institution:
        if self.actor.institution is None:
            raise Forbidden("Storing needs a token bound to the performing institution.")
        return self.actor.institution


def study_ingest(*, session: IngestSession, spooled: Iterable[Spooled]) -> list[IngestResult]:
    """Ingest several spooled objects (one STOW-RS body, one import batch); all are consumed.

    Every object is validated and authorized first (the gate writes its audit events outside
    any transaction), then the accepted ones are stored and indexed in one transaction. A
    failure of one object never stops the others; nothing is half-stored.

    Returns
    -------
    list[IngestResult]
        One per object, in order.
    """
    items = list(spooled)
    try:
        return _ingest_all(session=session, items=items)
    finally:
        for item in items:
            item.discard()  # already gone when it was moved into storage


def instance_ingest(*, session: IngestSession, spooled: Spooled) -> IngestResult:
    """Validate, authorize, store and index one spooled DICOM object; the spool is consumed.

    Returns only once the object is stored and its index committed (a C-STORE is then
    acknowledged).

    Returns
    -------
    IngestResult
        ``stored`` or ``duplicate`` (success), ``rejected`` or ``conflict`` with a reason.
    """
    return study_ingest(session=session, spooled=[spooled])[0]


def _ingest_all(*, session: IngestSession, items: list[Spooled]) -> list[IngestResult]:
    results: list[IngestResult | None] = [None] * len(items)
    parsed: list[tuple[int, Planned]] = []
    for position, spooled in enumerate(items):
        try:
            header = read_header(spooled.path)
        except OverLimit as exc:
            results[position] = _over_limit(session=session, spooled=spooled, exc=exc)
            continue
        except InvalidDicom as exc:
            results[position] = IngestResult(
                status="rejected", reason=str(exc), failure_code=FailureReason.CANNOT_UNDERSTAND
            )
            continue
        mismatch = _undeclared(spooled, header) or _outside_target(session, header)
        if mismatch:
            results[position] = _result(
                header, "rejected", mismatch, FailureReason.DATA_SET_MISMATCH
            )
        else:
            parsed.append((position, Planned(spooled=spooled, header=header)))
    known = _Known.load(
        [item.header for _, item in parsed], cache=session.cache, performing=session.institution
    )
    accepted: list[tuple[int, Planned]] = []
    for position, item in parsed:
        results[position] = _check(session=session, item=item, known=known)
        if results[position] is None:
            known.plan(item)
            accepted.append((position, item))
    stored = _store_and_index(session=session, items=[item for _, item in accepted])
    for (position, _), result in zip(accepted, stored, strict=True):
        results[position] = result
    return [r for r in results if r is not None]


def _over_limit(*, session: IngestSession, spooled: Spooled, exc: OverLimit) -> IngestResult:
    """A header over DICOM_MAX_HEADER_ELEMENTS, or pixel data over DICOM_MAX_PIXEL_FRAGMENTS,
    refused as a file that cannot be read is; audited (the limit's reason code), as what a
    sender keeps sending to make the gateway work is worth seeing (nothing of it was
    parsed: the audit row names the object by its hash and size)."""
    audit_event(
        session.actor,
        action=Action.STUDY_STORE,
        outcome="deny",
        reason_code=exc.reason_code,
        detail={
            "channel": session.actor.channel,
            "limit": exc.limit,
            "sha256": spooled.sha256,
            "size": spooled.size,
        },
    )
    return IngestResult(
        status="rejected", reason=str(exc), failure_code=FailureReason.CANNOT_UNDERSTAND
    )


def _undeclared(spooled: Spooled, header: Header) -> str:
    """Why the data set is not the object its sender declared ("" when it is): its file
    meta would name another instance than its data set, and the index would follow the
    data set (PS3.4 Table B.2-1, "Data Set does not match SOP Class")."""
    if spooled.declared is None:
        return ""
    sop_class, sop_instance = spooled.declared
    if header.sop_class_uid != sop_class:
        return "The data set's SOP Class UID is not the request's."
    if header.sop_instance_uid != sop_instance:
        return "The data set's SOP Instance UID is not the request's."
    return ""


def _outside_target(session: IngestSession, header: Header) -> str:
    """Why the instance is not of the study the request targets ("" when it is): a Store to
    /studies/{study} stores that study's instances only (PS3.18 10.5, whose 409 names the
    "Study Instance UID mismatch")."""
    if session.target_study_uid and header.study_uid != session.target_study_uid:
        return "The instance's Study Instance UID is not the study of the request's URL."
    return ""


def _store_and_index(*, session: IngestSession, items: list[Planned]) -> list[IngestResult]:
    """Move the accepted objects into storage and index them in one transaction; on any
    failure delete the stored objects, so that nothing is half-stored."""
    if not items:
        return []
    objects_put(items)
    try:
        index_batch(institution=session.institution, items=items, cache=session.cache)
    except IntegrityError:
        # A row changed since it was looked up (a concurrent writer): one at a time, afresh.
        return _index_each(session=session, items=items)
    except (OperationalError, InterfaceError):
        # The connection was lost: the index may have committed (its answer lost).
        objects_left_to_sweep(items)
        raise
    except BaseException:
        objects_delete(items)
        raise
    return [_result(item.header, "stored") for item in items]


def _index_each(*, session: IngestSession, items: list[Planned]) -> list[IngestResult]:
    results = []
    for position, item in enumerate(items):
        try:
            results.append(_index_one(session=session, item=item))
        except (OperationalError, InterfaceError):
            objects_left_to_sweep(items[position:])  # this one may have committed
            raise
        except BaseException:
            objects_delete(items[position:])  # this one and those not indexed yet
            raise
    return results


# Each retry re-reads the rows a concurrent writer changed; several writers racing on the
# same new study settle within a few rounds.
INDEX_ATTEMPTS = 3
BUSY = "A concurrent store of the same study kept changing it; send this instance again."


def _index_one(*, session: IngestSession, item: Planned) -> IngestResult:
    """Check again against fresh rows (the concurrent writer may own the UIDs now), index;
    an object that keeps losing the race is refused (retryable), never a server error."""
    for _ in range(INDEX_ATTEMPTS):
        session.cache.forget(item.header)
        known = _Known.load([item.header], cache=session.cache, performing=session.institution)
        refusal = _check(session=session, item=item, known=known)
        if refusal is not None:
            objects_delete([item])
            return refusal
        try:
            index_batch(institution=session.institution, items=[item], cache=session.cache)
        except IntegrityError:
            continue
        return _result(item.header, "stored")
    objects_delete([item])
    logger.warning("Ingest gave up indexing an instance after %d conflicts", INDEX_ATTEMPTS)
    return _result(item.header, "rejected", BUSY, FailureReason.PROCESSING_FAILURE)


def _result(header: Header, status: str, reason: str = "", code: int = 0) -> IngestResult:
    return IngestResult(
        status=status,
        reason=reason,
        failure_code=code,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        study_uid=header.study_uid,
        series_uid=header.series_uid,
    )


@dataclass
class _Known:
    """What the index holds for the UIDs of one batch (a few queries), and what it plans."""

    instances: dict[str, InstanceRow]
    studies: dict[str, StudyRow]
    series: dict[str, SeriesRow]
    planned: dict[str, Planned] = field(default_factory=dict)  # by SOP Instance UID
    new_studies: dict[str, Planned] = field(default_factory=dict)  # first item of each
    new_series: dict[str, str] = field(default_factory=dict)  # series UID -> study UID
    # (issuer, PatientID) -> identity, for the studies not indexed yet
    identities: dict[tuple[str, str], Identity] = field(default_factory=dict)

    @classmethod
    def load(cls, headers: list[Header], *, cache: IndexCache, performing: Institution) -> "_Known":
        if not headers:
            return cls(instances={}, studies={}, series={})
        instances, studies, series = rows_find(headers, cache=cache)
        return cls(
            instances=instances,
            studies=studies,
            series=series,
            identities=identities_of(
                performing=performing, headers=[h for h in headers if h.study_uid not in studies]
            ),
        )

    def plan(self, item: Planned) -> None:
        header = item.header
        self.planned[header.sop_instance_uid] = item
        self.new_series.setdefault(header.series_uid, header.study_uid)
        if header.study_uid not in self.studies:
            self.new_studies.setdefault(header.study_uid, item)


def _check(*, session: IngestSession, item: Planned, known: _Known) -> IngestResult | None:
    """Why this object cannot be stored (a result to answer with), or None to store it."""
    header = item.header
    existing = known.instances.get(header.sop_instance_uid)
    study = known.studies.get(header.study_uid)
    series = known.series.get(header.series_uid)
    owners = {row.institution_id for row in (existing, study, series) if row is not None}
    if owners - {session.institution.pk}:
        return _refuse_foreign(session=session, header=header)
    if existing is not None:
        return _same_or_conflict(session=session, item=item, existing=existing)
    twin = known.planned.get(header.sop_instance_uid)
    if twin is not None:
        return _same_as_planned(session=session, item=item, twin=twin, known=known)
    problem = _inconsistency(header=header, study=study, series=series, known=known)
    if problem:
        return _result(header, "rejected", problem, FailureReason.CANNOT_UNDERSTAND)
    if study is None:
        item.identity = known.identities[header.issuer, header.patient_id]
    try:
        if study is None:
            _authorize_new(session=session, header=header, patient=item.identity.patient)
        else:
            _authorize(session=session, study=study)
    except gate.AccessDenied as exc:
        return _refused(header, exc)
    return None


def _refused(header: Header, exc: gate.AccessDenied) -> IngestResult:
    """The gate's deny as a result; a deny because the audit log could not be written (the
    database is down) is an outage, not a refusal (a sender takes Not Authorized as final),
    raised: nothing is stored. GATE_ERROR stays a refusal: the gate audited it, so the
    database was up, and a fault that repeats must not have senders retry it for ever."""
    if exc.status_code == 503:
        raise exc
    return _result(header, "rejected", exc.message, FailureReason.NOT_AUTHORIZED)


FOREIGN_UIDS = "These UIDs cannot be stored for your institution."


def _refuse_foreign(*, session: IngestSession, header: Header) -> IngestResult:
    """One answer whatever the other institution holds (its UIDs are not revealed); the
    audit row keeps what was attempted."""
    audit_event(
        session.actor,
        action=Action.STUDY_STORE,
        outcome="deny",
        reason_code="UIDS_OF_ANOTHER_INSTITUTION",
        study_uid=header.study_uid,
        detail={"sop_instance_uid": header.sop_instance_uid, "series_uid": header.series_uid},
    )
    return _result(header, "rejected", FOREIGN_UIDS, FailureReason.NOT_AUTHORIZED)


SERIES_OF_ANOTHER_STUDY = "SeriesInstanceUID already belongs to another study."
PATIENT_DIFFERS = "PatientID differs from the PatientID of the stored study."


def _inconsistency(
    *, header: Header, study: StudyRow | None, series: SeriesRow | None, known: _Known
) -> str:
    """A reason to refuse an instance that contradicts its stored (or batched) study, or ''."""
    if series is not None and (study is None or series.study_id != study.pk):
        return SERIES_OF_ANOTHER_STUDY
    if known.new_series.get(header.series_uid, header.study_uid) != header.study_uid:
        return SERIES_OF_ANOTHER_STUDY
    first = known.new_studies.get(header.study_uid)
    patient_id = study.dicom_patient_id if study else first.header.patient_id if first else None
    if patient_id is not None and patient_id != header.patient_id:
        return PATIENT_DIFFERS
    return ""


def _authorize_new(*, session: IngestSession, header: Header, patient: Patient | None) -> None:
    """The gate, once per session, for a study not indexed yet."""
    if session.is_authorized(header.study_uid):
        return
    ref = StudyKey(
        study_uid=header.study_uid,
        institution_id=session.institution.pk,
        patient_id=patient.pk if patient else None,
    )
    _gate(session=session, ref=ref, patient=patient)


def _authorize(*, session: IngestSession, study: StudyRow | InstanceRow) -> None:
    """The gate, once per session, for an indexed study."""
    if session.is_authorized(study.study_uid):
        return
    ref = StudyKey(
        study_uid=study.study_uid,
        institution_id=study.institution_id,
        patient_id=study.patient_id,
    )
    _gate(session=session, ref=ref, patient=_patient(study.patient_id))


def _gate(*, session: IngestSession, ref: StudyKey, patient: Patient | None) -> None:
    gate.authorize(
        session.actor,
        "store",
        patient=patient,
        study=ref,
        audit_action=Action.STUDY_STORE,
        detail={"channel": session.actor.channel},
    )
    session.authorized[ref.study_uid] = time.monotonic()


def _patient(pk: int | None) -> Patient | None:
    return Patient.objects.filter(pk=pk).first() if pk is not None else None


def _same_or_conflict(
    *, session: IngestSession, item: Planned, existing: InstanceRow
) -> IngestResult:
    """The answer for an object whose SOP Instance UID is indexed already."""
    header, spooled = item.header, item.spooled
    if existing.institution_id != session.institution.pk:
        return _refuse_foreign(session=session, header=header)
    if existing.sha256 == spooled.sha256:
        # Only the study's own institution learns that it already holds this instance.
        try:
            _authorize(session=session, study=existing)
        except gate.AccessDenied as exc:
            return _refused(header, exc)
        if existing.fixity_failed:
            return _restored(session=session, item=item, existing=existing)
        return _result(header, "duplicate", "The same instance is already stored.")
    patient = _patient(existing.patient_id)
    return _conflict(
        session=session,
        header=header,
        study_uid=existing.study_uid,
        patient=patient.national_id if patient else "",
        sha256=spooled.sha256,
    )


RESTORED = "The stored copy, which had failed its fixity check, was restored from these bytes."


def _restored(*, session: IngestSession, item: Planned, existing: InstanceRow) -> IngestResult:
    """The same bytes as recorded at ingest (SHA-256 of the object as stored, preamble
    sanitised) of an instance whose copy failed its fixity check: they replace it."""
    patient = _patient(existing.patient_id)
    national_id = patient.national_id if patient else ""
    if fixity.copy_restore(actor=session.actor, item=item, patient=national_id):
        return _result(item.header, "restored", RESTORED)
    return _result(item.header, "duplicate", "The same instance is already stored.")


def _same_as_planned(
    *, session: IngestSession, item: Planned, twin: Planned, known: _Known
) -> IngestResult:
    """The same SOP Instance UID twice in one batch: the first one is stored."""
    header = item.header
    if twin.spooled.sha256 == item.spooled.sha256:
        return _result(header, "duplicate", "The same instance is already stored.")
    study = known.studies.get(twin.header.study_uid)
    patient = _patient(study.patient_id) if study else twin.identity.patient
    return _conflict(
        session=session,
        header=header,
        study_uid=twin.header.study_uid,
        patient=patient.national_id if patient else "",
        sha256=item.spooled.sha256,
    )


def _conflict(
    *, session: IngestSession, header: Header, study_uid: str, patient: str, sha256: str
) -> IngestResult:
    audit_event(
        session.actor,
        action=Action.STUDY_STORE_CONFLICT,
        outcome="deny",
        reason_code="SOP_INSTANCE_CONFLICT",
        patient=patient,
        study_uid=study_uid,
        detail={"sop_instance_uid": header.sop_instance_uid, "sha256": sha256},
    )
    return _result(
        header,
        "conflict",
        "An instance with this SOP Instance UID is already stored with different content.",
        FailureReason.DUPLICATE_CONFLICT,
    )
