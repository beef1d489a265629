"""The gate's facts about one practitioner and some patients in ONE round trip (UNION ALL).

Every decision runs this, so it is plain SQL rather than seven ORM querysets compiled on
every call. On PostgreSQL it is one statement whatever the number of patients or studies
(``= ANY`` of arrays), prepared server-side once per connection; SQLite gets an ``IN``
list per shape. Rows already over at ``now`` are skipped here; the policy still checks
every period against the clock.
"""

import datetime
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import dateparse

from consent.prepared import fetch_prepared, int_array, text_array


class Row(NamedTuple):
    # A NamedTuple, not a dataclass: a decision builds a few of these, and every
    # microsecond of a decision counts (bench/bench_gate.py).
    kind: str  # aff, rec, exc, hid, emg, con, car; ins (institution code), nid (national id)
    id: int | None
    patient_id: int | None
    start: datetime.datetime | None
    end: datetime.datetime | None
    revoked: datetime.datetime | None
    flag: bool | None
    flag2: bool | None
    text: str | None
    ref: int | None
    extra: list[str] | None  # a lookup's own columns (kind "fnd"); None on every other kind


class Lookup(NamedTuple):
    """A SELECT of the studies a request names, run in the fact query's own statement: the
    facts are then read for its patients and study UIDs, in the same round trip and the
    same snapshot. Its columns, in order: id, patient_id, institution_id, study_uid and
    ``extra`` (text[], whatever its caller reads back); named parameters only, its own
    prefixed ``l_`` so that they cannot clash with the fact query's, which it may use
    (practitioner, institution, now: ``VISIBLE_PATIENTS`` does)."""

    sql: str
    params: dict
    # The study the request names: audited with a failure to decide (nothing found then).
    study_uid: str = ""


# Named parameters: each value travels once, however many branches use it. {patients} and
# {uids} become "= ANY(array)" on PostgreSQL and "IN (...)" on SQLite.
_TEMPLATE = """
SELECT 'aff' AS kind, id, CAST(NULL AS bigint) AS patient_id, start AS t_start,
       "end" AS t_end, CAST(NULL AS timestamp with time zone) AS t_revoked,
       CAST(NULL AS boolean) AS flag, CAST(NULL AS boolean) AS flag2,
       CAST(NULL AS varchar(64)) AS text, CAST(NULL AS bigint) AS ref,
       CAST(NULL AS {text_array}) AS extra
  FROM consent_affiliation
  WHERE practitioner_id = %(practitioner)s AND institution_id = %(institution)s
UNION ALL SELECT 'rec', NULL, patient_id, NULL, NULL, NULL, NULL, NULL, status, NULL, NULL
  FROM consent_sharedrecord WHERE patient_id {patients}
UNION ALL SELECT 'exc', id, patient_id, created_at, removed_at, NULL, NULL, NULL, NULL, NULL,
       NULL
  FROM consent_exclusion
  WHERE practitioner_id = %(practitioner)s AND patient_id {patients}
    AND (removed_at IS NULL OR removed_at > %(now)s)
UNION ALL SELECT 'hid', NULL, patient_id, NULL, NULL, NULL, NULL, NULL, study_uid, NULL, NULL
  FROM consent_studyvisibility
  WHERE patient_id {patients} AND study_uid {uids} AND unhidden_at IS NULL
UNION ALL SELECT 'emg', id, patient_id, start, expires_at, NULL, NULL, NULL, NULL, NULL, NULL
  FROM consent_emergencyaccess
  WHERE practitioner_id = %(practitioner)s AND institution_id = %(institution)s
    AND patient_id {patients} AND expires_at > %(now)s
UNION ALL SELECT 'con', c.id, c.patient_id, c.valid_from, c.valid_until, c.revoked_at,
       c.all_members, c.allow_emergency, NULL, ci.institution_id, NULL
  FROM consent_consent c
  LEFT JOIN consent_consent_institutions ci ON ci.consent_id = c.id
  WHERE c.patient_id {patients}
    AND (c.revoked_at IS NULL OR c.revoked_at > %(now)s)
    AND (c.valid_until IS NULL OR c.valid_until > %(now)s)
UNION ALL SELECT 'car', id, patient_id, start, "end", ended_at, NULL, NULL, NULL, NULL, NULL
  FROM consent_carerelationship
  WHERE practitioner_id = %(practitioner)s AND patient_id {patients} AND "end" > %(now)s
    AND (ended_at IS NULL OR ended_at > %(now)s)
UNION ALL SELECT 'ins', id, NULL, NULL, NULL, NULL, NULL, NULL, code, NULL, NULL
  FROM consent_institution WHERE id {institutions}
UNION ALL SELECT 'nid', NULL, id, NULL, NULL, NULL, NULL, NULL, national_id, NULL, NULL
  FROM consent_patient WHERE id {patients}
"""

