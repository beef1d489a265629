"""DRF authentication: bearer tokens for systems and scripts, sessions for the portal.

Both return (user, Actor), so every view finds the resolved Actor in ``request.auth``.
"""

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from anim_gateway.middleware import client_address
from consent.actors import Actor, actor_for
from consent.models import Institution, Role
from consent.models.tokens import hash_token
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
        if token is None or not token.is_usable(at=timezone.now()) or not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token is unknown, expired or revoked.")
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
