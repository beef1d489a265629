"""Which version of the header's DICOM JSON each instance's metadata is (bulk data references
or not), for ``manage.py backfill_bulkdata``.

Every row stored so far gets 1 from the database default, without the table being rewritten
(PostgreSQL 11 and later keep a constant default in the catalogue): some of them already hold
bulk data references, which the backfill finds and leaves as they are. The model's own
default, 2, is what ingest writes from now on.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0005_series_preview_due_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="instance",
            name="metadata_version",
            field=models.SmallIntegerField(db_default=1, default=2),
        ),
    ]