# The first branch types every column (PostgreSQL resolves UNION types left to right). The
# arrays travel as typed array literals (see consent.prepared.int_array), so that the one prepared
# statement fits any number of ids.
_POSTGRESQL = _TEMPLATE.format(
    patients="= ANY(CAST(%(patients)s AS bigint[]))",
    uids="= ANY(CAST(%(uids)s AS text[]))",
    institutions="= ANY(CAST(%(institutions)s AS bigint[]))",
    text_array="text[]",
)

# With a lookup, its studies are the patients, UIDs and institutions asked about, and come
# back as rows of kind "fnd". MATERIALIZED: the lookup runs once, not once per branch.
_FOUND_BRANCH = """
UNION ALL SELECT 'fnd', id, patient_id, NULL, NULL, NULL, NULL, NULL, study_uid,
       institution_id, extra
  FROM found
"""


@lru_cache(maxsize=64)
def _postgresql_with(lookup_sql: str) -> str:
    facts = _TEMPLATE.format(
        patients="IN (SELECT patient_id FROM found)",
        uids="IN (SELECT study_uid FROM found)",
        institutions="IN (SELECT institution_id FROM found)",
        text_array="text[]",
    )
    columns = "id, patient_id, institution_id, study_uid, extra"
    return f"WITH found ({columns}) AS MATERIALIZED ({lookup_sql})\n{facts}{_FOUND_BRANCH}"


@lru_cache(maxsize=64)
def _sqlite_sql(patients: int, uids: int, institutions: int) -> str:
    def marks(prefix: str, count: int) -> str:
        # An empty IN () is not SQL; NULL matches nothing.
        return "IN (%s)" % (", ".join(f"%({prefix}{n})s" for n in range(count)) or "NULL")

    return _TEMPLATE.format(
        patients=marks("p", patients),
        uids=marks("u", uids),
        institutions=marks("i", institutions),
        text_array="text",
    )


def practitioner_rows(
    *,
    practitioner_id: int,
    institution_id: int | None,
    patient_ids: Sequence[int],
    study_uids: Sequence[str],
    now: datetime.datetime,
    institution_ids: Sequence[int] = (),
) -> list[Row]:
    """Affiliations at the institution, then per patient: record status, exclusions, hidden
    studies among ``study_uids``, emergency accesses, consents (one row per covered
    institution), care relationships and national identifier; and the codes of
    ``institution_ids``."""
    # The proxy `django.db.connection` costs a thread-local lookup on every attribute.
    db = connections[DEFAULT_DB_ALIAS]
    params = {"practitioner": practitioner_id, "institution": institution_id, "now": now}
    if db.vendor == "postgresql":
        params["patients"] = int_array(patient_ids)
        params["uids"] = text_array(study_uids)
        params["institutions"] = int_array(institution_ids)
        return list(map(Row._make, fetch_prepared(_POSTGRESQL, params, binary=True)))
    params["now"] = db.ops.adapt_datetimefield_value(now)
    params.update((f"p{n}", pid) for n, pid in enumerate(patient_ids))
    params.update((f"u{n}", uid) for n, uid in enumerate(study_uids))
    params.update((f"i{n}", iid) for n, iid in enumerate(institution_ids))
    with db.cursor() as cursor:
        sql = _sqlite_sql(len(patient_ids), len(study_uids), len(institution_ids))
        cursor.execute(sql, params)
        return [_from_sqlite(r) for r in cursor.fetchall()]


