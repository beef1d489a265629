"""PostgreSQL: ingest's look-up and index of a batch, one statement each (the ORM takes 3 + 5).

A PostgreSQL round trip costs more than the rest of indexing a small instance, and a
C-STORE answers one instance at a time: the rows a batch needs are read in one statement,
and the whole batch (studies, series, instances and their counts) is written in one
statement, which PostgreSQL runs atomically without a BEGIN and a COMMIT of its own.
"""

import datetime
import functools
import json
from collections.abc import Iterable

import orjson
from django.db import connection
from django.db.models import Model

from consent.prepared import fetch_prepared, text_array
from studies.dicom import float_value
from studies.models import Instance, Series, Study

_STUDY, _SERIES, _INSTANCE = (m._meta.db_table for m in (Study, Series, Instance))

# One row per known instance ('i'), study ('s') and series ('e'):
# kind, uid, then up to three numbers, two texts and a flag (an instance's copy failed its
# fixity check: a resend of the same bytes restores it).
_KNOWN_SQL = f"""
SELECT 'i', i.sop_instance_uid, s.institution_id, s.patient_id, NULL::bigint, i.sha256, s.study_uid,
       i.fixity_ok IS FALSE
FROM {_INSTANCE} i JOIN {_STUDY} s ON s.id = i.study_id
WHERE i.sop_instance_uid = ANY(CAST(%(instances)s AS text[]))
UNION ALL
SELECT 's', s.study_uid, s.id, s.institution_id, s.patient_id, s.dicom_patient_id, s.modalities,
       NULL
FROM {_STUDY} s WHERE s.study_uid = ANY(CAST(%(studies)s AS text[]))
UNION ALL
SELECT 'e', e.series_uid, e.id, e.study_id, s.institution_id, e.preview_key, NULL, NULL
FROM {_SERIES} e JOIN {_STUDY} s ON s.id = e.study_id
WHERE e.series_uid = ANY(CAST(%(series)s AS text[]))
"""  # noqa: S608 (table names are constants; every value is a parameter)


def known_rows(*, instances: Iterable[str], studies: Iterable[str], series: Iterable[str]):
    """The stored rows of these SOP Instance, Study and Series UIDs, in one statement:
    (kind, uid, number, number, number, text, text, flag) tuples, kind 'i', 's' or 'e'."""
    params = {
        "instances": text_array(instances),
        "studies": text_array(studies),
        "series": text_array(series),
    }
    return fetch_prepared(_KNOWN_SQL, params)


# The batch, in one statement. Existing studies and series have their counts raised (and a
# study its modalities merged, under the row lock the UPDATE takes); new ones are inserted;
# each instance joins its study and series by UID. A study or series that changed since it
# was looked up (deleted, or a series now of another study) leaves an instance without its
# study_id or series_id: the NOT NULL constraint then fails the whole statement with an
# IntegrityError, and nothing of the batch is written, as with the ORM's transaction. The
# UPDATEs lock rows in the order of their lists, which the caller sorts by primary key.
_MODALITIES_MERGED = """left(array_to_string(ARRAY(
    SELECT DISTINCT m COLLATE "C"
    FROM unnest(string_to_array(s.modalities || '\\' || b.modalities, '\\')) m
    WHERE m <> '' ORDER BY 1), '\\'), 128)"""


def _columns(model: type[Model], *, skip: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        (f.column, f.db_type(connection))
        for f in model._meta.concrete_fields
        if f.column not in ("id", *skip)
    ]


def _recordset(param: str, columns: list[tuple[str, str]]) -> str:
    typed = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"jsonb_to_recordset(CAST(%({param})s AS jsonb)) AS r({typed})"


