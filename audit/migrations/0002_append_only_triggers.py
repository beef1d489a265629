"""Refuse UPDATE, DELETE and TRUNCATE on the audit tables, on PostgreSQL and SQLite alike."""

from django.db import migrations

from audit import triggers


def create_head(apps, schema_editor) -> None:
    apps.get_model("audit", "AuditHead").objects.get_or_create(
        id=1, defaults={"seq": 0, "hash": "0" * 64}
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(triggers.install, triggers.remove),
        migrations.RunPython(create_head, migrations.RunPython.noop),
    ]
