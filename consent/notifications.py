"""Messages to patients through Django's email framework (console backend by default)."""

import logging

from django.conf import settings
from django.core.mail import send_mail

from consent.models import Patient

logger = logging.getLogger(__name__)


def patient_address(patient: Patient) -> str:
    """The patient's e-mail address, or "" when they have none."""
    return patient.user.email if patient.user_id and patient.user.email else ""


def notify_patient(*, patient: Patient, subject: str, body: str) -> bool:
    """Email the patient (or log that they have no address); True when a message was sent.

    The body never names the patient, in case it ends up in a log or a shared mailbox.
    """
    address = patient_address(patient)
    if not address:
        logger.info("No email address for %s; notification not sent", patient)
        return False
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
    return True