@functools.cache
def _index_sql() -> str:
    study = _columns(Study, skip=())
    series = _columns(Series, skip=("study_id",))
    instance = _columns(Instance, skip=("study_id", "series_id"))

    def names(columns: list[tuple[str, str]], prefix: str = "") -> str:
        return ", ".join(prefix + name for name, _ in columns)

    uid = [("study_uid", "text")]
    return f"""
WITH bump_st AS (
    UPDATE {_STUDY} s SET
        instance_count = s.instance_count + b.instances,
        series_count = s.series_count + b.series,
        updated_at = %(now)s,
        modalities = CASE WHEN b.modalities = '' THEN s.modalities ELSE {_MODALITIES_MERGED} END
    FROM jsonb_to_recordset(CAST(%(bump_studies)s AS jsonb))
        AS b(id bigint, instances int, series int, modalities text)
    WHERE s.id = b.id
    RETURNING s.id, s.study_uid
), new_st AS (
    INSERT INTO {_STUDY} ({names(study)})
    SELECT {names(study, "r.")} FROM {_recordset("new_studies", study)}
    RETURNING id, study_uid
), st AS (
    SELECT id, study_uid FROM bump_st UNION ALL SELECT id, study_uid FROM new_st
), bump_se AS (
    UPDATE {_SERIES} e SET instance_count = e.instance_count + b.instances
    FROM jsonb_to_recordset(CAST(%(bump_series)s AS jsonb))
        AS b(id bigint, study_id bigint, instances int)
    WHERE e.id = b.id AND e.study_id = b.study_id
    RETURNING e.id, e.series_uid
), new_se AS (
    INSERT INTO {_SERIES} (study_id, {names(series)})
    SELECT st.id, {names(series, "r.")}
    FROM {_recordset("new_series", uid + series)} LEFT JOIN st ON st.study_uid = r.study_uid
    RETURNING id, series_uid, study_id
), se AS (
    SELECT id, series_uid FROM bump_se UNION ALL SELECT id, series_uid FROM new_se
), ins AS (
    INSERT INTO {_INSTANCE} (study_id, series_id, {names(instance)})
    SELECT st.id, se.id, {names(instance, "r.")}
    FROM {_recordset("instances", [*uid, ("series_uid", "text"), *instance])}
    LEFT JOIN st ON st.study_uid = r.study_uid
    LEFT JOIN se ON se.series_uid = r.series_uid
    RETURNING id, sop_instance_uid
)
SELECT 's', id, study_uid, NULL::bigint FROM new_st
UNION ALL SELECT 'e', id, series_uid, study_id FROM new_se
UNION ALL SELECT 'i', id, sop_instance_uid, NULL FROM ins
"""  # noqa: S608 (constant table and column names; every value is a parameter)


def index_rows(
    *,
    bump_studies: list[dict],
    new_studies: list[Study],
    bump_series: list[dict],
    new_series: list[tuple[str, Series]],
    instances: list[tuple[str, str, Instance]],
) -> list[tuple]:
    """Write a batch in one statement; ('s'|'e'|'i', pk, uid, study pk) per created row.

    new_series pairs each Series with its study's UID; instances pair each Instance with
    its study's and series' UIDs (their primary keys may not exist yet).
    """
    params = {
        "now": datetime.datetime.now(datetime.UTC),
        "bump_studies": _json(bump_studies),
        "new_studies": _json([_values(s, skip=()) for s in new_studies]),
        "bump_series": _json(bump_series),
        "new_series": _json(
            [{"study_uid": uid, **_values(s, skip=("study_id",))} for uid, s in new_series]
        ),
        "instances": _json(
            [
                {"study_uid": study, "series_uid": series, **_values(i, skip=_PARENTS)}
                for study, series, i in instances
            ]
        ),
    }
    return fetch_prepared(_index_sql(), params)


_PARENTS = ("study_id", "series_id")


def _values(obj: Model, *, skip: tuple[str, ...]) -> dict:
    """A model instance's column values (what the ORM would insert), JSON fields as documents."""
    values = {}
    for f in obj._meta.concrete_fields:
        if f.column == "id" or f.column in skip:
            continue
        value = getattr(obj, f.attname)
        values[f.column] = getattr(value, "value", value)  # a JSON Value() -> its document
    return values


def _json(rows: list) -> str:
    # orjson: the rows carry each instance's header, and json took a tenth of a small
    # instance's ingest to encode them (bench/README.md). It writes dates and times as
    # isoformat() does.
    try:
        return orjson.dumps(rows, default=float_value).decode()
    except TypeError:  # what orjson refuses (a lone surrogate, say), json writes
        return json.dumps(rows, default=_scalar, separators=(",", ":"))


def _scalar(value: object) -> str:
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")