def folds_lookups() -> bool:
    """Whether ``rows_with_lookup`` is available: PostgreSQL only (SQLite keeps the
    look-up and the fact query apart)."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def rows_with_lookup(
    *, practitioner_id: int, institution_id: int | None, lookup: Lookup, now: datetime.datetime
) -> list[Row]:
    """As ``practitioner_rows`` for the patients, UIDs and institutions of the studies the
    lookup finds, and those studies (kind "fnd"), in one statement. Rows come in no set
    order: a lookup whose order matters says it in its id column."""
    params = {"practitioner": practitioner_id, "institution": institution_id, "now": now}
    params.update(lookup.params)
    rows = fetch_prepared(_postgresql_with(lookup.sql), params, binary=True)
    return list(map(Row._make, rows))


# The gate's other per-request reads, as prepared statements on PostgreSQL (on SQLite the
# gate keeps its ORM queries): planning them cost more than running them.
# Also the patients of a QIDO-RS lookup (studies.qido_sql), with the fact query's parameters.
VISIBLE_PATIENTS = _VISIBLE_PATIENTS = """
SELECT patient_id FROM consent_carerelationship
  WHERE practitioner_id = %(practitioner)s AND start <= %(now)s AND "end" > %(now)s
    AND (ended_at IS NULL OR ended_at > %(now)s)
UNION SELECT patient_id FROM consent_emergencyaccess
  WHERE practitioner_id = %(practitioner)s AND institution_id = %(institution)s
    AND start <= %(now)s AND expires_at > %(now)s
"""
_INSTITUTION_CODES = (
    "SELECT id, code FROM consent_institution WHERE id = ANY(CAST(%(ids)s AS bigint[]))"
)
_NATIONAL_IDS = (
    "SELECT id, national_id FROM consent_patient WHERE id = ANY(CAST(%(ids)s AS bigint[]))"
)


def visible_patient_ids(
    *, practitioner_id: int, institution_id: int | None, now: datetime.datetime
) -> set[int] | None:
    """PostgreSQL: patients in a care relationship with the practitioner, or under their
    emergency access at the institution, now. None on other databases (the caller's ORM)."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return None
    params = {"practitioner": practitioner_id, "institution": institution_id, "now": now}
    return {pid for (pid,) in fetch_prepared(_VISIBLE_PATIENTS, params, binary=True)}


def institution_codes(ids: Iterable[int]) -> dict[int, str] | None:
    """PostgreSQL: {id: code}; None on other databases (the caller's ORM)."""
    return _pairs(_INSTITUTION_CODES, ids)


def national_ids(ids: Iterable[int]) -> dict[int, str] | None:
    """PostgreSQL: {patient id: national id}; None on other databases (the caller's ORM)."""
    return _pairs(_NATIONAL_IDS, ids)


def _pairs(sql: str, ids: Iterable[int]) -> dict | None:
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return None
    literal = int_array(ids)
    return dict(fetch_prepared(sql, {"ids": literal}, binary=True))


def _from_sqlite(r: tuple) -> Row:
    return Row(r[0], r[1], r[2], _sqlite_time(r[3]), _sqlite_time(r[4]), _sqlite_time(r[5]), *r[6:])


def _sqlite_time(value: str | datetime.datetime | None) -> datetime.datetime | None:
    # SQLite hands back the stored text (or a naive datetime when it knows the column's
    # declared type); Django stores UTC without an offset.
    if value is None:
        return None
    parsed = value if isinstance(value, datetime.datetime) else dateparse.parse_datetime(value)
    return parsed.replace(tzinfo=datetime.UTC) if parsed.tzinfo is None else parsed
