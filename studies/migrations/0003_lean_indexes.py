"""Drop the indexes that another index already covers: every index is written at every ingest.

- A unique UID or key column had a second, LIKE-only index on PostgreSQL (Django adds one to
  every unique CharField); UIDs are only ever matched whole. The unique constraints become
  Meta constraints, renamed in place rather than rebuilt.
- A foreign key had an index of its own beside a composite index it leads (or, for an
  instance's study, the very same index twice).
- A patient's studies had two indexes by date: the QIDO-RS one of 0002 serves both.

Only indexes are dropped and constraints renamed: no table is rewritten, no foreign key
revalidated, whatever the size of the index.
"""

import django.db.models.deletion
from django.db import migrations, models

# (table, column, the Meta index that already covers it, if any)
COVERED_FOREIGN_KEYS = [
    ("studies_study", "institution_id", ""),
    ("studies_study", "patient_id", ""),
    ("studies_series", "study_id", ""),
    ("studies_instance", "study_id", "instance_study"),
    ("studies_instance", "series_id", ""),
]
# (table, column, the unique constraint's new name)
UNIQUE_COLUMNS = [
    ("studies_study", "study_uid", "study_uid_unique"),
    ("studies_series", "series_uid", "series_uid_unique"),
    ("studies_instance", "sop_instance_uid", "instance_sop_uid_unique"),
    ("studies_instance", "storage_key", "instance_storage_key_unique"),
]


def _constraints(schema_editor, table: str) -> dict:
    with schema_editor.connection.cursor() as cursor:
        return schema_editor.connection.introspection.get_constraints(cursor, table)


def _plain_indexes(constraints: dict, column: str, keep: str = "") -> list[str]:
    """Non-unique indexes of this one column, other than ``keep``."""
    return [
        name
        for name, c in constraints.items()
        if c["index"]
        and not c["unique"]
        and not c["primary_key"]
        and c["columns"] == [column]
        and name != keep
    ]


def lean(apps, schema_editor) -> None:
    quote = schema_editor.quote_name
    for table, column, keep in COVERED_FOREIGN_KEYS:
        for name in _plain_indexes(_constraints(schema_editor, table), column, keep):
            schema_editor.execute(f"DROP INDEX {quote(name)}")
    for table, column, new_name in UNIQUE_COLUMNS:
        constraints = _constraints(schema_editor, table)
        for name in _plain_indexes(constraints, column):  # PostgreSQL's LIKE index
            schema_editor.execute(f"DROP INDEX {quote(name)}")
        if schema_editor.connection.vendor != "postgresql":
            # SQLite keeps the UNIQUE of its table definition: the same rule, under the
            # name SQLite gives it; a later change to the table remakes it from the models.
            continue
        (old_name,) = [
            name
            for name, c in constraints.items()
            if c["unique"] and not c["primary_key"] and c["columns"] == [column]
        ]
        schema_editor.execute(
            f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(old_name)} TO {quote(new_name)}"
        )


def fat(apps, schema_editor) -> None:
    """Back to 0002's indexes (under names of their own)."""
    quote = schema_editor.quote_name
    postgresql = schema_editor.connection.vendor == "postgresql"
    for table, column, keep in COVERED_FOREIGN_KEYS:
        if not keep:
            name = quote(f"{table}_{column}_fk_index")
            schema_editor.execute(f"CREATE INDEX {name} ON {quote(table)} ({quote(column)})")
    for table, column, new_name in UNIQUE_COLUMNS:
        if not postgresql:
            continue
        schema_editor.execute(
            f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(new_name)}"
            f" TO {quote(f'{table}_{column}_key')}"
        )
        schema_editor.execute(
            f"CREATE INDEX {quote(f'{table}_{column}_like')} ON {quote(table)}"
            f" ({quote(column)} varchar_pattern_ops)"
        )


STATE = [
    migrations.AlterField(
        model_name="study",
        name="study_uid",
        field=models.CharField(max_length=64),
    ),
    migrations.AlterField(
        model_name="study",
        name="institution",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.PROTECT,
            related_name="studies",
            to="consent.institution",
        ),
    ),
    migrations.AlterField(
        model_name="study",
        name="patient",
        field=models.ForeignKey(
            blank=True,
            db_index=False,
            null=True,
            on_delete=django.db.models.deletion.PROTECT,
            related_name="studies",
            to="consent.patient",
        ),
    ),
    migrations.AlterField(
        model_name="series",
        name="series_uid",
        field=models.CharField(max_length=64),
    ),
    migrations.AlterField(
        model_name="series",
        name="study",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name="series",
            to="studies.study",
        ),
    ),
    migrations.AlterField(
        model_name="instance",
        name="sop_instance_uid",
        field=models.CharField(max_length=64),
    ),
    migrations.AlterField(
        model_name="instance",
        name="storage_key",
        field=models.CharField(max_length=255),
    ),
    migrations.AlterField(
        model_name="instance",
        name="study",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name="instances",
            to="studies.study",
        ),
    ),
    migrations.AlterField(
        model_name="instance",
        name="series",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name="instances",
            to="studies.series",
        ),
    ),
    migrations.AddConstraint(
        model_name="study",
        constraint=models.UniqueConstraint(fields=("study_uid",), name="study_uid_unique"),
    ),
    migrations.AddConstraint(
        model_name="series",
        constraint=models.UniqueConstraint(fields=("series_uid",), name="series_uid_unique"),
    ),
    migrations.AddConstraint(
        model_name="instance",
        constraint=models.UniqueConstraint(
            fields=("sop_instance_uid",), name="instance_sop_uid_unique"
        ),
    ),
    migrations.AddConstraint(
        model_name="instance",
        constraint=models.UniqueConstraint(
            fields=("storage_key",), name="instance_storage_key_unique"
        ),
    ),
]


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0003_ae_title_peer_networks"),
        ("studies", "0002_qido_page_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=STATE,
            database_operations=[migrations.RunPython(lean, fat)],
        ),
        migrations.RemoveIndex(model_name="study", name="study_patient_date"),
    ]
