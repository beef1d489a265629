"""The one writer of the audit log: append an event under the head lock, chained by hash."""

import json
from collections.abc import Sequence

import psycopg
from django.db import DatabaseError, connection, transaction
from django.db.backends.signals import connection_created
from django.utils import timezone

from audit import canonical
from audit.actions import Outcome, is_known
from audit.errors import AuditUnavailable, InvalidAuditEvent
from audit.events import EVENT_FIELDS, Event
from audit.models import APPENDING, AuditEvent, AuditHead

# Codes and identifiers are short; an oversized value is a caller's bug, refused loudly.
_MAX_LENGTHS = {
    f.name: f.max_length
    for f in AuditEvent._meta.get_fields()
    if getattr(f, "max_length", None) and f.name in EVENT_FIELDS
}


def append(event: Event) -> AuditEvent:
    """Append one event to the chain and return the stored row.

    Joins the caller's transaction when one is open, so a service's change and its audit
    row commit (or roll back) together; otherwise commits on its own.

    Raises
    ------
    AuditUnavailable
        On any failure, so that the gate can fail closed.
    """
    values = _validated_values(event)
    content = _content_of(values)
    try:
        if connection.vendor == "postgresql":
            return _append_postgresql(values, content)
        with transaction.atomic():
            return _append_locked(values, content)
    except DatabaseError as exc:
        # Includes TransactionManagementError: the caller's transaction is already broken.
        raise AuditUnavailable(f"The audit log could not be written: {exc}") from exc


def append_many(events: Sequence[Event]) -> list[AuditEvent]:
    """Append several events, chained in their order, all or none; the stored rows.

    One transaction: a reader never sees part of them. On PostgreSQL they are appended by
    one statement, sent with the flush barrier in one round trip, as one event is.

    Raises
    ------
    AuditUnavailable
        On any failure; then none of the events was appended.
    """
    prepared = [(values, _content_of(values)) for values in map(_validated_values, events)]
    if not prepared:
        return []
    try:
        if connection.vendor == "postgresql":
            return _append_many_postgresql(prepared)
        with transaction.atomic():
            return [_append_locked(values, content) for values, content in prepared]
    except DatabaseError as exc:
        raise AuditUnavailable(f"The audit log could not be written: {exc}") from exc


def _content_of(values: dict) -> str:
    return canonical.content_hash([values[name] for name in EVENT_FIELDS])


def _validated_values(event: Event) -> dict:
    """The event's fields, checked and normalised into exactly what the database returns."""
    if not is_known(event.action):
        raise InvalidAuditEvent(f"Unknown audit action {event.action!r}")
    if event.outcome not in Outcome.values:
        raise InvalidAuditEvent(f"Unknown audit outcome {event.outcome!r}")
    # Not dataclasses.asdict: its deep copy is slow, and dicts are copied by _checked anyway.
    fields = vars(event)
    return {name: _checked(name, fields[name]) for name in EVENT_FIELDS}


def _checked(name: str, value: object) -> object:
    if type(value) is str:  # the common case first: this runs 17 times per event
        limit = _MAX_LENGTHS.get(name)
        if limit and len(value) > limit:
            raise InvalidAuditEvent(f"{name} is longer than {limit} characters")
        # PostgreSQL text cannot hold NUL; replace it so that both databases store the same.
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        try:
            return canonical.normalise_json(value, name=name)
        except (TypeError, ValueError) as exc:
            raise InvalidAuditEvent(f"{name} is not plain JSON: {exc}") from exc
    if isinstance(value, str):
        return _checked(name, str.__str__(value))  # an exact str (SafeString is its own str)
    raise InvalidAuditEvent(f"{name} must be a string")


# PostgreSQL: lock the head, number, time-stamp, link, insert and move the head in ONE
# statement, so that other writers wait for one statement only. The link line is
# canonical.link_hash, in SQL.
_TABLE = AuditEvent._meta.db_table
_JSON_FIELDS = {"basis_ids", "detail"}


