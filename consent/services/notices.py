"""Notices to patients, each sent once: its row records it, and a sweep sends what is still due.

A task queued at commit sends a notice at once; when the broker was down, the worker died or
the mail backend failed, the row still says the notice is due and the next sweep sends it.
A notice is claimed by a lease (its next-attempt column set a lease ahead, in one UPDATE
that finds it unclaimed and not yet recorded: another worker's UPDATE then finds nothing), sent
outside any transaction (a slow mail server holds no lock: on SQLite a transaction locks the
whole database), then recorded in another short UPDATE. A crash between the hand-over and
that UPDATE can still send one twice, as can a send outlasting its lease (there is no
transaction spanning the database and the mail server).

A mail backend that cannot be reached ends the sweep after MAX_FAILURES and costs the
notice nothing. A notice refused for its own sake (an address the server rejects, a bug in
one row) waits BACKOFF, doubling, while the sweep goes on; after MAX_ATTEMPTS it is given up
and logged as an error: an emergency notice is recorded as ``failed`` for the DPO, an expiry
notice stays unrecorded with its attempts at MAX_ATTEMPTS.
"""

import datetime
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from consent.models import Consent, EmergencyAccess, Notice
from consent.notifications import notify_patient, patient_address

logger = logging.getLogger(__name__)

BATCH = 200
# A mail backend that cannot be reached this many times in a row is down: the next sweep
# tries again.
MAX_FAILURES = 3
# A notice refused for its own sake is retried after BACKOFF, 2 x BACKOFF... and given up
# after MAX_ATTEMPTS (about 2.5 hours in all).
MAX_ATTEMPTS = 5
BACKOFF = datetime.timedelta(minutes=10)
# How long a worker holds a notice it is sending: far more than an SMTP exchange's steps at
# EMAIL_TIMEOUT each; a worker that died holding one leaves it to a sweep after that.
LEASE_AT_LEAST = datetime.timedelta(minutes=10)
SMTP_STEPS = 10


def _lease() -> datetime.timedelta:
    per_step = datetime.timedelta(seconds=settings.EMAIL_TIMEOUT or 0)
    return max(LEASE_AT_LEAST, SMTP_STEPS * per_step)


# The mail backend, not this notice: it cannot be reached, hangs up, refuses our log-in or
# our sender, or answers 421 (closing). Any other failure is the notice's own.
_BACKEND_DOWN = (
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPSenderRefused,
)


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
    attempts: str  # the column counting the attempts the recipient refused
    next_attempt: str  # the column holding a claim's lease, or a refused notice's backoff
    outcome: str = ""  # the column recording which Notice, if the model keeps one
    after: str = ""  # a set-once column that must be set first (an earlier notice)

    def due(self, *, now: datetime.datetime) -> Q:
        """Not recorded, not given up, not claimed or waiting (and after ``after``)."""
        return Q(
            Q(**{f"{self.next_attempt}__isnull": True}) | Q(**{f"{self.next_attempt}__lte": now}),
            **{
                f"{self.stamp}__isnull": True,
                f"{self.since}__isnull": False,
                f"{self.attempts}__lt": MAX_ATTEMPTS,
                **({f"{self.after}__isnull": False} if self.after else {}),
            },
        )


EMERGENCY_DECLARED = _Kind(
    EmergencyAccess,
    "patient_notified_at",
    "start",
    ("patient__user", "practitioner", "institution"),
    _declared,
    "patient_notice_attempts",
    "patient_notice_next_attempt_at",
    outcome="patient_notice",
)
EMERGENCY_ENDED = _Kind(
    EmergencyAccess,
    "expiry_notified_at",
    "expiry_recorded_at",
    ("patient__user", "institution"),
    _emergency_ended,
    "expiry_notice_attempts",
    "expiry_notice_next_attempt_at",
    # The "ended" notice never overtakes the "declared" one (sent, no address or failed).
    after="patient_notified_at",
)
CONSENT_EXPIRED = _Kind(
    Consent,
    "expiry_notified_at",
    "expiry_recorded_at",
    ("patient__user",),
    _consent_expired,
    "expiry_notice_attempts",
    "expiry_notice_next_attempt_at",
)


