"""The one ingest service behind STOW-RS, the C-STORE listener and import_dicom."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from anim_gateway.errors import Forbidden
from audit.actions import Action
from consent import gate
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import Institution, Patient
from studies import reconcile, storage
from studies.dicom import Header, InvalidDicom, read_header
from studies.models import Instance, Series, Study
from studies.spool import Spooled

logger = logging.getLogger(__name__)


class FailureReason:
    """DICOM failure codes (PS3.4 Annex B, PS3.18 Table I.2-2) used in responses and C-STORE."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_CONFLICT = 0x0111
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True, kw_only=True)
class StudyKey:
    """A StudyRef (for the gate) of a study that may not exist yet."""

    study_uid: str
    institution_id: int
    patient_id: int | None


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    status: str  # stored, duplicate, rejected, conflict
    reason: str = ""
    failure_code: int = 0
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("stored", "duplicate")


@dataclass
class IngestSession:
    """One STOW-RS request, DICOM association or import run: the writer and what it may write.

    The gate is asked once per study per session, so a 2,000-image series is one audit event.
    """

    actor: Actor
    authorized: set[str] = field(default_factory=set)

    @classmethod
    def for_writer(cls, actor: Actor) -> "IngestSession":
        """A session for an actor that stores for its institution; 403 for one without."""
        if actor.institution is None:
            raise Forbidden("Storing needs a token bound to the performing institution.")
        return cls(actor=actor)

    @property
    def institution(self) -> Institution:
        if self.actor.institution is None:
            raise Forbidden("Storing needs a token bound to the performing institution.")
        return self.actor.institution


def study_ingest(*, session: IngestSession, spooled: Iterable[Spooled]) -> list[IngestResult]:
    """Ingest several spooled objects (one STOW-RS body, one import run).

    Returns
    -------
    list[IngestResult]
        One per object, in order; a failure never stops the others.
    """
    return [instance_ingest(session=session, spooled=item) for item in spooled]


def instance_ingest(*, session: IngestSession, spooled: Spooled) -> IngestResult:
    """Validate, authorize, store and index one spooled DICOM object; the spool is consumed.

    Nothing is half-stored: on any failure the stored object is deleted and the database
    transaction rolled back.

    Returns
    -------
    IngestResult
        ``stored`` or ``duplicate`` (success), ``rejected`` or ``conflict`` with a reason.
    """
    try:
        header = read_header(spooled.path)
    except InvalidDicom as exc:
        spooled.discard()
        return IngestResult(
            status="rejected", reason=str(exc), failure_code=FailureReason.CANNOT_UNDERSTAND
        )
    try:
        return _ingest_valid(session=session, spooled=spooled, header=header)
    finally:
        spooled.discard()


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


@dataclass(frozen=True)
class _Identity:
    institution: Institution | None  # whose identifier space the PatientID belongs to
    patient: Patient | None


def _identity_of(*, session: IngestSession, header: Header) -> _Identity:
    institution = reconcile.identifier_institution(
        issuer=header.issuer, performing=session.institution
    )
    patient = reconcile.patient_for(institution=institution, patient_id=header.patient_id)
    return _Identity(institution=institution, patient=patient)


def _ingest_valid(*, session: IngestSession, spooled: Spooled, header: Header) -> IngestResult:
    existing = Instance.objects.filter(sop_instance_uid=header.sop_instance_uid).first()
    study = Study.objects.filter(study_uid=header.study_uid).select_related("patient").first()
    series = Series.objects.filter(series_uid=header.series_uid).first()
    if _owned_elsewhere(session=session, study=study, rows=(existing, series)):
        return _refuse_foreign(session=session, header=header)
    if existing is not None:
        return _same_or_conflict(session=session, header=header, existing=existing, spooled=spooled)
    problem = _inconsistency(session=session, header=header, study=study, series=series)
    if problem:
        return _result(header, "rejected", problem, FailureReason.CANNOT_UNDERSTAND)
    identity = None if study else _identity_of(session=session, header=header)
    patient = study.patient if study else identity.patient
    try:
        _authorize(session=session, header=header, study=study, patient=patient)
    except gate.AccessDenied as exc:
        return _result(header, "rejected", exc.message, FailureReason.NOT_AUTHORIZED)
    key = storage.object_put(
        key=storage.object_key(
            study_uid=header.study_uid,
            series_uid=header.series_uid,
            sop_uid=header.sop_instance_uid,
        ),
        spooled=spooled,
    )
    return _index_or_undo(
        session=session, header=header, spooled=spooled, key=key, identity=identity
    )


def _index_or_undo(
    *,
    session: IngestSession,
    header: Header,
    spooled: Spooled,
    key: str,
    identity: _Identity | None,
) -> IngestResult:
    """Index the stored object; on any failure delete it, so nothing is half-stored."""
    try:
        for attempt in (1, 2):
            try:
                instance, preview = _index(
                    session=session, header=header, spooled=spooled, key=key, identity=identity
                )
                break
            except IntegrityError:
                # A concurrent writer indexed the same UID (compare with it), or created the
                # same study or series first (index again, joining them).
                winner = Instance.objects.filter(sop_instance_uid=header.sop_instance_uid).first()
                if winner is not None:
                    storage.object_delete(key=key)
                    return _same_or_conflict(
                        session=session, header=header, existing=winner, spooled=spooled
                    )
                if attempt == 2:
                    raise
                identity = None  # the study may exist now: look it up
    except BaseException:
        storage.object_delete(key=key)
        raise
    if preview:
        transaction.on_commit(lambda: _after_store(instance_id=instance.pk))
    return _result(header, "stored")


