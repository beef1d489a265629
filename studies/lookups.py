"""The read path's per-request lookups in plain SQL, planned once per connection on PostgreSQL.

WADO-RS and /metadata run these on every request: as ORM querysets they cost a compile in
Python and a plan in PostgreSQL each time (about 2 ms together), as prepared statements a
fraction of that. Values always travel as parameters; table names come from the models.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from django.db import connection

from consent.facts_query import Lookup
from consent.gate import Found
from consent.models import Patient
from consent.prepared import fetch_prepared
from studies import fixity
from studies.models import Instance, Series, Study

_STUDY = Study._meta.db_table
_SERIES = Series._meta.db_table
_INSTANCE = Instance._meta.db_table
_PATIENT = Patient._meta.db_table

# Rows of /metadata fetched at once: a study's headers never sit whole in memory.
METADATA_CHUNK = 200
# An instance up to this size is read in one piece and served with a Content-Length.
SMALL_OBJECT = 1024 * 1024


@dataclass(frozen=True)
class StudyRow:
    """A study as the gate sees it (a StudyRef) and what the read path needs of it."""

    pk: int
    study_uid: str
    institution_id: int
    patient_id: int | None
    national_id: str
    instance_count: int

    @property
    def patient(self) -> Patient | None:
        """An unsaved Patient with the two fields the gate reads (pk and national_id)."""
        if self.patient_id is None:
            return None
        return Patient(pk=self.patient_id, national_id=self.national_id)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    # Its last fixity check found it altered or lost: never served (studies.fixity).
    failed: bool = False
    transfer_syntax: str = ""


_STUDY_COLUMNS = (
    "s.id, s.study_uid, s.institution_id, s.patient_id, p.national_id, s.instance_count"
)
_STUDY_SQL = f"""
SELECT {_STUDY_COLUMNS}
  FROM {_STUDY} s LEFT JOIN {_PATIENT} p ON p.id = s.patient_id
 WHERE s.study_uid = %s"""  # noqa: S608 (model table names; the value is a parameter)

_INSTANCE_SQL = f"""
SELECT {_STUDY_COLUMNS}, i.storage_key, i.size, i.fixity_ok, i.transfer_syntax_uid
  FROM {_INSTANCE} i
  JOIN {_SERIES} se ON se.id = i.series_id
  JOIN {_STUDY} s ON s.id = i.study_id
  LEFT JOIN {_PATIENT} p ON p.id = s.patient_id
 WHERE i.sop_instance_uid = %s AND se.series_uid = %s AND s.study_uid = %s"""  # noqa: S608

# The same two look-ups as lookups the gate runs inside its fact query (consent.gate
# .authorize_found): the study's columns for the gate, the rest in `extra`.
_STUDY_LOOKUP = f"""
SELECT s.id, s.patient_id, s.institution_id, s.study_uid,
       ARRAY[CAST(s.instance_count AS text), p.national_id]
  FROM {_STUDY} s LEFT JOIN {_PATIENT} p ON p.id = s.patient_id
 WHERE s.study_uid = %(l_study)s"""  # noqa: S608 (model table names; values are parameters)

_INSTANCE_LOOKUP = f"""
SELECT s.id, s.patient_id, s.institution_id, s.study_uid,
       ARRAY[i.storage_key, CAST(i.size AS text), CAST(i.fixity_ok IS FALSE AS text),
             i.transfer_syntax_uid]
  FROM {_INSTANCE} i
  JOIN {_SERIES} se ON se.id = i.series_id
  JOIN {_STUDY} s ON s.id = i.study_id
 WHERE i.sop_instance_uid = %(l_sop)s AND se.series_uid = %(l_series)s
   AND s.study_uid = %(l_study)s"""  # noqa: S608

_ORDER = "ORDER BY series_id, instance_number IS NULL, instance_number, id"
_IN_STUDY = {1: "study_id = %s", 2: "study_id = %s AND series_id = %s"}
# By the number of parameters: a study's instances, or a series' of it.
_METADATA_SQL = {
    n: f"SELECT CAST(metadata AS text) FROM {_INSTANCE} WHERE {where} {_ORDER}"  # noqa: S608
    for n, where in _IN_STUDY.items()
}
_IDS_SQL = {
    n: f"SELECT id FROM {_INSTANCE} WHERE {where} {_ORDER}"  # noqa: S608
    for n, where in _IN_STUDY.items()
}


def study_row(study_uid: str) -> StudyRow | None:
    """The study with this UID and its patient's national ID, in one statement."""
    rows = _fetch(_STUDY_SQL, [study_uid])
    return _study_row(rows[0]) if rows else None