def _claim(kind: _Kind, pk: int) -> tuple[models.Model, datetime.datetime] | None:
    """Take the lease on a due notice; the row and the lease's end, or None when it is not
    due or taken. The lease's end is the holder's token: every later write on the notice
    names it, so a worker whose lease ran out (and was taken by another) changes nothing."""
    now = timezone.now()
    lease = now + _lease()
    leased = kind.model.objects.filter(kind.due(now=now), pk=pk).update(
        **{kind.next_attempt: lease}
    )
    if not leased:
        return None
    return kind.model.objects.select_related(*kind.related).get(pk=pk), lease


def _held(kind: _Kind, pk: int, lease: datetime.datetime) -> models.QuerySet:
    """The notice, while this worker still holds its lease."""
    return kind.model.objects.filter(
        pk=pk, **{kind.next_attempt: lease, f"{kind.stamp}__isnull": True}
    )


def _record(kind: _Kind, pk: int, lease: datetime.datetime, notice: str) -> None:
    stamped = {kind.stamp: timezone.now(), **({kind.outcome: notice} if kind.outcome else {})}
    _held(kind, pk, lease).update(**stamped, **{kind.next_attempt: None})


def _refused(
    kind: _Kind, row: models.Model, lease: datetime.datetime, exc: Exception
) -> str | None:
    """Count an attempt the notice failed on its own; Notice.FAILED once given up."""
    attempts = getattr(row, kind.attempts) + 1
    name = f"{kind.stamp} of {kind.model.__name__} {row.pk}"
    # The exception's text may hold the address: only its class is logged.
    if attempts < MAX_ATTEMPTS:
        retry = timezone.now() + BACKOFF * 2 ** (attempts - 1)
        _held(kind, row.pk, lease).update(**{kind.attempts: attempts, kind.next_attempt: retry})
        logger.warning(
            "The notice %s was refused (%s), attempt %d of %d; retried from %s",
            *(name, type(exc).__name__, attempts, MAX_ATTEMPTS, retry.isoformat()),
        )
        return None
    given_up = {kind.attempts: attempts, kind.next_attempt: None}
    if kind.outcome:
        given_up |= {kind.stamp: timezone.now(), kind.outcome: Notice.FAILED}
    if not _held(kind, row.pk, lease).update(**given_up):
        return None  # the lease ran out and another worker took the notice
    logger.error(
        "The notice %s could not be delivered (%s) after %d attempts: given up",
        *(name, type(exc).__name__, attempts),
    )
    return Notice.FAILED


def _send_once(kind: _Kind, pk: int) -> str | None:
    """Send one notice; the Notice recorded, or None when it is not due, taken or retried.

    Raises the mail backend's error when the backend is down (the notice is released).
    """
    claimed = _claim(kind, pk)
    if claimed is None:
        return None  # recorded already, given up, waiting, or another worker holds it
    row, lease = claimed
    notice = Notice.SENT if patient_address(row.patient) else Notice.NO_ADDRESS
    try:
        if notice == Notice.SENT:
            subject, body = kind.compose(row)
            notify_patient(patient=row.patient, subject=subject, body=body)
    except Exception as exc:
        if not _backend_down(exc):
            return _refused(kind, row, lease, exc)
        _held(kind, pk, lease).update(**{kind.next_attempt: None})  # released
        raise
    _record(kind, pk, lease, notice)
    return notice


def _backend_down(exc: Exception) -> bool:
    """The mail backend failed, not this notice (every smtplib error is an OSError)."""
    if isinstance(exc, _BACKEND_DOWN):
        return True
    # A 4xx reply is the server's "try later" (a full queue, greylisting, 421 closing): not
    # the notice's fault, and counting it would give a notice up while the server is busy.
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)


def _send_due(kind: _Kind, *, older_than: datetime.timedelta) -> int:
    now = timezone.now()
    due = kind.model.objects.filter(kind.due(now=now), **{f"{kind.since}__lte": now - older_than})
    sent = failures = 0
    for pk in list(due.order_by(kind.since, "pk").values_list("pk", flat=True)[:BATCH]):
        try:
            sent += _send_once(kind, pk) is not None
            failures = 0
        except Exception:  # the backend (or the database) is down: a notice's own failure is not
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
        The Notice recorded (``sent``, ``no_address``, or ``failed`` at the last attempt),
        or None when the notice had been recorded already, another worker is sending it, or
        the recipient was refused and it waits for its next attempt.

    Raises
    ------
    OSError
        The mail backend could not be reached; the notice stays due (the task retries).
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
