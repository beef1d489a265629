"""The gate's facts about one practitioner and some patients in ONE round trip (UNION ALL).

Every decision runs this, so it is plain SQL prepared once per shape rather than seven ORM
querysets compiled on every call. Rows already over at ``now`` are skipped here; the policy
still checks every period against the clock. Portable across PostgreSQL and SQLite.
"""

import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from django.db import connection
from django.utils import dateparse


@dataclass(frozen=True)
class Row:
    kind: str  # aff, rec, exc, hid, emg, con, car
    id: int | None
    patient_id: int | None
    start: datetime.datetime | None
    end: datetime.datetime | None
    revoked: datetime.datetime | None
    flag: bool
    flag2: bool
    text: str | None
    ref: int | None


@lru_cache(maxsize=256)
def _sql(patients: int, uids: int) -> str:
    p = ", ".join(["%s"] * patients)
    u = ", ".join(["%s"] * max(uids, 1))
    # Only "%s" placeholders are interpolated; every value travels as a parameter.
    hidden = (
        ""
        if not uids
        else f"""
UNION ALL SELECT 'hid', NULL, patient_id, NULL, NULL, NULL, NULL, NULL, study_uid, NULL
  FROM consent_studyvisibility
  WHERE patient_id IN ({p}) AND study_uid IN ({u}) AND unhidden_at IS NULL"""  # noqa: S608
    )
    # The first branch types every column (PostgreSQL resolves UNION types left to right).
    return f"""
SELECT 'aff' AS kind, id, CAST(NULL AS bigint) AS patient_id, start AS t_start,
       "end" AS t_end, CAST(NULL AS timestamp with time zone) AS t_revoked,
       CAST(NULL AS boolean) AS flag, CAST(NULL AS boolean) AS flag2,
       CAST(NULL AS varchar(64)) AS text, CAST(NULL AS bigint) AS ref
  FROM consent_affiliation WHERE practitioner_id = %s AND institution_id = %s
UNION ALL SELECT 'rec', NULL, patient_id, NULL, NULL, NULL, NULL, NULL, status, NULL
  FROM consent_sharedrecord WHERE patient_id IN ({p})
UNION ALL SELECT 'exc', id, patient_id, created_at, removed_at, NULL, NULL, NULL, NULL, NULL
  FROM consent_exclusion
  WHERE practitioner_id = %s AND patient_id IN ({p})
    AND (removed_at IS NULL OR removed_at > %s){hidden}
UNION ALL SELECT 'emg', id, patient_id, start, expires_at, NULL, NULL, NULL, NULL, NULL
  FROM consent_emergencyaccess
  WHERE practitioner_id = %s AND institution_id = %s AND patient_id IN ({p})
    AND expires_at > %s
UNION ALL SELECT 'con', c.id, c.patient_id, c.valid_from, c.valid_until, c.revoked_at,
       c.all_members, c.allow_emergency, NULL, ci.institution_id
  FROM consent_consent c
  LEFT JOIN consent_consent_institutions ci ON ci.consent_id = c.id
  WHERE c.patient_id IN ({p})
    AND (c.revoked_at IS NULL OR c.revoked_at > %s)
    AND (c.valid_until IS NULL OR c.valid_until > %s)
UNION ALL SELECT 'car', id, patient_id, start, "end", ended_at, NULL, NULL, NULL, NULL
  FROM consent_carerelationship
  WHERE practitioner_id = %s AND patient_id IN ({p}) AND "end" > %s
    AND (ended_at IS NULL OR ended_at > %s)
"""  # noqa: S608


def practitioner_rows(
    *,
    practitioner_id: int,
    institution_id: int | None,
    patient_ids: Sequence[int],
    study_uids: Sequence[str],
    now: datetime.datetime,
) -> list[Row]:
    """Affiliations at the institution, then per patient: record status, exclusions, hidden
    studies among ``study_uids``, emergency accesses, consents (one row per covered
    institution) and care relationships."""
    pids, uids = list(patient_ids), list(study_uids)
    at = connection.ops.adapt_datetimefield_value(now)
    params: list = [practitioner_id, institution_id, *pids, practitioner_id, *pids, at]
    if uids:
        params += [*pids, *uids]
    params += [practitioner_id, institution_id, *pids, at, *pids, at, at]
    params += [practitioner_id, *pids, at, at]
    sql = _sql(len(pids), len(uids))
    if connection.vendor == "postgresql":
        raw = _fetch_prepared(sql, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            raw = cursor.fetchall()
    convert = _from_sqlite if connection.vendor == "sqlite" else _as_is
    return [
        Row(
            kind=r[0],
            id=r[1],
            patient_id=r[2],
            start=convert(r[3]),
            end=convert(r[4]),
            revoked=convert(r[5]),
            flag=bool(r[6]),
            flag2=bool(r[7]),
            text=r[8],
            ref=r[9],
        )
        for r in raw
    ]


def _fetch_prepared(sql: str, params: list) -> list[tuple]:
    """PostgreSQL: a server-side prepared statement on Django's own connection, planned once
    per connection (Django's client-side cursors would plan this UNION on every call)."""
    import psycopg

    connection.ensure_connection()
    began = time.monotonic()
    with psycopg.Cursor(connection.connection) as cursor:
        raw = cursor.execute(sql, params, prepare=True).fetchall()
    if connection.queries_logged:
        # Counted like any query (django_assert_num_queries pins the gate's queries).
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - began:.3f}"})
    return raw


def _as_is(value: datetime.datetime | None) -> datetime.datetime | None:
    return value


def _from_sqlite(value: str | datetime.datetime | None) -> datetime.datetime | None:
    # SQLite hands back the stored text (or a naive datetime when it knows the column's
    # declared type); Django stores UTC without an offset.
    if value is None:
        return None
    parsed = value if isinstance(value, datetime.datetime) else dateparse.parse_datetime(value)
    return parsed.replace(tzinfo=datetime.UTC) if parsed.tzinfo is None else parsed
