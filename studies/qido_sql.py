"""A QIDO-RS page of studies in plain SQL: the actor's scope, the query's keys, newest first.

Built by hand rather than through the ORM, whose compiling of this query (a UNION ALL, a
subquery for the hidden studies, the page's rows) cost more than running it. Every value
travels as a parameter; table and column names come from the models; the LIKE, regex and
date forms from Django's own connection operations, so PostgreSQL and SQLite agree.
"""

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from consent.facts_query import Lookup
from consent.models import StudyVisibility
from consent.prepared import fetch_prepared, int_array, text_array
from studies import qido
from studies.models import Study

_STUDY = Study._meta.db_table
_HIDES = StudyVisibility._meta.db_table
_NEWEST_FIRST = "study_date DESC NULLS LAST, id DESC"
_RESULT_COLUMNS = (
    "study_uid, institution_id, patient_id, modalities, series_count, instance_count,"
    " CAST(attributes AS text)"
)

# A lookup's columns (consent.facts_query.Lookup): the rank in the page, then StudyHit's,
# whose result's columns are left out of the first rows (a mark: how many).
_LOOKUP_COLUMNS = (
    f"row_number() OVER (ORDER BY {_NEWEST_FIRST}), patient_id, institution_id, study_uid,"
    f" CASE WHEN row_number() OVER (ORDER BY {_NEWEST_FIRST}) > %s THEN"
    " ARRAY[modalities, CAST(series_count AS text), CAST(instance_count AS text),"
    " CAST(attributes AS text)] END"
)


@dataclass(frozen=True)
class Scope:
    """The studies an actor may possibly see (a pre-filter: the gate decides each one)."""

    patient_ids: tuple[int, ...]
    # Practitioners: the studies their patient hid are left out (rule 5), except those made
    # at the acting institution, whose unreconciled studies are in scope too.
    leave_out_hidden: bool = False
    institution_id: int | None = None
    unreconciled: bool = False
    # Instead of patient_ids, a subquery of them; only in a lookup (``page_lookup``), where
    # it may use the gate's fact query's own parameters.
    patients_sql: str = ""


