"""What the sweep of series without a preview needs (studies.tasks.previews_due).

The counter has a database default and no check constraint (a check would scan the table
under an exclusive lock): a process still running the previous code, which does not know the
column, keeps inserting series while the new code is deployed. The index is built without
locking the series table against ingest (CONCURRENTLY, on PostgreSQL).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexWithoutLocking(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL; a plain CREATE INDEX elsewhere (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )

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
        ("studies", "0003_lean_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="series",
            name="preview_given_up_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="series",
            name="preview_requeues",
            field=models.SmallIntegerField(db_default=0, default=0),
        ),
        AddIndexWithoutLocking(
            model_name="series",
            index=models.Index(
                condition=models.Q(("preview_given_up_at__isnull", True), ("preview_key", "")),
                fields=["id"],
                name="series_preview_due",
            ),
        ),
    ]
