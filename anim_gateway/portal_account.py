"""The portal's account pages: every logged-in user changes their own password here."""

import logging

from django.contrib import messages
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from anim_gateway import login_throttle
from anim_gateway.account import account_password_change, account_password_change_refused
from anim_gateway.forced_password_change import REQUIRED_MESSAGE
from anim_gateway.portal import forbidden, portal_view, safe_next
from anim_gateway.portal_login import THROTTLED, counted_address
from audit.errors import AuditUnavailable
from consent.authentication import PORTAL_ROLES
from consent.services.passwords import password_change_owed

logger = logging.getLogger(__name__)

AUDIT_UNAVAILABLE = "The audit log is unavailable: nothing was changed. Try again later."
CHANGED = "Your password has been changed. Any other session of yours has been logged out."


class PasswordChangeForm(auth_forms.PasswordChangeForm):
    """Django's form, whose old password counts in the log-in throttle: an open session must
    not serve to guess the password that the log-in guards."""

    error_messages = {
        **auth_forms.PasswordChangeForm.error_messages,
        "password_incorrect": "This is not your current password. Check it and try again.",
    }

    def __init__(self, user: AbstractBaseUser, data: object = None, *, address: str) -> None:
        super().__init__(user, data)
        self.address = address
        self.throttled_by: str | None = None
        self.fields["old_password"].label = "Current password"
        self.fields["new_password2"].label = "New password again"

    @sensitive_variables("old_password")
    def clean_old_password(self) -> str:
        username = self.user.get_username()
        # Counted before it is checked, as at the log-in (login_throttle.attempt).
        self.throttled_by = login_throttle.attempt(username, self.address)
        if self.throttled_by is not None:
            raise ValidationError(THROTTLED, code="throttled")
        old_password = super().clean_old_password()
        login_throttle.not_a_failure(username, self.address)
        return old_password


def _audit_refusal(request: HttpRequest, form: PasswordChangeForm) -> None:
    # A new password the validators refuse is the user's own typing: only guesses are audited.
    if form.throttled_by is not None:
        account_password_change_refused(
            acting=request.actor, reason="THROTTLED", counter=form.throttled_by
        )
    elif form.has_error("old_password", "password_incorrect"):
        account_password_change_refused(acting=request.actor, reason="WRONG_PASSWORD")


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
# Before the hospital choice too: a password an administrator set is changed first.
@portal_view(*PORTAL_ROLES, needs_institution=False)
def password_change(request: HttpRequest) -> HttpResponse:
    data = request.POST if request.method == "POST" else None
    form = PasswordChangeForm(request.user, data, address=counted_address(request))
    if data is None:
        return _page(request, form)
    try:
        return _submitted(request, form)
    except AuditUnavailable:
        # Nothing was changed: the change's transaction rolled back with its audit row.
        logger.error("A password change was refused: the audit log is unavailable")
        return forbidden(request, AUDIT_UNAVAILABLE, status=503)


def _submitted(request: HttpRequest, form: PasswordChangeForm) -> HttpResponse:
    if not form.is_valid():
        _audit_refusal(request, form)
        return _page(request, form, status=400)
    changed = account_password_change(
        user=request.user,
        new_password=form.cleaned_data["new_password1"],
        acting=request.actor,
        keep_session=request.session.session_key,
    )
    update_session_auth_hash(request, request.user)  # this session stays, under a new key
    messages.success(request, _changed_message(changed.tokens_revoked))
    # The page the user was on their way to when an administrator's password held them here.
    return redirect(safe_next(request) or "portal:home")


def _page(request: HttpRequest, form: PasswordChangeForm, status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "next": safe_next(request),
        "required": REQUIRED_MESSAGE if password_change_owed(user=request.user) else "",
    }
    return render(request, "portal/password_change.html", context, status=status)


def _changed_message(tokens_revoked: int) -> str:
    # The user's scripts or apps stop working: said here, so that it is no mystery later.
    if not tokens_revoked:
        return CHANGED
    tokens = "API token was" if tokens_revoked == 1 else f"{tokens_revoked} API tokens were"
    return f"{CHANGED} Your {tokens} revoked: ask your administrator for new ones."