def page(*, scope: Scope, query: qido.Query, offset: int, limit: int) -> list[tuple]:
    """Rows (the result columns) of the page, newest first; no query when nothing can match.

    The ids are paged first, each part of the scope from its own narrow index (patient or
    institution, date, id), then the page's rows alone are read.
    """
    parts = _parts(scope, query)
    if not parts:
        return []
    union = " UNION ALL ".join(sql for sql, _ in parts)
    sql = (
        f"SELECT {_RESULT_COLUMNS} FROM {_STUDY} WHERE id IN ("  # noqa: S608 (names, marks)
        f"SELECT id FROM ({union}) page ORDER BY {_NEWEST_FIRST} LIMIT %s OFFSET %s"
        f") ORDER BY {_NEWEST_FIRST}"
    )
    params = [p for _, part_params in parts for p in part_params] + [limit, offset]
    if connection.vendor == "postgresql":
        # Prepared: lists travel as one array each, so the statement's text depends only
        # on which keys the query has (a client-side cursor re-parsed a mark per patient).
        return fetch_prepared(sql, params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def page_lookup(
    *, scope: Scope, query: qido.Query, offset: int, limit: int, bare: int = 0
) -> Lookup:
    """The page as a lookup for the gate's fact query (PostgreSQL): its studies are found and
    decided in one statement. Each row's id is its rank in the page; ``extra`` holds the
    modalities, series and instance counts and the attributes' text (``StudyHit``), or
    nothing in the first ``bare`` rows (only decided, never served)."""
    parts = _parts(scope, query)
    union = " UNION ALL ".join(sql for sql, _ in parts)
    ids = f"SELECT id FROM ({union}) page ORDER BY {_NEWEST_FIRST} LIMIT %s OFFSET %s"  # noqa: S608
    sql = f"SELECT {_LOOKUP_COLUMNS} FROM {_STUDY} WHERE id IN ({ids})"  # noqa: S608 (names, marks)
    params = [bare] + [p for _, part_params in parts for p in part_params] + [limit, offset]
    return Lookup(*_named(sql, params))


def _named(sql: str, params: list) -> tuple[str, dict]:
    """Positional marks as the named ones a lookup takes (l_0, l_1...): the only "%s" in
    these statements are marks (patterns travel as parameters)."""
    names = (f"l_{n}" for n in itertools.count())
    named: dict = {}

    def mark(_: re.Match) -> str:
        name = next(names)
        named[name] = params[len(named)]
        return f"%({name})s"

    return re.sub(r"%s", mark, sql), named


def _parts(scope: Scope, query: qido.Query) -> list[tuple[str, list]]:
    keys, key_params = _keys(query)
    parts = []
    if scope.patient_ids or scope.patients_sql:
        patients, patient_params = _patients("patient_id", scope)
        where = [patients, *keys]
        params = [*patient_params, *key_params]
        if scope.leave_out_hidden:
            hidden, hidden_params = _hidden(scope)
            where.append(f"id NOT IN ({hidden})")
            params += hidden_params
        parts.append((_select_ids(where), params))
    if scope.unreconciled and scope.institution_id is not None:
        where = ["institution_id = %s", "patient_id IS NULL", *keys]
        parts.append((_select_ids(where), [scope.institution_id, *key_params]))
    return parts


def _select_ids(where: list[str]) -> str:
    return f"SELECT id, study_date FROM {_STUDY} WHERE {' AND '.join(where)}"  # noqa: S608


def _hidden(scope: Scope) -> tuple[str, list]:
    """Ids of the studies in scope that their patient hid (an open hide by the study's own
    patient), made elsewhere than the acting institution: from the few open hides."""
    patients, params = _patients("v.patient_id", scope)
    sql = (
        f"SELECT h.id FROM {_HIDES} v JOIN {_STUDY} h"  # noqa: S608 (names and marks only)
        " ON h.study_uid = v.study_uid AND h.patient_id = v.patient_id"
        f" WHERE v.unhidden_at IS NULL AND {patients}"
    )
    if scope.institution_id is not None:
        sql += " AND h.institution_id <> %s"
        params.append(scope.institution_id)
    return sql, params


def _keys(query: qido.Query) -> tuple[list[str], list]:
    """The query's matching keys as conditions on the study table, as qido.filter_studies."""
    where: list[str] = []
    params: list = []
    if query.patient_id:
        _text(where, params, "dicom_patient_id", query.patient_id)
    if query.date_from:
        where.append("study_date >= %s")
        params.append(connection.ops.adapt_datefield_value(query.date_from))
    if query.date_to:
        where.append("study_date <= %s")
        params.append(connection.ops.adapt_datefield_value(query.date_to))
    if query.accession_number:
        _text(where, params, "accession_number", query.accession_number)
    if query.study_uids:
        uids, uid_params = _among("study_uid", query.study_uids)
        where.append(uids)
        params += uid_params
    if query.modality:
        _modality(where, params, query.modality)
    return where, params


def _text(where: list[str], params: list, column: str, pattern: str) -> None:
    """Single-value matching with the '*' and '?' wildcards of PS3.4 C.2.2.2.4."""
    if "*" not in pattern and "?" not in pattern:
        where.append(f"{column} = %s")
        params.append(pattern)
        return
    sql, param = qido.wildcard_match(column, pattern, connection.vendor)
    where.append(sql)
    params.append(param)


def _modality(where: list[str], params: list, modality: str) -> None:
    """One of the backslash-separated values of ModalitiesInStudy equals ``modality``."""
    like = connection.ops.prep_for_like_query
    ops = connection.operators
    where.append(
        f"(modalities = %s OR modalities {ops['startswith']} OR modalities {ops['endswith']}"
        f" OR modalities {ops['contains']})"
    )
    params += [
        modality,
        like(f"{modality}\\") + "%",
        "%" + like(f"\\{modality}"),
        "%" + like(f"\\{modality}\\") + "%",
    ]


def _patients(column: str, scope: Scope) -> tuple[str, list]:
    if scope.patients_sql:
        # ARRAY(): computed once, then matched as an array parameter is (an IN subquery
        # was planned as a join, slower on a large index).
        return f"{column} = ANY(ARRAY({scope.patients_sql}))", []
    return _among(column, scope.patient_ids)


def _among(column: str, values: Sequence) -> tuple[str, list]:
    """`column` is one of `values`: one array parameter on PostgreSQL, a mark each elsewhere."""
    if connection.vendor == "postgresql":
        if all(isinstance(v, int) for v in values):
            return f"{column} = ANY(CAST(%s AS bigint[]))", [int_array(values)]
        return f"{column} = ANY(CAST(%s AS text[]))", [text_array(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)
