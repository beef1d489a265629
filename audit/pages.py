"""The DPO's portal pages: search the audit log and verify its integrity (never images)."""

from collections.abc import Callable
from functools import wraps

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit.actions import Action, Basis, Outcome, describe
from audit.events import Event
from audit.models import AuditEvent
from audit.services import append
from audit.verification import verify_chain

PAGE_SIZE = 50


def dpo_page(view: Callable) -> Callable:
    """Refuse anyone but the DPO; ``request.actor`` is set by the portal's door (anim_gateway)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        actor = getattr(request, "actor", None)
        if actor is None or actor.role != "dpo":
            # Fail closed if the page is ever routed without the portal's door.
            return render(
                request, "portal/error.html", {"message": "For the DPO only."}, status=403
            )
        return view(request, *args, **kwargs)

    return wrapper


def _audit(request: HttpRequest, action: str, detail: dict) -> None:
    append(
        Event(
            action=action,
            outcome=Outcome.PERMIT,
            basis=Basis.DPO,
            **request.actor.audit_fields(),
            detail=detail,
        )
    )


class AuditFilterForm(forms.Form):
    patient = forms.CharField(
        required=False, max_length=13, widget=forms.TextInput({"placeholder": "national id"})
    )
    actor = forms.CharField(
        required=False, max_length=150, widget=forms.TextInput({"placeholder": "username"})
    )
    institution = forms.CharField(
        required=False, max_length=16, widget=forms.TextInput({"placeholder": "e.g. CHL"})
    )
    action = forms.ChoiceField(required=False, choices=[("", "Any action"), *Action.choices])
    outcome = forms.ChoiceField(required=False, choices=[("", "Any outcome"), *Outcome.choices])
    basis = forms.ChoiceField(required=False, choices=[("", "Any basis"), *Basis.choices])
    since = forms.DateField(required=False, widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput({"type": "date"}))
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


def _events(filters: dict) -> list[AuditEvent]:
    """One page of events, newest first, keyset-paginated on seq."""
    rows = AuditEvent.objects.order_by("-seq")
    for field, lookup in (
        ("patient", "patient"),
        ("actor", "actor_username"),
        ("institution", "acting_institution"),
        ("action", "action"),
        ("outcome", "outcome"),
        ("basis", "basis"),
        ("since", "time__date__gte"),
        ("until", "time__date__lte"),
        ("before", "seq__lt"),
    ):
        value = filters.get(field)
        if value not in (None, ""):
            rows = rows.filter(
                **{lookup: value.strip().upper() if field == "institution" else value}
            )
    return list(rows[:PAGE_SIZE])


def patient_events(
    *, national_id: str, exclude_actor: str = "", before: int | None = None, limit: int
) -> list[AuditEvent]:
    """Events about one patient's record, newest first (the patient's access log).

    The caller has authorized the patient (consent.pages); this app knows only the identifier.
    """
    rows = AuditEvent.objects.filter(patient=national_id).order_by("-seq")
    if exclude_actor:
        rows = rows.exclude(actor_username=exclude_actor)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return list(rows[:limit])


@dpo_page
def audit_search(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    valid = not form.is_bound or form.is_valid()
    filters = form.cleaned_data if form.is_bound and valid else {}
    events = _events(filters) if valid else []
    used = {k: v for k, v in filters.items() if v not in (None, "") and k != "before"}
    _audit(request, Action.AUDIT_SEARCH, {"filters": {k: str(v) for k, v in used.items()}})
    rows = [(event, describe(event.action)) for event in events]
    older = events[-1].seq if len(events) == PAGE_SIZE else None
    query = request.GET.copy()
    query.pop("before", None)
    context = {"form": form, "rows": rows, "older": older, "query": query.urlencode()}
    return render(request, "audit/search.html", context)


@dpo_page
def audit_verify(request: HttpRequest) -> HttpResponse:
    result = None
    if request.method == "POST":
        result = verify_chain()
        _audit(request, Action.AUDIT_VERIFY, {"valid": result.valid, "events": result.events})
    return render(request, "audit/verify.html", {"result": result})