def _pg_append_sql(*, deferred_flush: bool) -> str:
    # deferred_flush: this statement's own transaction commits without waiting for the WAL
    # flush, so the head lock is released at once; append() then waits for the flush with
    # a barrier commit that PostgreSQL's group commit shares between concurrent writers.
    config = ", (SELECT set_config('synchronous_commit', 'off', true)) AS cfg" * deferred_flush
    columns = ", ".join(EVENT_FIELDS)
    marks = ", ".join("%s" for _ in EVENT_FIELDS)
    return f"""
WITH old AS (SELECT seq, hash FROM audit_audithead WHERE id = 1 FOR UPDATE),
new AS (SELECT seq + 1 AS seq, hash AS prev, clock_timestamp() AS t{config} FROM old),
link AS (
    SELECT seq, prev, t, encode(sha256(convert_to(
        prev || '|1|' || seq::text || '|'
        || to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00|' || %s,
        'UTF8')), 'hex') AS hash
    FROM new
),
moved AS (UPDATE audit_audithead SET seq = link.seq, hash = link.hash FROM link
          WHERE audit_audithead.id = 1)
INSERT INTO {_TABLE} (seq, time, version, prev_hash, hash, {columns})
SELECT link.seq, link.t, 1, link.prev, link.hash, {marks}
FROM link
RETURNING seq, time, prev_hash, hash
"""  # noqa: S608 (constant column names; every value is a parameter)


_PG_APPEND_ALONE = _pg_append_sql(deferred_flush=True)
_PG_APPEND_IN_TRANSACTION = _pg_append_sql(deferred_flush=False)
# Any commit that has a transaction id waits for the WAL up to its commit record, which
# lies after the append's: once it returns, the audit row is durable.
_PG_FLUSH_BARRIER = "SELECT pg_current_xact_id()"


def _params(values: dict, content: str) -> list:
    return [content] + [
        canonical.encode_content(values[n]) if n in _JSON_FIELDS else values[n]
        for n in EVENT_FIELDS
    ]


def _append_postgresql(values: dict, content: str) -> AuditEvent:
    params = _params(values, content)
    try:
        if connection.in_atomic_block:
            # A savepoint, so that a failure leaves the caller's transaction usable for its
            # own clean-up; the caller's commit makes the row durable.
            with transaction.atomic():
                found = _execute_append(_PG_APPEND_IN_TRANSACTION, params)
        else:
            # Autocommit: the statement is its own transaction; then the flush barrier.
            found = _append_then_barrier(params)
    except psycopg.Error as exc:
        raise AuditUnavailable(f"The audit log could not be written: {exc}") from exc
    return _stored_row(values, found)


def _pg_append_many_sql(*, deferred_flush: bool) -> str:
    # As _pg_append_sql, for N events in ONE statement: a recursive walk links each to the
    # one before (canonical.link_hash, in SQL), all at one clock reading. The events come
    # as one JSON array of objects, numbered n from 1 in their order (one parameter: a JSON
    # text is far cheaper for psycopg to send than an array per field), and their content
    # hashes (hexadecimal) joined by commas, read by position as the walk goes. Every field
    # is read as text: the JSON fields come already in their canonical encoding, the exact
    # text the chain covers, as append() stores it.
    config = ", (SELECT set_config('synchronous_commit', 'off', true)) AS cfg" * deferred_flush
    columns = ", ".join(f"{n} text" for n in EVENT_FIELDS)
    return f"""
WITH RECURSIVE
old AS (SELECT seq, hash FROM audit_audithead WHERE id = 1 FOR UPDATE),
clock AS (SELECT clock_timestamp() AS t{config}),
items AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS u(n bigint, {columns})),
contents AS (SELECT string_to_array(%s, ',') AS a),
link (n, seq, prev, hash) AS (
    SELECT 0::bigint, seq, ''::text, hash::text FROM old
    UNION ALL
    SELECT l.n + 1, l.seq + 1, l.hash::text, encode(sha256(convert_to(
        l.hash || '|1|' || (l.seq + 1)::text || '|'
        || to_char(clock.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00|'
        || c.a[l.n + 1], 'UTF8')), 'hex')
    FROM link l, contents c, clock
    WHERE l.n < cardinality(c.a)
),
last AS (SELECT seq, hash FROM link ORDER BY n DESC LIMIT 1),
moved AS (UPDATE audit_audithead SET seq = last.seq, hash = last.hash FROM last
          WHERE audit_audithead.id = 1 AND last.seq > (SELECT seq FROM old))
INSERT INTO {_TABLE} (seq, time, version, prev_hash, hash, {", ".join(EVENT_FIELDS)})
SELECT l.seq, clock.t, 1, l.prev, l.hash, {", ".join(f"i.{n}" for n in EVENT_FIELDS)}
FROM link l JOIN items i ON i.n = l.n CROSS JOIN clock
ORDER BY l.n
RETURNING seq, time, prev_hash, hash
"""  # noqa: S608 (constant column names; every value is a parameter)


