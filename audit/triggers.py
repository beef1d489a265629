"""Version 1 of the database triggers that make the audit tables append-only.

Frozen: migrations call these functions, so a change means new functions and a new migration.
On SQLite a migration that rebuilds an audit table drops its triggers; it must reinstall them.
"""

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

PROTECTED_TABLES = ("audit_auditevent", "audit_auditcheckpoint")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'The audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def _postgresql_install(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    ]


def _postgresql_remove(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
    ]


def _sqlite_install(table: str) -> list[str]:
    # SQLite has no TRUNCATE: its "DELETE FROM t" truncation fast path is skipped when a
    # DELETE trigger exists, so the DELETE trigger covers it.
    return [
        f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'The audit table {table} is append-only: {op} refused'); END"
        for op in ("UPDATE", "DELETE")
    ]


def _sqlite_remove(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_no_{op}" for op in ("update", "delete")]


# Version 2 (migration 0005), SQLite only: INSERT OR REPLACE deletes the row it replaces
# without firing DELETE triggers (unless recursive_triggers is on), so it could rewrite an
# event; an insert whose key or rowid is taken is refused before SQLite resolves the
# conflict (the events' bigint key is not the rowid: a REPLACE naming a row's rowid under
# a free seq would delete it). NEW.rowid is -1 when the insert does not name one.
# PostgreSQL's INSERT ... ON CONFLICT DO UPDATE already meets the UPDATE trigger.
_PRIMARY_KEYS = {"audit_auditevent": "seq", "audit_auditcheckpoint": "id"}


def _sqlite_replace_guards(*, install: bool) -> list[str]:
    if not install:
        return [f"DROP TRIGGER IF EXISTS {table}_no_replace" for table in PROTECTED_TABLES]
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table} "  # noqa: S608
        f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {_PRIMARY_KEYS[table]} = "
        f"NEW.{_PRIMARY_KEYS[table]} OR rowid = NEW.rowid) BEGIN SELECT RAISE(ABORT, "
        f"'The audit table {table} is append-only: REPLACE refused'); END"
        for table in PROTECTED_TABLES
    ]


def install_replace_guards(apps: object, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Version 2's SQLite triggers (a RunPython forward function); nothing on PostgreSQL."""
    if schema_editor.connection.vendor == "sqlite":
        for sql in _sqlite_replace_guards(install=True):
            schema_editor.execute(sql, params=None)


def remove_replace_guards(apps: object, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        for sql in _sqlite_replace_guards(install=False):
            schema_editor.execute(sql, params=None)


def _statements(vendor: str, *, install: bool) -> list[str]:
    if vendor == "postgresql":
        build = _postgresql_install if install else _postgresql_remove
        head = [_PG_FUNCTION] if install else []
        return head + [sql for table in PROTECTED_TABLES for sql in build(table)]
    if vendor == "sqlite":
        build = _sqlite_install if install else _sqlite_remove
        return [sql for table in PROTECTED_TABLES for sql in build(table)]
    raise NotImplementedError(f"No audit triggers for the {vendor} database backend")


def install(apps: object, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Create the triggers for the connection's vendor (a RunPython forward function)."""
    for sql in _statements(schema_editor.connection.vendor, install=True):
        schema_editor.execute(sql, params=None)


def remove(apps: object, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Drop the triggers (RunPython backward function; also used by the test flush)."""
    for sql in _statements(schema_editor.connection.vendor, install=False):
        schema_editor.execute(sql, params=None)


def set_enabled(connection: BaseDatabaseWrapper, *, enabled: bool) -> None:
    """Create or drop the triggers through a plain cursor, inside the caller's transaction
    (SQLite's schema editor refuses to run inside one)."""
    statements = _statements(connection.vendor, install=enabled)
    if connection.vendor == "sqlite":
        statements += _sqlite_replace_guards(install=enabled)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
