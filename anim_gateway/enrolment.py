"""One-time enrolment codes: an authenticator app is set up only with an administrator's code."""

import datetime
import hashlib
import secrets
from base64 import b32encode
from enum import StrEnum

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.errors import ApplicationError, NotFound
from audit.actions import Action
from consent.actors import Actor, role_of
from consent.auditing import audit_event
from consent.authentication import TOTP_ROLES

# django-otp's static device holds the code. Never confirmed: django-otp (the admin's OTP
# log-in form, the session's verification) accepts only confirmed devices as a second factor,
# so the code sets up an authenticator and can never stand in for one.
DEVICE_NAME = "Enrolment code"
CODE_BYTES = 10  # 80 random bits: 16 base32 characters


class Refused(StrEnum):
    """Why an enrolment was not confirmed; the value is the audited log-in step."""

    CODE = "enrolment_code"
    EXPIRED = "enrolment_code_expired"
    TOTP = "totp_enrolment"


def _normalised(code: str) -> str:
    """As typed: groups, spaces and case do not matter."""
    return "".join(code.split()).replace("-", "").upper()


def _stored(code: str) -> str:
    # Only a digest is kept, as for API tokens: whoever reads the table (or the admin's token
    # list) learns no code. 80 random bits need no stretching; 16 characters fit the field.
    digest = hashlib.sha256(_normalised(code).encode()).digest()
    return b32encode(digest[:CODE_BYTES]).decode()


def _readable(raw: str) -> str:
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def code_expires_at(holder: StaticDevice) -> datetime.datetime | None:
    """When the code held by this device stops being accepted (None: never issued here).

    Counted from django-otp's own ``created_at`` of the device, written when the code was
    issued, under the lifetime now in force: shortening ENROLMENT_CODE_HOURS shortens the
    codes already handed out too."""
    if holder.created_at is None:  # a row older than django-otp's timestamps: no known age
        return None
    return holder.created_at + datetime.timedelta(hours=settings.ENROLMENT_CODE_HOURS)


def _expired(holder: StaticDevice) -> bool:
    expires_at = code_expires_at(holder)
    return expires_at is None or timezone.now() >= expires_at


def enrolment_code_expiry(username: str) -> datetime.datetime | None:
    """When the user's unused enrolment code expires; None when they hold none."""
    holder = StaticDevice.objects.filter(
        user__username=username, name=DEVICE_NAME, confirmed=False
    ).first()
    return code_expires_at(holder) if holder is not None else None


@transaction.atomic
def enrolment_code_issue(
    *, username: str, reset_authenticator: bool = False, acting: Actor | None = None
) -> str:
    """Issue a user's one-time code to set up an authenticator app, and return it.

    Only its digest is kept, so this is the only time it is seen; it replaces the user's
    earlier unused code, and expires ENROLMENT_CODE_HOURS after now (``enrolment_code_expiry``).
    The audit event names the user, never the code.

    Parameters
    ----------
    reset_authenticator
        Remove the user's authenticator too (a lost phone): the code sets up a new one.

    Raises
    ------
    NotFound
        No such user.
    ApplicationError
        The user logs in without a second factor, or already has an authenticator and
        ``reset_authenticator`` is not set.
    """
    user = get_user_model().objects.select_for_update().filter(username=username).first()
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    role = role_of(user)
    if role not in TOTP_ROLES:
        raise ApplicationError(
            f"User {username!r} ({role or 'no role'}) sets up no authenticator app: enrolment "
            "codes are for practitioners, the DPO and administrators."
        )
    authenticators = TOTPDevice.objects.filter(user=user)
    enrolled = authenticators.filter(confirmed=True).exists()
    if enrolled and not reset_authenticator:
        raise ApplicationError(
            f"User {username!r} already has an authenticator app. To replace it (a lost "
            "phone), add --reset-authenticator: it is removed and the code sets up a new one."
        )
    if reset_authenticator:
        authenticators.delete()
    StaticDevice.objects.filter(user=user, name=DEVICE_NAME).delete()  # the earlier code
    device = StaticDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    raw = b32encode(secrets.token_bytes(CODE_BYTES)).decode()
    device.token_set.create(token=_stored(raw))
    # The user's id too: the administration's device events name the user by id alone.
    detail = {
        "username": username,
        "user_id": user.pk,
        "role": role,
        "authenticator_removed": enrolled,
    }
    audit_event(acting, action=Action.AUTH_ENROLMENT_CODE_ISSUE, detail=detail)
    return _readable(raw)


def enrolment_confirm(
    *, user: AbstractBaseUser, device: TOTPDevice, code: str, token: str
) -> Refused | None:
    """Confirm the user's new authenticator when the enrolment code and the app's code are right.

    The enrolment code is used up with the confirmation, not before: a wrong app code keeps
    it. An expired code is refused as such when it is typed right, and is then used up: it
    can serve no more, even if the lifetime is lengthened later. django-otp's throttle of the
    code's device counts wrong codes as well.

    Returns
    -------
    Refused or None
        None when the device is confirmed, else what was wrong.
    """
    with transaction.atomic():
        holder = (
            StaticDevice.objects.select_for_update()
            .filter(user=user, name=DEVICE_NAME, confirmed=False)
            .first()
        )
        # Wrong, used, replaced or never issued: one answer (and django-otp counts the miss).
        if holder is None or not holder.verify_token(_stored(code)):
            return Refused.CODE
        if _expired(holder):
            holder.delete()  # verify_token used its token; the device goes with it
            return Refused.EXPIRED
        if not device.verify_token(token):
            transaction.set_rollback(True)  # the code is not used up by a failed attempt
            return Refused.TOTP
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        holder.delete()
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return None
