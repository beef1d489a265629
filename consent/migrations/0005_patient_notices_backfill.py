# Written by hand: a migration of its own, as PostgreSQL refuses to alter a table in the
# transaction that updated its rows (pending trigger events).

from django.db import migrations
from django.db.models import F


def backfill(apps, schema_editor):
    """Rows written before notices were recorded are not sent again (months late, perhaps)."""
    Consent = apps.get_model("consent", "Consent")
    EmergencyAccess = apps.get_model("consent", "EmergencyAccess")
    EmergencyAccess.objects.update(patient_notified_at=F("start"), patient_notice="unrecorded")
    for model in (Consent, EmergencyAccess):
        model.objects.filter(expiry_recorded_at__isnull=False).update(
            expiry_notified_at=F("expiry_recorded_at")
        )


class Migration(migrations.Migration):

    dependencies = [
        ('consent', '0004_patient_notices'),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
