"""Notices to patients, each sent once: its row records it, and a sweep sends what is still due.

A task queued at commit sends a notice at once; when the broker was down, the worker died or
the mail backend failed, the row still says the notice is due and the next sweep sends it.
A notice is claimed by locking its row (another worker skips it) and stamped in the same
transaction as the message is handed to the mail backend: a failure leaves it due, and a
notice recorded as sent was sent. A crash between the hand-over and the commit can still
send one twice (there is no transaction spanning the database and the mail server).
"""

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from consent.models import Consent, EmergencyAccess, Notice
from consent.notifications import notify_patient, patient_address

logger = logging.getLogger(__name__)

BATCH = 200
# A mail backend that fails this many notices in a row is down: the next sweep tries again.
MAX_FAILURES = 3


def _declared(access: EmergencyAccess) -> tuple[str, str]:
    local = timezone.localtime(access.start)
    body = (
        f"{access.practitioner.display_name} at {access.institution.code} opened an emergency "
        f"access to your imaging studies on {local:%Y-%m-%d at %H:%M}, until "
        f"{timezone.localtime(access.expires_at):%H:%M}. The Data Protection Officer reviews "
        f"every emergency access. You can see who accessed your record at {settings.SITE_URL}."
    )
    return "Emergency access to your images", body


def _emergency_ended(access: EmergencyAccess) -> tuple[str, str]:
    body = f"The emergency access opened at {access.institution.code} has ended."
    return "Emergency access ended", body


def _consent_expired(consent: Consent) -> tuple[str, str]:
    body = (
        "Your consent to sharing your imaging studies has expired; other hospitals no longer "
        f"see them. You can grant a new consent at {settings.SITE_URL}."
    )
    return "Your consent has expired", body


@dataclass(frozen=True)
class _Kind:
    """One kind of notice: the set-once column that records it, and how it reads."""

    model: type[models.Model]
    stamp: str
    since: str  # the column a notice is due from
    related: tuple[str, ...]
    compose: Callable[[models.Model], tuple[str, str]]
    outcome: str = ""  # the column recording which Notice, if the model keeps one

    def due(self) -> Q:
        return Q(**{f"{self.stamp}__isnull": True, f"{self.since}__isnull": False})


EMERGENCY_DECLARED = _Kind(
    EmergencyAccess,
    "patient_notified_at",
    "start",
    ("patient__user", "practitioner", "institution"),
    _declared,
    outcome="patient_notice",
)
EMERGENCY_ENDED = _Kind(
    EmergencyAccess,
    "expiry_notified_at",
    "expiry_recorded_at",
    ("patient__user", "institution"),
    _emergency_ended,
)
CONSENT_EXPIRED = _Kind(
    Consent, "expiry_notified_at", "expiry_recorded_at", ("patient__user",), _consent_expired
)


def _send_once(kind: _Kind, pk: int) -> str | None:
    """Send one notice; the Notice recorded, or None when it was sent or is being sent."""
    with transaction.atomic():
        row = (
            kind.model.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related(*kind.related)
            .filter(kind.due(), pk=pk)
            .first()
        )
        if row is None:
            return None  # recorded already, or another worker holds it
        notice = Notice.SENT if patient_address(row.patient) else Notice.NO_ADDRESS
        stamped = {kind.stamp: timezone.now(), **({kind.outcome: notice} if kind.outcome else {})}
        kind.model.objects.filter(pk=pk).update(**stamped)
        subject, body = kind.compose(row)
        # Last: an error here undoes the stamp, and the notice stays due.
        notify_patient(patient=row.patient, subject=subject, body=body)
    return notice


def _send_due(kind: _Kind, *, older_than: datetime.timedelta) -> int:
    due = kind.model.objects.filter(
        kind.due(), **{f"{kind.since}__lte": timezone.now() - older_than}
    )
    sent = failures = 0
    for pk in list(due.order_by(kind.since, "pk").values_list("pk", flat=True)[:BATCH]):
        try:
            sent += _send_once(kind, pk) is not None
            failures = 0
        except Exception:
            name = kind.model.__name__
            logger.exception("Could not send the notice %s of %s %s", kind.stamp, name, pk)
            failures += 1
            if failures == MAX_FAILURES:
                break
    return sent


def emergency_notice_send(*, access_id: int) -> str | None:
    """Tell the patient of an emergency access to their record, unless they were told.

    Returns
    -------
    str | None
        The Notice recorded (``sent`` or ``no_address``), or None when the notice had been
        recorded already or another worker is sending it.
    """
    return _send_once(EMERGENCY_DECLARED, access_id)


def emergency_notices_due_send() -> int:
    """Send the emergency notices still due PATIENT_NOTICE_GRACE_SECONDS after declaration.

    The grace leaves each notice to the task queued when it was declared; this sweep sends
    the ones it lost (broker down, worker dead, mail backend failing). Returns how many
    were recorded.
    """
    grace = datetime.timedelta(seconds=settings.PATIENT_NOTICE_GRACE_SECONDS)
    return _send_due(EMERGENCY_DECLARED, older_than=grace)


def expiry_notices_send() -> dict[str, int]:
    """Tell the patients of the expiries recorded and not yet notified; counts by kind."""
    return {
        "consent": _send_due(CONSENT_EXPIRED, older_than=datetime.timedelta(0)),
        "emergency_access": _send_due(EMERGENCY_ENDED, older_than=datetime.timedelta(0)),
    }
