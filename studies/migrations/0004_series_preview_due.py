"""The columns the sweep of series without a preview needs (studies.tasks.previews_due).

The counter has a database default and no check constraint (a check would scan the table
under an exclusive lock): a process still running the previous code, which does not know the
column, keeps inserting series while the new code is deployed. The sweep's index is built in
0005, on its own.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
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
    ]