def instance_object(
    *, study_uid: str, series_uid: str, sop_uid: str
) -> tuple[StudyRow, StoredObject] | None:
    """The instance's study (for the gate) and stored object, when all three UIDs match."""
    rows = _fetch(_INSTANCE_SQL, [sop_uid, series_uid, study_uid])
    if not rows:
        return None
    row = rows[0]
    stored = StoredObject(
        key=row[6], size=row[7], failed=fixity.failed(row[8]), transfer_syntax=row[9]
    )
    return _study_row(row), stored


def study_lookup(study_uid: str) -> Lookup:
    """The study with this UID, as a lookup for the gate's fact query (``study_of``)."""
    return Lookup(_STUDY_LOOKUP, {"l_study": study_uid}, study_uid=study_uid)


def instance_lookup(*, study_uid: str, series_uid: str, sop_uid: str) -> Lookup:
    """The instance's study, when all three UIDs match, as a lookup for the gate's fact
    query (``stored_object_of``)."""
    params = {"l_study": study_uid, "l_series": series_uid, "l_sop": sop_uid}
    return Lookup(_INSTANCE_LOOKUP, params, study_uid=study_uid)


def study_of(found: Found) -> StudyRow:
    """The StudyRow of a study ``study_lookup`` found."""
    instance_count, national_id = found.extra
    return StudyRow(
        pk=found.pk,
        study_uid=found.study_uid,
        institution_id=found.institution_id,
        patient_id=found.patient_id,
        national_id=national_id or "",
        instance_count=int(instance_count),
    )


def stored_object_of(found: Found) -> StoredObject:
    """The stored object of an instance ``instance_lookup`` found."""
    key, size, failed, syntax = found.extra
    return StoredObject(key=key, size=int(size), failed=failed == "true", transfer_syntax=syntax)


def metadata_texts(*, study: StudyRow, series_id: int | None = None) -> Iterator[list[str]]:
    """The DICOM JSON of a study's (or series') instances as stored text, in display order,
    at most METADATA_CHUNK at a time (neither decoded nor encoded again)."""
    params = [study.pk] if series_id is None else [study.pk, series_id]
    if study.instance_count <= METADATA_CHUNK:
        # The usual case: one statement.
        yield [r[0] for r in _fetch(_METADATA_SQL[len(params)], params)]
        return
    ids = [r[0] for r in _fetch(_IDS_SQL[len(params)], params)]
    for start in range(0, len(ids), METADATA_CHUNK):
        yield _metadata_of(ids[start : start + METADATA_CHUNK])


def _metadata_of(ids: Sequence[int]) -> list[str]:
    marks = ", ".join(["%s"] * len(ids))
    sql = f"SELECT id, CAST(metadata AS text) FROM {_INSTANCE} WHERE id IN ({marks})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, list(ids))
        by_id = dict(cursor.fetchall())
    return [by_id[i] for i in ids if i in by_id]


def _study_row(row: Sequence) -> StudyRow:
    return StudyRow(
        pk=row[0],
        study_uid=row[1],
        institution_id=row[2],
        patient_id=row[3],
        national_id=row[4] or "",
        instance_count=row[5],
    )


def _fetch(sql: str, params: list) -> list[tuple]:
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    return fetch_prepared(sql, params)
