"""Bearer token life cycle: issue (shown once), revoke (with the user's portal sessions)."""

import datetime
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from anim_gateway.errors import ApplicationError, NotFound
from anim_gateway.sessions import user_sessions_end
from audit.actions import Action
from consent.actors import Actor, role_of
from consent.auditing import audit_event
from consent.models import Account, Affiliation, ApiToken, Institution, Role
from consent.models.tokens import hash_token


def _bound_institution(user, role: str | None, institution_code: str | None) -> Institution | None:
    """Practitioner and system tokens are bound to one institution; others to none."""
    if role is None:
        raise ApplicationError(f"User {user.username!r} has no role in the gateway.")
    if role not in (Role.PRACTITIONER, Role.SYSTEM):
        if institution_code:
            raise ApplicationError(f"A {role} token is not bound to an institution.")
        return None
    if not institution_code:
        raise ApplicationError(f"A {role} token needs --institution.")
    institution = Institution.objects.filter(code=institution_code).first()
    if institution is None:
        raise ApplicationError(f"Unknown institution code {institution_code!r}.")
    now = timezone.now()
    if role == Role.SYSTEM:
        allowed = Account.objects.filter(user=user, institution=institution).exists()
    else:
        allowed = any(
            a.is_active(at=now)
            for a in Affiliation.objects.filter(practitioner__user=user, institution=institution)
        )
    if not allowed:
        raise ApplicationError(f"User {user.username!r} is not affiliated with {institution.code}.")
    return institution


# Past it, the expiry overflows the dates Python and the database hold (year 9999) long
# before any token could need it.
TOKEN_MAX_DAYS = 36_500


@transaction.atomic
def token_issue(
    *, username: str, institution_code: str | None = None, days: int, acting: Actor | None = None
) -> str:
    """Issue a token and return it; only its hash is kept, so this is the only time it is seen."""
    if not 1 <= days <= TOKEN_MAX_DAYS:
        raise ApplicationError(
            f"--days must be at least 1 and at most {TOKEN_MAX_DAYS} (100 years), not {days}."
        )
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    institution = _bound_institution(user, role_of(user), institution_code)
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user,
        institution=institution,
        key_hash=hash_token(raw),
        prefix=raw[:8],
        expires_at=timezone.now() + datetime.timedelta(days=days),
    )
    audit_event(
        acting,
        action=Action.AUTH_TOKEN_ISSUE,
        detail={"username": username, "institution": institution.code if institution else ""},
    )
    return raw


@dataclass(frozen=True)
class Revoked:
    """What a revocation ended: tokens, and portal sessions (None: they could not be)."""

    tokens: int
    sessions: int | None


def user_tokens_revoke(*, user: AbstractBaseUser) -> int:
    """Revoke every live token of this user and return how many; the caller audits it."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


@transaction.atomic
def tokens_revoke(*, username: str, acting: Actor | None = None) -> Revoked:
    """Revoke every live token of a user and end their portal sessions.

    An administrator revoking a compromised account locks its holder out of the API and
    of the portal alike (and the admin, which shares the portal's sessions). The password
    still opens a new session: deactivating the account ends that too.

    Returns
    -------
    Revoked
        The tokens revoked and the sessions ended; ``sessions`` is None when the session
        engine keeps sessions the server cannot end.
    """
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    count = user_tokens_revoke(user=user)
    sessions = user_sessions_end(user_pk=user.pk)
    audit_event(
        acting,
        action=Action.AUTH_TOKEN_REVOKE,
        detail={"username": username, "count": count, "sessions": sessions},
    )
    return Revoked(tokens=count, sessions=sessions)
