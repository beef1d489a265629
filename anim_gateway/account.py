"""A portal user's own account: the password change, which ends the user's other sessions
and revokes their API tokens."""

import dataclasses
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from anim_gateway.sessions import user_sessions_end
from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.services.passwords import password_change_settle
from consent.services.tokens import user_tokens_revoke


@dataclass(frozen=True)
class PasswordChanged:
    """What the change ended besides the old password."""

    other_sessions_ended: int | None
    tokens_revoked: int


@transaction.atomic
def account_password_change(
    *, user: AbstractBaseUser, new_password: str, acting: Actor, keep_session: str
) -> PasswordChanged:
    """Set the user's new password, end their other sessions, revoke their API tokens, and
    audit it (never a password).

    A session stolen or left open elsewhere must not survive the change, nor a token issued
    while someone else knew the old password; the change, the sessions ended, the tokens
    revoked and the audit event are kept together or not at all. A change an administrator
    required (a password they set) is settled with it: the user chose their own.

    Parameters
    ----------
    keep_session
        The key of the session the user changes their password from: it stays.

    Returns
    -------
    PasswordChanged
        How many other sessions were ended (None when the session engine cannot end them:
        Django's session hash still refuses them at their next request) and how many tokens
        were revoked.
    """
    user.set_password(new_password)
    user.save(update_fields=["password"])
    password_change_settle(user=user)
    changed = PasswordChanged(
        other_sessions_ended=user_sessions_end(user_pk=user.pk, keep=keep_session),
        tokens_revoked=user_tokens_revoke(user=user),
    )
    # One event, as revoke_tokens writes one for its tokens and sessions together.
    audit_event(acting, action=Action.ACCOUNT_PASSWORD_CHANGE, detail=dataclasses.asdict(changed))
    return changed


def account_password_change_refused(*, acting: Actor, reason: str, **detail: str) -> None:
    """Audit a refused change: a wrong old password, or the log-in throttle's refusal."""
    audit_event(
        acting,
        action=Action.ACCOUNT_PASSWORD_CHANGE,
        outcome="deny",
        reason_code=reason,
        detail=detail,
    )
