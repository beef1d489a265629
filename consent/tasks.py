"""Celery tasks of consent: record expiries and notify patients (queued with on_commit)."""

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from consent.models import Consent, EmergencyAccess
from consent.notifications import notify_patient
from consent.services.expiry import expiries_record

logger = logging.getLogger(__name__)


@shared_task(name="consent.tasks.expire_due")
def expire_due() -> dict[str, int]:
    """Record what has expired since the last run (beat, every minute) and notify."""
    recorded = expiries_record()
    for task, ids in (
        (notify_consent_expired, recorded["consent"]),
        (notify_emergency_expired, recorded["emergency_access"]),
    ):
        for pk in ids:
            try:
                task.delay(pk)
            except Exception:
                # The expiry is recorded; a lost notification must not stop the others.
                logger.exception("Could not queue %s for %s", task.name, pk)
    return {kind: len(ids) for kind, ids in recorded.items()}


@shared_task(
    name="consent.tasks.notify_emergency",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def notify_emergency(access_id: int) -> bool:
    access = EmergencyAccess.objects.select_related(
        "patient__user", "practitioner", "institution"
    ).get(pk=access_id)
    local = timezone.localtime(access.start)
    body = (
        f"{access.practitioner.display_name} at {access.institution.code} opened an emergency "
        f"access to your imaging studies on {local:%Y-%m-%d at %H:%M}, until "
        f"{timezone.localtime(access.expires_at):%H:%M}. The Data Protection Officer reviews "
        f"every emergency access. You can see who accessed your record at {settings.SITE_URL}."
    )
    return notify_patient(
        patient=access.patient, subject="Emergency access to your images", body=body
    )


@shared_task(name="consent.tasks.notify_emergency_expired")
def notify_emergency_expired(access_id: int) -> bool:
    access = EmergencyAccess.objects.select_related("patient__user", "institution").get(
        pk=access_id
    )
    body = f"The emergency access opened at {access.institution.code} has ended."
    return notify_patient(patient=access.patient, subject="Emergency access ended", body=body)


@shared_task(name="consent.tasks.notify_consent_expired")
def notify_consent_expired(consent_id: int) -> bool:
    consent = Consent.objects.select_related("patient__user").get(pk=consent_id)
    body = (
        "Your consent to sharing your imaging studies has expired; other hospitals no longer "
        f"see them. You can grant a new consent at {settings.SITE_URL}."
    )
    return notify_patient(patient=consent.patient, subject="Your consent has expired", body=body)