def _after_store(*, instance_id: int) -> None:
    from studies import tasks  # tasks render images: imported when needed

    # Only a worker makes previews: run inline (no broker), decoding an image would sit on
    # the store path and halve the ingest rate, for a thumbnail the portal does not need
    # (its pages use /rendered).
    if not tasks.series_preview.app.conf.task_always_eager:
        tasks.series_preview.delay(instance_id)


FOREIGN_UIDS = "These UIDs cannot be stored for your institution."


def _owned_elsewhere(*, session: IngestSession, study: Study | None, rows: tuple) -> bool:
    """Whether a stored study, or the study of a stored series or instance with these UIDs,
    is another institution's (usually the same study: no extra query)."""
    owners = {study.institution_id} if study else set()
    for row in rows:
        if row is None or (study is not None and row.study_id == study.pk):
            continue
        owners.add(Study.objects.values_list("institution_id", flat=True).get(pk=row.study_id))
    return bool(owners - {session.institution.pk})


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


def _inconsistency(
    *, session: IngestSession, header: Header, study: Study | None, series: Series | None
) -> str:
    """A reason to refuse an instance that contradicts its stored study, or ''."""
    if series is not None and (study is None or series.study_id != study.pk):
        return "SeriesInstanceUID already belongs to another study."
    if study is None:
        return ""
    if study.dicom_patient_id != header.patient_id:
        return "PatientID differs from the PatientID of the stored study."
    return ""


def _authorize(
    *, session: IngestSession, header: Header, study: Study | None, patient: Patient | None
) -> None:
    if header.study_uid in session.authorized:
        return
    ref = study or StudyKey(
        study_uid=header.study_uid,
        institution_id=session.institution.pk,
        patient_id=patient.pk if patient else None,
    )
    gate.authorize(
        session.actor,
        "store",
        patient=patient,
        study=ref,
        audit_action=Action.STUDY_STORE,
        detail={"channel": session.actor.channel},
    )
    session.authorized.add(header.study_uid)


def _same_or_conflict(
    *, session: IngestSession, header: Header, existing: Instance, spooled: Spooled
) -> IngestResult:
    study = existing.study
    if existing.sha256 == spooled.sha256:
        # Only the study's own institution learns that it already holds this instance.
        try:
            _authorize(session=session, header=header, study=study, patient=study.patient)
        except gate.AccessDenied as exc:
            return _result(header, "rejected", exc.message, FailureReason.NOT_AUTHORIZED)
        return _result(header, "duplicate", "The same instance is already stored.")
    audit_event(
        session.actor,
        action=Action.STUDY_STORE_CONFLICT,
        outcome="deny",
        reason_code="SOP_INSTANCE_CONFLICT",
        patient=study.patient.national_id if study.patient else "",
        study_uid=study.study_uid,
        detail={"sop_instance_uid": header.sop_instance_uid, "sha256": spooled.sha256},
    )
    return _result(
        header,
        "conflict",
        "An instance with this SOP Instance UID is already stored with different content.",
        FailureReason.DUPLICATE_CONFLICT,
    )


@transaction.atomic
def _index(
    *,
    session: IngestSession,
    header: Header,
    spooled: Spooled,
    key: str,
    identity: _Identity | None,
) -> tuple[Instance, bool]:
    """Study, series and instance rows in one transaction; (instance, needs a preview).

    ``identity`` is given when the study did not exist a moment ago: it is then created
    outright (a concurrent creation raises IntegrityError, and the caller indexes again).
    """
    study = None
    if identity is None:
        study = Study.objects.select_for_update().filter(study_uid=header.study_uid).first()
    new_study = study is None
    if new_study:
        study = _study_create(
            session=session,
            header=header,
            identity=identity or _identity_of(session=session, header=header),
        )
    series = None if new_study else Series.objects.filter(series_uid=header.series_uid).first()
    if series is None:
        series = Series.objects.create(
            study=study,
            series_uid=header.series_uid,
            modality=header.modality,
            series_number=header.series_number,
            description=header.series_description,
            attributes=header.series_attributes(),
            instance_count=1,
        )
        if not new_study:
            _count(study=study, header=header, series_created=True)
    else:
        Series.objects.filter(pk=series.pk).update(instance_count=F("instance_count") + 1)
        _count(study=study, header=header, series_created=False)
    instance = Instance.objects.create(
        study=study,
        series=series,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        transfer_syntax_uid=header.transfer_syntax_uid,
        instance_number=header.instance_number,
        number_of_frames=header.number_of_frames,
        storage_key=key,
        size=spooled.size,
        sha256=spooled.sha256,
        pixel_data_offset=header.pixel_data_offset,
        pixel_data_length=header.pixel_data_length,
        metadata=header.metadata,
    )
    return instance, bool(header.number_of_frames and not series.preview_key)


def _study_create(*, session: IngestSession, header: Header, identity: _Identity) -> Study:
    """A new study holding its first series and instance."""
    return Study.objects.create(
        study_uid=header.study_uid,
        institution=session.institution,
        patient=identity.patient,
        dicom_patient_id=header.patient_id,
        issuer=header.issuer or session.institution.default_issuer,
        identifier_institution=identity.institution,
        study_date=header.study_date,
        study_time=header.study_time,
        accession_number=header.accession_number,
        description=header.study_description,
        modalities=header.modality,
        series_count=1,
        instance_count=1,
        attributes=header.study_attributes(),
    )


def _count(*, study: Study, header: Header, series_created: bool) -> None:
    modalities = study.modality_list()
    if header.modality and header.modality not in modalities:
        modalities.append(header.modality)
    Study.objects.filter(pk=study.pk).update(
        instance_count=F("instance_count") + 1,
        series_count=F("series_count") + (1 if series_created else 0),
        modalities="\\".join(sorted(modalities))[:128],
        updated_at=timezone.now(),
    )
