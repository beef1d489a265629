"""Reads of the study index: lookups, QIDO queries and the portal's study lists."""

from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Q, Sum

from consent.gate import Found
from studies import fixity, lookups, qido, qido_sql
from studies.dicom import is_valid_uid
from studies.models import Instance, Series, Study


def study_get_ref(study_uid: str) -> Study | None:
    """The study with this UID (a StudyRef for consent), or None."""
    if not is_valid_uid(study_uid):
        return None  # never stored; and a NUL byte in the URL is a database error on PostgreSQL
    return (
        Study.objects.filter(study_uid=study_uid)
        .only("study_uid", "institution_id", "patient_id")
        .first()
    )


def study_list(*, scope: Q, query: qido.Query | None, limit: int) -> list[Study]:
    """Studies in scope matching the query, newest first."""
    qs = Study.objects.filter(scope).select_related("institution")
    if query is not None:
        qs = qido.filter_studies(qs, query)
    return list(qs.order_by(F("study_date").desc(nulls_last=True), "-pk")[:limit])


@dataclass(frozen=True)
class StudyHit:
    """A QIDO-RS study result as the index holds it; a StudyRef for the gate."""

    study_uid: str
    institution_id: int
    patient_id: int | None
    modalities: str
    series_count: int
    instance_count: int
    # The study-level DICOM JSON as stored: served without decoding and encoding it again.
    attributes_json: str


def study_page(
    *, scope: qido_sql.Scope, query: qido.Query, offset: int, limit: int
) -> list[StudyHit]:
    """A page of the studies in scope matching the query, newest first, with the columns of
    a QIDO-RS result only (one statement; see ``studies.qido_sql``)."""
    rows = qido_sql.page(scope=scope, query=query, offset=offset, limit=limit)
    return [StudyHit(*row) for row in rows]


def study_hit_of(found: Found) -> StudyHit:
    """The StudyHit of a study ``qido_sql.page_lookup`` found."""
    modalities, series_count, instance_count, attributes = found.extra
    return StudyHit(
        study_uid=found.study_uid,
        institution_id=found.institution_id,
        patient_id=found.patient_id,
        modalities=modalities,
        series_count=int(series_count),
        instance_count=int(instance_count),
        attributes_json=attributes,
    )


def series_list(*, study: Study, query: qido.Query) -> list[Series]:
    qs = qido.filter_series(Series.objects.filter(study=study), query)
    qs = qs.select_related("study").order_by(F("series_number").asc(nulls_last=True), "pk")
    return list(qs[query.offset : query.offset + query.limit])


def instance_list(*, study: Study, series: Series | None, query: qido.Query) -> list[Instance]:
    qs = Instance.objects.filter(study=study)
    if series is not None:
        qs = qs.filter(series=series)
    qs = qido.filter_instances(qs, query).select_related("study", "series")
    qs = qs.order_by("series_id", F("instance_number").asc(nulls_last=True), "pk")
    return list(qs[query.offset : query.offset + query.limit])


def stored_copies(
    *, study: Study | lookups.StudyRow, series: Series | None = None
) -> list[fixity.StoredCopy]:
    """The stored copies of a study's (or series') instances, in display order: each key,
    with whether it failed its fixity check and its transfer syntax (read with the keys, in
    the same query)."""
    qs = Instance.objects.filter(study_id=study.pk)
    if series is not None:
        qs = qs.filter(series=series)
    qs = qs.order_by("series_id", F("instance_number").asc(nulls_last=True), "pk")
    rows = qs.values_list("storage_key", "sop_instance_uid", "fixity_ok", "transfer_syntax_uid")
    return [fixity.StoredCopy(key, uid, fixity.failed(ok), ts) for key, uid, ok, ts in rows]


def series_images(*, series: Series) -> list[tuple[str, int]]:
    """The series' images in display order (instance number), as (SOP Instance UID, frame
    count) pairs: instances without pixel data (a report, a presentation state) are left out."""
    qs = Instance.objects.filter(series=series, number_of_frames__gt=0)
    qs = qs.order_by(F("instance_number").asc(nulls_last=True), "pk")
    return list(qs.values_list("sop_instance_uid", "number_of_frames"))


def image_counts(*, study: Study) -> dict[int, int]:
    """Images per series id, every frame counted, as the series viewer steps through them:
    a series of reports or presentation states has none."""
    qs = Instance.objects.filter(study=study, number_of_frames__gt=0).values("series_id")
    qs = qs.annotate(images=Sum("number_of_frames")).order_by()
    return {row["series_id"]: row["images"] for row in qs}


def thumbnail_instance(
    *, study: Study | lookups.StudyRow, series: Series | None = None, intact_only: bool = False
) -> Instance | None:
    """The image a study's or series' thumbnail shows (PS3.18 10.4.1.1.4 leaves the choice
    to the server): the middle image, by instance number, of the series, or of the study's
    first series, by series number, that holds one; the portal's series previews show the
    same middle instance. With ``intact_only``, images whose copy failed its fixity check
    are passed over, as if absent. None when there is no image."""
    if series is None:
        in_series = _images(intact_only=intact_only).filter(series=OuterRef("pk"))
        series = (
            Series.objects.filter(study_id=study.pk)
            .filter(Exists(in_series))
            .order_by(F("series_number").asc(nulls_last=True), "pk")
            .first()
        )
        if series is None:
            return None
    images = _images(intact_only=intact_only).filter(series=series)
    middle = images.count() // 2
    ordered = images.order_by(F("instance_number").asc(nulls_last=True), "pk")
    return next(iter(ordered[middle : middle + 1]), None)


def _images(*, intact_only: bool):
    """Instances with pixel data; with ``intact_only``, less those that failed fixity (a
    copy never checked, None, counts as intact, as the read path serves it)."""
    images = Instance.objects.filter(number_of_frames__gt=0)
    return images.exclude(fixity_ok=False) if intact_only else images
