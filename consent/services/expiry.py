"""Record expiries that have come to pass (the rule never reads these; it checks the clock)."""

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.actions import Action
from consent.auditing import audit_event
from consent.models import CareRelationship, Consent, EmergencyAccess

BATCH = 500


def expiries_record() -> dict[str, list[int]]:
    """Mark consents, care relationships and emergency accesses whose end has passed.

    Each is recorded once (``expiry_recorded_at``), audited, and returned by kind so the
    caller can notify. Revoked or ended facts did not expire: their end was recorded then.
    """
    now = timezone.now()
    consents = Consent.objects.filter(
        valid_until__lte=now, revoked_at__isnull=True, expiry_recorded_at__isnull=True
    )
    care = CareRelationship.objects.filter(end__lte=now, expiry_recorded_at__isnull=True).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=F("end"))
    )
    emergencies = EmergencyAccess.objects.filter(
        expires_at__lte=now, expiry_recorded_at__isnull=True
    )
    return {
        "consent": _record(consents, Action.CONSENT_EXPIRE, "consent", now),
        "care_relationship": _record(care, Action.CARE_EXPIRE, "care_relationship", now),
        "emergency_access": _record(emergencies, Action.EMERGENCY_EXPIRE, "emergency_access", now),
    }


def _record(queryset, action: str, kind: str, now) -> list[int]:
    done = []
    for pk in list(queryset.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            row = (
                queryset.model.objects.select_for_update()
                .select_related("patient")
                .filter(pk=pk, expiry_recorded_at__isnull=True)
                .first()
            )
            if row is None:
                continue  # another worker recorded it
            row.expiry_recorded_at = now
            row.save(update_fields=["expiry_recorded_at"])
            audit_event(
                None,
                action=action,
                basis_ids={kind: row.pk},
                patient=row.patient.national_id,
            )
        done.append(pk)
    return done
