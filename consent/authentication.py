"""DRF authentication: bearer tokens for systems and scripts, sessions for the portal.

Both return (user, Actor), so every view finds the resolved Actor in ``request.auth``.
"""

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from anim_gateway.middleware import client_address
from audit.actions import Action
from consent.actors import Actor, actor_for, role_of
from consent.models import Institution, Role
from consent.models.tokens import ApiToken, hash_token
from consent.token_lookup import token_for_hash

PORTAL_ROLES = (Role.PATIENT, Role.PRACTITIONER, Role.DPO, Role.ADMIN)
# Roles whose portal session needs a second factor (API.md, Authentication), at the
# portal's log-in and for the API's session authentication alike.
TOTP_ROLES = (Role.PRACTITIONER, Role.DPO, Role.ADMIN)


def _context(request: Request) -> dict:
    return {
        "client_address": client_address(request._request),
        "request_id": getattr(request._request, "request_id", ""),
    }


REFUSED_MESSAGE = "The token is unknown, expired or revoked."


def _token_refusal(token: ApiToken) -> str:
    """Why a token that exists may not be used now, or "" when it may."""
    if token.revoked_at is not None:
        return "TOKEN_REVOKED"
    if not token.is_usable(at=timezone.now()):
        return "TOKEN_EXPIRED"
    if not token.user.is_active:
        return "ACCOUNT_INACTIVE"
    return ""


def _audit_refused_token(request: Request, token: ApiToken, reason: str) -> None:
    # A revoked or expired token still in use is worth the DPO's eye (a stolen key replayed,
    # a script never updated); an unknown one names nobody and is only answered.
    # Imported here: consent.auditing loads DRF's views, whose settings load this module.
    from consent.auditing import audit_event

    user = token.user
    username = user.get_username()
    actor = Actor(
        role=role_of(user) or "", username=username, display_name=username, **_context(request)
    )
    detail = {"token": token.prefix}
    audit_event(
        actor, action=Action.AUTH_TOKEN_REFUSED, outcome="deny", reason_code=reason, detail=detail
    )


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        # Authentication schemes are case-insensitive (RFC 9110 11.1): "bearer" is "Bearer".
        if scheme.lower() != self.keyword.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <token>'.")
        token = token_for_hash(hash_token(raw.strip()))
        if token is None:
            raise exceptions.AuthenticationFailed(REFUSED_MESSAGE)
        refusal = _token_refusal(token)
        if refusal:
            _audit_refused_token(request, token, refusal)
            raise exceptions.AuthenticationFailed(REFUSED_MESSAGE)
        actor = actor_for(token.user, institution=token.institution, **_context(request))
        if actor is None:
            raise exceptions.AuthenticationFailed("This account has no role in the gateway.")
        return token.user, actor

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="anim-gateway"'


class PortalSessionAuthentication(authentication.SessionAuthentication):
    """The portal's session; practitioners and the DPO must have passed their TOTP step."""

    def authenticate(self, request: Request) -> tuple | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        django_request = request._request
        code = django_request.session.get("acting_institution")
        institution = Institution.objects.filter(code=code).first() if code else None
        actor = actor_for(user, institution=institution, channel="portal", **_context(request))
        # Hospital systems act with tokens only (a session left from before the portal
        # refused them must not carry their powers either).
        if actor is None or actor.role not in PORTAL_ROLES:
            return None
        if actor.role in TOTP_ROLES and not _otp_verified(django_request):
            return None
        return user, actor


def _otp_verified(request) -> bool:
    is_verified = getattr(request.user, "is_verified", None)
    return bool(is_verified and is_verified())


def actor_of(request: Request) -> Actor:
    """The Actor of an authenticated DRF request."""
    if not isinstance(request.auth, Actor):
        raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
    return request.auth
