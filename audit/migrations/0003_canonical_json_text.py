"""Store basis_ids and detail as canonical JSON text, the bytes the hash chain covers.

Rows written before keep PostgreSQL's jsonb text (or Django's json.dumps on SQLite); the
verifier parses and re-encodes those, so they still verify. SQLite rebuilds the table for
this change, which drops its triggers: they are installed again.
"""

from django.db import migrations

import audit.fields
from audit import triggers


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="basis_ids",
            field=audit.fields.CanonicalJSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="detail",
            field=audit.fields.CanonicalJSONField(blank=True, default=dict),
        ),
        migrations.RunPython(triggers.remove, migrations.RunPython.noop),
        migrations.RunPython(triggers.install, migrations.RunPython.noop),
    ]
