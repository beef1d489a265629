"""Indexes for QIDO-RS pages: (patient or institution, date newest first, id), read alone."""

from django.db import migrations

# A QIDO-RS page is chosen among the ids in scope ordered by (study_date DESC NULLS LAST,
# id DESC); these indexes hold exactly those columns, so PostgreSQL pages the ids with an
# index-only scan instead of visiting every study of the practitioner's patients.
# Declared here rather than in Study.Meta: NULLS LAST exists in PostgreSQL's index syntax
# only (SQLite already sorts NULL last in a DESC column).
INDEXES = [
    ("study_qido_patient_page", "(patient_id, study_date DESC{nulls}, id DESC)", ""),
    (
        "study_qido_unreconciled_page",
        "(institution_id, study_date DESC{nulls}, id DESC)",
        " WHERE patient_id IS NULL",
    ),
]


def create(apps, schema_editor) -> None:
    table = apps.get_model("studies", "Study")._meta.db_table
    nulls = " NULLS LAST" if schema_editor.connection.vendor == "postgresql" else ""
    for name, columns, where in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX {name} ON {table} {columns.format(nulls=nulls)}{where}"
        )


def drop(apps, schema_editor) -> None:
    for name, _, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("studies", "0001_studies_series_instances")]

    operations = [migrations.RunPython(create, drop)]