_PG_APPEND_MANY_ALONE = _pg_append_many_sql(deferred_flush=True)
_PG_APPEND_MANY_IN_TRANSACTION = _pg_append_many_sql(deferred_flush=False)


# The recursive walk costs more per event the more events a statement chains (each step
# reads the hashes' array anew): 1,000 events took 0.23 s under the head lock, 50 events
# about 1 ms. Longer batches go as statements of at most this many, in one transaction.
_MANY_PER_STATEMENT = 64


def _many_params(prepared: list[tuple[dict, str]]) -> list:
    items = [
        {"n": n, **{name: _text_of(name, values[name]) for name in EVENT_FIELDS}}
        for n, (values, _) in enumerate(prepared, 1)
    ]
    return [json.dumps(items, allow_nan=False), ",".join(content for _, content in prepared)]


def _text_of(name: str, value: object) -> object:
    return canonical.encode_content(value) if name in _JSON_FIELDS else value


def _append_many_postgresql(prepared: list[tuple[dict, str]]) -> list[AuditEvent]:
    chunks = [
        _many_params(prepared[start : start + _MANY_PER_STATEMENT])
        for start in range(0, len(prepared), _MANY_PER_STATEMENT)
    ]
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                found = _each_chunk(_PG_APPEND_MANY_IN_TRANSACTION, chunks)
        elif len(chunks) == 1:
            found = _append_then_barrier(chunks[0], sql=_PG_APPEND_MANY_ALONE, fetch_all=True)
        else:
            with transaction.atomic():
                found = _each_chunk(_PG_APPEND_MANY_ALONE, chunks)
            _barrier_cursor().execute(_PG_FLUSH_BARRIER, prepare=True)
    except psycopg.Error as exc:
        raise AuditUnavailable(f"The audit log could not be written: {exc}") from exc
    if len(found) != len(prepared):
        raise AuditUnavailable("The audit head row is missing and could not be rebuilt.")
    found.sort()  # by seq: the events' order (RETURNING promises none)
    return [_stored_row(values, row) for (values, _), row in zip(prepared, found, strict=True)]


def _each_chunk(sql: str, chunks: list[list]) -> list[tuple]:
    return [row for params in chunks for row in _execute_append_many(sql, params)]


def _execute_append_many(sql: str, params: list) -> list[tuple]:
    cursor = _prepared_cursor()
    found = cursor.execute(sql, params, prepare=True).fetchall()
    if not found:
        # No head row (a fresh flush): rebuild it from the chain, then append.
        _ensure_head()
        found = cursor.execute(sql, params, prepare=True).fetchall()
    return found


def _stored_row(values: dict, found: tuple) -> AuditEvent:
    seq, time, prev_hash, digest = found
    # Positional arguments in field order: Model.__init__'s fast path (keywords cost more).
    chain = {"seq": seq, "time": time, "version": 1, "prev_hash": prev_hash, "hash": digest}
    row = AuditEvent(*[chain[name] if name in chain else values[name] for name in _COLUMNS])
    row._state.adding, row._state.db = False, connection.alias
    return row


_COLUMNS = [f.attname for f in AuditEvent._meta.concrete_fields]


# One server-side-binding cursor per database connection, kept as long as the connection.
def _prepared_cursor() -> "psycopg.Cursor":
    """A server-side-binding cursor on Django's own connection: the statement is planned
    once per connection (Django's client-side cursors re-plan it on every call)."""
    # As Django's own cursors do: a connection reused by a new request is checked first.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    return _kept_cursor("_audit_cursor")


def _barrier_cursor() -> "psycopg.Cursor":
    """A second cursor for the barrier: in a pipeline, a cursor keeps only its last result,
    and the append's must be read."""
    return _kept_cursor("_barrier_cursor")


