"""The sweep's index of series without a preview, built without locking ingest out.

On PostgreSQL, CREATE INDEX CONCURRENTLY: the series table stays writable while it is built.
It cannot run in a transaction, so this migration holds nothing else, and it first drops an
index of that name an interrupted build left behind (INVALID), so that it can run again.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

NAME = "series_preview_due"


class AddIndexWithoutLocking(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL; a plain CREATE INDEX elsewhere (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            migrations.AddIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )
            return
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("studies", "0004_series_preview_due"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="series",
            index=models.Index(
                condition=models.Q(("preview_given_up_at__isnull", True), ("preview_key", "")),
                fields=["id"],
                name=NAME,
            ),
        ),
    ]
