"""The portal's log-in steps: the password, then the authenticator's code, or its set-up
with an administrator's enrolment code; each failure audited and throttled."""

import time
from base64 import b32encode

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway import login_throttle
from anim_gateway.enrolment import Refused, enrolment_confirm
from anim_gateway.middleware import client_address
from anim_gateway.portal import (
    ACTING_KEY,
    active_institutions,
    portal_actor,
    redirect_to_choose_institution,
    safe_next,
)
from anim_gateway.sessions import PENDING_KEY
from audit.actions import Action
from consent.actors import Actor, role_of
from consent.auditing import audit_event
from consent.authentication import PORTAL_ROLES, TOTP_ROLES
from consent.models import Practitioner

ENROL_DEVICE_KEY = "portal_enrol_device"  # the authenticator whose key this session was shown


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


# --- forms ---------------------------------------------------------------------------------


class LoginForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput({"autocomplete": "username"}))
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput({"autocomplete": "current-password"})
    )


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"^\s*\d{6}\s*$",
        label="6-digit code",
        error_messages={"invalid": "Enter the 6 digits shown by your authenticator app."},
        widget=forms.TextInput(
            {"autocomplete": "one-time-code", "inputmode": "numeric", "maxlength": "6"}
        ),
    )


class EnrolmentForm(TokenForm):
    enrolment_code = forms.CharField(
        max_length=64,
        label="Enrolment code",
        help_text="The one-time code your administrator gave you for this set-up.",
        error_messages={"required": "Enter the enrolment code your administrator gave you."},
        widget=forms.TextInput(
            {"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}
        ),
    )
    field_order = ["enrolment_code", "token"]


# --- helpers of the log-in steps -----------------------------------------------------------


def _request_fields(request: HttpRequest) -> dict:
    return {
        "client_address": client_address(request),
        "request_id": getattr(request, "request_id", ""),
        "channel": "portal",
    }


def _audit_failure(request: HttpRequest, user: object | None, step: str, **detail: str) -> None:
    # Only a known username is recorded: an unknown one may be a mistyped password.
    username = user.get_username() if user is not None else ""
    role = (role_of(user) or "") if user is not None else ""
    actor = Actor(role=role, username=username, display_name=username, **_request_fields(request))
    detail = {"step": step, **detail}
    audit_event(actor, action=Action.AUTH_LOGIN_FAILED, outcome="deny", detail=detail)


THROTTLED = "Too many failed attempts. Wait a few minutes and try again."


def _throttled(request: HttpRequest, username: str, user: object | None) -> bool:
    """Count the attempt as a failure until it proves right, and refuse (and audit) it when
    that takes the username's or the client address's counter past its limit, before any
    password or code is checked: the answer tells nothing of either."""
    counter = login_throttle.attempt(username, counted_address(request))
    if counter is None:
        return False
    # Naming the counter tells nothing of the account: both count any username typed.
    _audit_failure(request, user, "throttled", counter=counter)
    return True


def counted_address(request: HttpRequest) -> str:
    """The client address the log-in throttle counts this request's failures against."""
    forwarded_for = request.META.get("HTTP_X_FORWARDED_FOR", "")
    return login_throttle.counted_address(client_address(request), forwarded_for)


def _not_a_failure(request: HttpRequest, username: str) -> None:
    login_throttle.not_a_failure(username, counted_address(request))


def _pending_user(request: HttpRequest) -> object | None:
    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending["at"] > _setting("PORTAL_PENDING_SECONDS", 300):
        return None
    return get_user_model().objects.filter(pk=pending["user"], is_active=True).first()


def _complete_login(
    request: HttpRequest, user: object, device: TOTPDevice | None, *, enrolled: bool = False
) -> HttpResponse:
    pending = request.session.pop(PENDING_KEY, None) or {}
    next_url = pending.get("next") or safe_next(request)
    auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if device is not None:
        otp_login(request, device)
    login_throttle.forget_username(user.get_username())
    practitioner = Practitioner.objects.filter(user=user).first()
    institutions = active_institutions(practitioner) if practitioner else []
    if len(institutions) == 1:
        request.session[ACTING_KEY] = institutions[0].code
    detail = {"second_factor": bool(device), **({"enrolled": True} if enrolled else {})}
    audit_event(portal_actor(request), action=Action.AUTH_LOGIN, detail=detail)
    if practitioner and len(institutions) != 1:
        return redirect_to_choose_institution(request, next_url)  # the deep link goes on
    return redirect(next_url or "portal:home")


def _confirmed_device(user: object) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def _qr_svg(url: str) -> str:
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")


# --- views ---------------------------------------------------------------------------------


@sensitive_post_parameters("password")
@never_cache
def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username = form.cleaned_data["username"]
        known = get_user_model().objects.filter(username=username).first()
        if _throttled(request, username, known):
            form.add_error(None, THROTTLED)
        else:
            user = auth.authenticate(
                request, username=username, password=form.cleaned_data["password"]
            )
            if user is not None and role_of(user) in PORTAL_ROLES:
                _not_a_failure(request, username)
                return _after_password(request, user)
            # A hospital system (or an account with no role) acts with its token only: a
            # session would carry its powers into the REST API without a second factor. It
            # gets the same answer as a wrong password, which must not learn it was right.
            if user is not None:
                _audit_failure(request, user, "no_portal_role")
            else:
                _audit_failure(request, known, "password")
            form.add_error(None, "Wrong username or password.")
    return render(request, "portal/login.html", {"form": form, "next": safe_next(request)})


def _after_password(request: HttpRequest, user: object) -> HttpResponse:
    if role_of(user) not in TOTP_ROLES:
        return _complete_login(request, user, None)
    next_url = safe_next(request)
    if request.user.is_authenticated:
        auth.logout(request)  # someone else's session must not survive the second step
    else:
        request.session.cycle_key()
    request.session[PENDING_KEY] = {"user": user.pk, "at": time.time(), "next": next_url}
    if _confirmed_device(user) is None:
        return redirect("portal:totp-enrol")
    return redirect("portal:totp-verify")


@never_cache
def totp_verify(request: HttpRequest) -> HttpResponse:
    user = _pending_user(request)
    if user is None:
        return redirect("portal:login")
    device = _confirmed_device(user)
    if device is None:
        return redirect("portal:totp-enrol")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _throttled(request, user.get_username(), user):
            form.add_error(None, THROTTLED)
        elif device.verify_token(form.cleaned_data["token"].strip()):
            _not_a_failure(request, user.get_username())
            return _complete_login(request, user, device)
        else:
            _audit_failure(request, user, "totp")
            form.add_error("token", "This code is not valid. Check your app and try again.")
    return render(request, "portal/totp_verify.html", {"form": form})


ENROLMENT_ERRORS = {
    Refused.CODE: (
        "enrolment_code",
        "This enrolment code is not valid: it may be mistyped, already used or replaced by a "
        "newer one. Check it, or ask your administrator for a new one.",
    ),
    Refused.EXPIRED: (
        "enrolment_code",
        "This enrolment code has expired and can no longer be used. Ask your administrator "
        "for a new one.",
    ),
    Refused.TOTP: ("token", "This code is not valid. Check the time on your phone."),
}


RESTARTED = (
    "The set-up was started again (in another window?): add this new key to your app, "
    "then enter both codes."
)


def _shown_device(request: HttpRequest, user: object) -> tuple[TOTPDevice, bool]:
    """The unconfirmed authenticator whose key this session was shown, or a new one (True).

    A key shown to one session is never the one another session enrols: whoever opened this
    page with the password alone must not learn the key the user then confirms."""
    pk = request.session.get(ENROL_DEVICE_KEY)
    device = TOTPDevice.objects.filter(pk=pk, user=user, confirmed=False).first() if pk else None
    if device is not None:
        return device, False
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        device = TOTPDevice.objects.create(user=user, name="Portal", confirmed=False)
    request.session[ENROL_DEVICE_KEY] = device.pk
    return device, True


def _enrol_page(request: HttpRequest, form: forms.Form, device: TOTPDevice) -> HttpResponse:
    secret = b32encode(device.bin_key).decode()
    context = {
        "form": form,
        "qr_svg": _qr_svg(device.config_url),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    }
    return render(request, "portal/totp_enrol.html", context)


@sensitive_post_parameters("enrolment_code")
@never_cache
def totp_enrol(request: HttpRequest) -> HttpResponse:
    user = _pending_user(request)
    if user is None:
        return redirect("portal:login")
    if _confirmed_device(user) is not None:
        return redirect("portal:totp-verify")
    device, new = _shown_device(request, user)
    form = EnrolmentForm(request.POST or None)
    if request.method != "POST" or not form.is_valid():
        return _enrol_page(request, form, device)
    if new:  # its key was never shown here: nothing typed can be for it
        form.add_error(None, RESTARTED)
    elif _throttled(request, user.get_username(), user):
        form.add_error(None, THROTTLED)
    else:
        data = form.cleaned_data
        refused = enrolment_confirm(
            user=user, device=device, code=data["enrolment_code"], token=data["token"].strip()
        )
        if refused is None:
            _not_a_failure(request, user.get_username())
            request.session.pop(ENROL_DEVICE_KEY, None)
            return _complete_login(request, user, device, enrolled=True)
        _audit_failure(request, user, refused.value)
        form.add_error(*ENROLMENT_ERRORS[refused])
    return _enrol_page(request, form, device)
