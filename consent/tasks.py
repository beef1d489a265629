"""Celery tasks of consent: record expiries and notify patients (each notice recorded once)."""

from celery import shared_task

from consent.services.expiry import expiries_record
from consent.services.notices import (
    emergency_notice_send,
    emergency_notices_due_send,
    expiry_notices_send,
)


@shared_task(name="consent.tasks.expire_due")
def expire_due() -> dict[str, int]:
    """Record what has expired since the last run (beat, every minute) and notify.

    The notices are sent here rather than queued: any left by an earlier run (a mail backend
    down, a worker killed) are still due, and go with this run's.
    """
    recorded = expiries_record()
    expiry_notices_send()
    return {kind: len(ids) for kind, ids in recorded.items()}


@shared_task(
    name="consent.tasks.notify_emergency",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def notify_emergency(access_id: int) -> str | None:
    """Queued at declaration; notify_due sends the notice if this never runs or fails."""
    return emergency_notice_send(access_id=access_id)


@shared_task(name="consent.tasks.notify_due")
def notify_due() -> int:
    """Send the emergency notices their queued task lost (beat, every minute)."""
    return emergency_notices_due_send()
