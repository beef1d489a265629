"""A portal user's own account: the password change, which ends the user's other sessions."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from anim_gateway.sessions import user_sessions_end
from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event


@transaction.atomic
def account_password_change(
    *, user: AbstractBaseUser, new_password: str, acting: Actor, keep_session: str
) -> int | None:
    """Set the user's new password, end their other sessions, and audit it (never a password).

    A session stolen or left open elsewhere must not survive the change; the change, the
    sessions ended and the audit event are kept together or not at all.

    Parameters
    ----------
    keep_session
        The key of the session the user changes their password from: it stays.

    Returns
    -------
    int or None
        How many other sessions were ended; None when the session engine cannot end them
        (Django's session hash still refuses them at their next request).
    """
    user.set_password(new_password)
    user.save(update_fields=["password"])
    ended = user_sessions_end(user_pk=user.pk, keep=keep_session)
    audit_event(
        acting, action=Action.ACCOUNT_PASSWORD_CHANGE, detail={"other_sessions_ended": ended}
    )
    return ended


def account_password_change_refused(*, acting: Actor, reason: str, **detail: str) -> None:
    """Audit a refused change: a wrong old password, or the log-in throttle's refusal."""
    audit_event(
        acting,
        action=Action.ACCOUNT_PASSWORD_CHANGE,
        outcome="deny",
        reason_code=reason,
        detail=detail,
    )
