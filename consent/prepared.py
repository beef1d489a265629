"""Server-side prepared statements on Django's own PostgreSQL connection.

Django's client-side cursors parse and plan a statement on every call; the per-request reads
(the gate's facts, the token look-up, the DICOMweb look-ups) are planned once per connection
instead. The settings decide whether psycopg may prepare at all (DB_PREPARED_STATEMENTS: not
behind a transaction pooler). The audit app keeps its own cursor: it imports no other app.
"""

import time
from collections.abc import Iterable, Mapping, Sequence

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created


def fetch_prepared(sql: str, params: Mapping | Sequence, *, binary: bool = False) -> list[tuple]:
    """All rows of one prepared statement (PostgreSQL only). `binary` results use
    psycopg's C loaders (timestamps included) instead of Django's Python text loaders."""
    db = connections[DEFAULT_DB_ALIAS]
    began = time.monotonic()
    with db.wrap_database_errors:  # marks the connection unusable on a lost server, as Django does
        rows = _cursor(db).execute(sql, params, prepare=True, binary=binary).fetchall()
    if db.queries_logged:
        # Counted like any query (django_assert_num_queries pins the per-request statements).
        db.queries_log.append({"sql": sql, "time": f"{time.monotonic() - began:.3f}"})
    return rows


def int_array(values: Iterable[int]) -> str:
    """Integers as a PostgreSQL array literal, for a parameter the statement casts to
    bigint[]: psycopg's own list adaptation inspects every element to choose a type, on
    every call (a search passes every patient in the practitioner's care)."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def text_array(values: Iterable[str]) -> str:
    """Texts as a PostgreSQL array literal, for a parameter cast to text[]. Inside double
    quotes a backslash escapes the next character ("Array Value Input"), so any text,
    commas, braces and quotes included, stays one element."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def _cursor(db) -> psycopg.Cursor:
    """One server-side-binding cursor per database connection, kept as long as the
    connection (creating one on every call was a measurable part of a query's client CPU).
    Kept on Django's connection wrapper: a module-level map would keep every closed
    connection alive through its cursor."""
    # As Django's own cursors do: a connection reused by a new request is checked first.
    db.close_if_health_check_failed()
    db.ensure_connection()
    cursor = getattr(db, "_prepared_cursor", None)
    if cursor is None or cursor.closed or cursor.connection is not db.connection:
        cursor = db._prepared_cursor = psycopg.Cursor(db.connection)
    return cursor


def _forget_cursor(sender: object, connection: object, **kwargs: object) -> None:
    # A new connection: drop the old one's cursor, and with it the old connection.
    connection._prepared_cursor = None


connection_created.connect(_forget_cursor, dispatch_uid="consent.prepared.forget_cursor")
