"""A password an administrator set is changed before anything else: every page of a logged-in
session leads to the password change page until it is."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse

from consent.actors import role_of
from consent.authentication import TOTP_ROLES
from consent.services.passwords import password_change_owed

REQUIRED_MESSAGE = "Your password was set by an administrator: choose your own before going on."
# Answered as JSON, not redirected: scripts and viewers read these, not people.
MACHINE_PREFIXES = ("/api/", "/dicomweb/")


def _open_paths() -> tuple[str, ...]:
    """The pages a session owing a change may still open: the change itself and log-outs."""
    return (
        reverse("portal:password-change"),
        reverse("portal:logout"),
        reverse("admin:logout"),
        settings.STATIC_URL,
    )


def _logged_in(request: HttpRequest) -> bool:
    """A session that has passed every log-in step (the second factor, for its roles)."""
    user = request.user
    if not user.is_authenticated:
        return False
    if role_of(user) not in TOTP_ROLES:
        return True
    is_verified = getattr(user, "is_verified", None)
    return bool(is_verified and is_verified())


def _owes_change(request: HttpRequest) -> bool:
    # A bearer token authenticates in the API's view, never through the session: the
    # tokens are issued apart from the password and are not held up by it.
    if "HTTP_AUTHORIZATION" in request.META:
        return False
    if request.path.startswith(_open_paths()):
        return False
    user = request.user
    return user.is_authenticated and password_change_owed(user=user) and _logged_in(request)


def redirect_to_password_change(request: HttpRequest) -> HttpResponse:
    """To the password change page, then back to the page asked for (a GET's only: a POST's
    page would answer a GET with 405)."""
    target = reverse("portal:password-change")
    if request.method != "GET":
        return redirect(target)
    query = QueryDict(mutable=True)
    query["next"] = request.get_full_path()
    return redirect(f"{target}?{query.urlencode(safe='/')}")


class PasswordChangeRequiredMiddleware:
    """Holds a session whose password an administrator set at the password change page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _owes_change(request):
            return self.get_response(request)
        if request.path.startswith(MACHINE_PREFIXES):
            error = {"code": "PASSWORD_CHANGE_REQUIRED", "message": REQUIRED_MESSAGE}
            return JsonResponse({"error": error}, status=403)
        return redirect_to_password_change(request)
