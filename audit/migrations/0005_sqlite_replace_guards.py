"""On SQLite, refuse INSERT OR REPLACE on the audit tables (it bypassed the DELETE trigger)."""

from django.db import migrations

from audit import triggers


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_time_seq_index")]

    operations = [
        migrations.RunPython(triggers.install_replace_guards, triggers.remove_replace_guards),
    ]
