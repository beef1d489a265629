"""The web portal's frame: the session's actor, the decorator every page uses, the acting
institution, logout and the per-role home. The log-in steps are in portal_login."""

from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib import auth
from django.contrib.auth.views import redirect_to_login
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from anim_gateway.middleware import client_address
from audit.actions import Action
from consent.actors import Actor, actor_for
from consent.auditing import audit_event
from consent.authentication import TOTP_ROLES
from consent.models import Affiliation, Institution, Practitioner, Role

ACTING_KEY = "acting_institution"  # read by consent.authentication.PortalSessionAuthentication
HOME_BY_ROLE = {
    Role.PATIENT: "portal:me",
    Role.PRACTITIONER: "portal:patient-search",
    Role.DPO: "portal:dpo-audit",
    Role.ADMIN: "admin:index",
}


# --- actors and the decorator every portal page uses ---------------------------------------


def portal_actor(request: HttpRequest) -> Actor | None:
    """The Actor of a logged-in portal session (the acting institution comes from the session)."""
    if not request.user.is_authenticated:
        return None
    code = request.session.get(ACTING_KEY)
    institution = Institution.objects.filter(code=code).first() if code else None
    return actor_for(
        request.user,
        institution=institution,
        client_address=client_address(request),
        request_id=getattr(request, "request_id", ""),
        channel="portal",
    )


def _otp_ok(request: HttpRequest, actor: Actor) -> bool:
    if actor.role not in TOTP_ROLES:
        return True
    is_verified = getattr(request.user, "is_verified", None)
    return bool(is_verified and is_verified())


def portal_view(*roles: str, needs_institution: bool = True) -> Callable:
    """Let only logged-in, second-factor-verified users of these roles in; sets request.actor.

    A practitioner is first sent to choose their acting institution, unless the page does
    not act for one (``needs_institution=False``: their own password)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        @never_cache
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            actor = portal_actor(request)
            if actor is None or not _otp_ok(request, actor):
                return redirect_to_login(request.get_full_path())
            if actor.role not in roles:
                _audit_role_refusal(request, actor)
                return forbidden(request, "This page is not available for your role.")
            choosing = needs_institution and actor.role == Role.PRACTITIONER
            if choosing and actor.institution is None:
                return redirect_to_choose_institution(request)
            request.actor = actor
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def _audit_role_refusal(request: HttpRequest, actor: Actor) -> None:
    # Every attempt is audited (DESIGN.md), as the API audits ROLE_NOT_ALLOWED. The page's
    # name, not its path: the path may hold a national identifier this role may not resolve.
    match = request.resolver_match
    audit_event(
        actor,
        action=Action.PORTAL_PAGE_REFUSED,
        outcome="deny",
        reason_code="ROLE_NOT_ALLOWED",
        detail={"view": match.view_name if match else ""},
    )


def forbidden(request: HttpRequest, message: str, status: int = 403) -> HttpResponse:
    return render(request, "portal/error.html", {"message": message}, status=status)


def not_found(request: HttpRequest) -> HttpResponse:
    # One body for "not there" and "not allowed" where existence must not leak (STYLE.md 6).
    return forbidden(request, "Nothing to show here.", status=404)


# --- the page to return to ------------------------------------------------------------------


def safe_next(request: HttpRequest) -> str:
    """The page asked for before the log-in (or the hospital choice), if it is one of ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    ok = url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure())
    return target if ok and target.startswith("/") else ""


def redirect_to_choose_institution(request: HttpRequest, next_url: str = "") -> HttpResponse:
    """To the hospital choice, then back to ``next_url`` (or the page asked for, if a GET)."""
    if not next_url and request.method == "GET":
        next_url = request.get_full_path()  # a POST's page would answer a GET with 405
    target = reverse("portal:choose-institution")
    if not next_url:
        return redirect(target)
    query = QueryDict(mutable=True)
    query["next"] = next_url
    return redirect(f"{target}?{query.urlencode(safe='/')}")  # as redirect_to_login writes it


# --- the acting institution ----------------------------------------------------------------


class InstitutionForm(forms.Form):
    institution = forms.ChoiceField(widget=forms.RadioSelect)

    def __init__(self, *args: object, institutions: list[Institution], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        choices = [(i.code, f"{i.name} ({i.code})") for i in institutions]
        self.fields["institution"].choices = choices


def active_institutions(practitioner: Practitioner) -> list[Institution]:
    """Institutions where the practitioner has an active affiliation now (rule 1)."""
    now = timezone.now()
    affiliations = Affiliation.objects.filter(practitioner=practitioner, start__lte=now).filter(
        Q(end__isnull=True) | Q(end__gt=now)
    )
    return list(
        Institution.objects.filter(pk__in=affiliations.values("institution")).order_by("code")
    )


# --- views ---------------------------------------------------------------------------------


@never_cache
def choose_institution(request: HttpRequest) -> HttpResponse:
    actor = portal_actor(request)
    if actor is None or not _otp_ok(request, actor) or actor.role != Role.PRACTITIONER:
        return redirect("portal:home")
    institutions = active_institutions(actor.practitioner)
    if not institutions:
        return forbidden(request, "You have no active affiliation with a member hospital.")
    request.actor = actor  # the header offers logout
    form = InstitutionForm(request.POST or None, institutions=institutions)
    next_url = safe_next(request)
    if request.method == "POST" and form.is_valid():
        request.session[ACTING_KEY] = form.cleaned_data["institution"]
        return redirect(next_url or "portal:home")
    context = {"form": form, "current": request.session.get(ACTING_KEY), "next": next_url}
    return render(request, "portal/choose_institution.html", context)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    auth.logout(request)
    return redirect("portal:login")


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    actor = portal_actor(request)
    if actor is None or not _otp_ok(request, actor):
        return redirect("portal:login")
    if actor.role == Role.PRACTITIONER and actor.institution is None:
        return redirect("portal:choose-institution")
    target = HOME_BY_ROLE.get(actor.role)
    if target is None:
        return forbidden(request, "Your account has no role in the portal.")
    return redirect(target)