def _kept_cursor(attribute: str) -> "psycopg.Cursor":
    # Kept on Django's connection wrapper, replaced with the connection it belongs to (a
    # module-level map would keep every closed connection alive through its cursor).
    raw = connection.connection
    cursor = getattr(connection, attribute, None)
    if cursor is None or cursor.closed or cursor.connection is not raw:
        cursor = psycopg.Cursor(raw)
        setattr(connection, attribute, cursor)
    return cursor


def _forget_cursor(sender: object, connection: object, **kwargs: object) -> None:
    # A new connection: drop the old one's cursors, and with them the old connection.
    connection._audit_cursor = None
    connection._barrier_cursor = None


connection_created.connect(_forget_cursor, dispatch_uid="audit.services.forget_cursor")


def _append_then_barrier(
    params: list, *, sql: str = _PG_APPEND_ALONE, fetch_all: bool = False
) -> tuple | list[tuple]:
    """The append (of one event, or of several with ``fetch_all``), then the flush barrier
    in a transaction of its own, sent together in one round trip (a pipeline): both results
    are read before this returns, so the rows are durable before any caller goes on."""
    cursor, barrier = _prepared_cursor(), _barrier_cursor()
    with cursor.connection.pipeline() as pipeline:
        cursor.execute(sql, params, prepare=True)
        # A Sync ends the append's transaction: without it both statements would share one
        # implicit transaction, committed with synchronous_commit off. psycopg offers no
        # public way to queue a Sync without waiting for it (tests/audit pin this).
        pipeline._enqueue_sync()
        barrier.execute(_PG_FLUSH_BARRIER, prepare=True)
    found = cursor.fetchall() if fetch_all else cursor.fetchone()
    if not found:
        # No head row (a fresh flush): the slow path rebuilds it, appends, then flushes.
        run = _execute_append_many if fetch_all else _execute_append
        found = run(sql, params)
        barrier.execute(_PG_FLUSH_BARRIER, prepare=True)
    return found


def _execute_append(sql: str, params: list) -> tuple:
    cursor = _prepared_cursor()
    found = cursor.execute(sql, params, prepare=True).fetchone()
    if found is None:
        # No head row (a fresh flush): rebuild it from the chain, then append.
        _ensure_head()
        found = cursor.execute(sql, params, prepare=True).fetchone()
    if found is None:
        raise AuditUnavailable("The audit head row is missing and could not be rebuilt.")
    return found


def _append_locked(values: dict, content: str) -> AuditEvent:
    """SQLite (and any other database): the same chain, computed in Python under the lock."""
    head_seq, head_hash = _lock_head()
    seq = head_seq + 1
    # The clock's time, read under the lock: what the event says is when it was recorded,
    # even if the clock was set back (searches do not assume time grows with seq).
    now = timezone.now()
    digest = canonical.link_hash(
        prev_hash=head_hash,
        version=canonical.CURRENT_VERSION,
        seq=seq,
        time=canonical.encode_time(now),
        content=content,
    )
    row = AuditEvent(
        seq=seq,
        time=now,
        version=canonical.CURRENT_VERSION,
        prev_hash=head_hash,
        hash=digest,
        **values,
    )
    token = APPENDING.set(True)
    try:
        row.save(force_insert=True)
    finally:
        APPENDING.reset(token)
    AuditHead.objects.filter(pk=1).update(seq=seq, hash=digest)
    return row


def _lock_head() -> tuple[int, str]:
    """Lock the head row (SELECT ... FOR UPDATE; SQLite's IMMEDIATE transaction already
    holds the write lock) and return (seq, hash). A missing head is rebuilt from the chain."""
    head = AuditHead.objects.select_for_update().filter(pk=1).values_list("seq", "hash").first()
    if head is not None:
        return head
    _ensure_head()
    return AuditHead.objects.select_for_update().filter(pk=1).values_list("seq", "hash").get()


def _ensure_head() -> None:
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, digest = last or (0, canonical.GENESIS_HASH)
    # ignore_conflicts: a concurrent process may have created it first; then theirs wins.
    AuditHead.objects.bulk_create([AuditHead(id=1, seq=seq, hash=digest)], ignore_conflicts=True)
