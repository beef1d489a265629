"""Reads of the study index: lookups, QIDO queries and the portal's study lists."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import EmptyResultSet
from django.db.models import F, Q, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from studies import lookups, qido
from studies.models import Instance, Series, Study


def study_get_ref(study_uid: str) -> Study | None:
    """The study with this UID (a StudyRef for consent), or None."""
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


_NEWEST_FIRST = (F("study_date").desc(nulls_last=True), F("id").desc())


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
    *, scopes: Sequence[Q], query: qido.Query, offset: int, limit: int
) -> list[StudyHit]:
    """A page of the studies in scope matching the query, newest first, with the columns of
    a QIDO-RS result only.

    ``scopes`` are disjoint parts of the scope. SQL pages their ids (UNION ALL) from
    narrow indexes on (patient or institution, date, id) without visiting the table, then
    reads the page's rows alone: the cost grows with the ids in scope, not with the rows.
    """
    parts = [
        qido.filter_studies(Study.objects.filter(scope), query).values_list("id", "study_date")
        for scope in scopes
    ]
    ids = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    ids = ids.order_by(*_NEWEST_FIRST)[offset : offset + limit]
    try:
        sql, params = ids.query.get_compiler(ids.db).as_sql()
    except EmptyResultSet:
        return []  # nothing can match (no patient in scope, say): no query at all
    # The ORM's own SQL of the id page, its values still parameters.
    page = RawSQL(f"SELECT id FROM ({sql}) page", params)  # noqa: S608, S611
    rows = (
        Study.objects.filter(pk__in=page)
        .order_by(*_NEWEST_FIRST)
        .values_list(
            "study_uid",
            "institution_id",
            "patient_id",
            "modalities",
            "series_count",
            "instance_count",
            Cast("attributes", output_field=TextField()),
        )
    )
    return [StudyHit(*row) for row in rows]


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


def instance_keys(*, study: Study | lookups.StudyRow, series: Series | None = None) -> list[str]:
    """Storage keys of a study's (or series') instances, in display order."""
    qs = Instance.objects.filter(study_id=study.pk)
    if series is not None:
        qs = qs.filter(series=series)
    qs = qs.order_by("series_id", F("instance_number").asc(nulls_last=True), "pk")
    return list(qs.values_list("storage_key", flat=True))
