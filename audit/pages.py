"""The DPO's portal pages: search the audit log and verify its integrity (never images)."""

import dataclasses
import datetime
from collections.abc import Callable
from functools import wraps

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import urlencode

from audit.actions import Action, Basis, Outcome, describe
from audit.events import Event
from audit.selectors import EventFilters, event_list
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


# Days whose period (from midnight, to the next midnight) exists in UTC, as the database
# stores it: neither the first day of the calendar nor the last.
_DAYS = [MinValueValidator(datetime.date(1, 1, 2)), MaxValueValidator(datetime.date(9999, 12, 30))]


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
    since = forms.DateField(
        required=False, validators=_DAYS, widget=forms.DateInput({"type": "date"})
    )
    until = forms.DateField(
        required=False, validators=_DAYS, widget=forms.DateInput({"type": "date"})
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


def _filters(data: dict) -> EventFilters:
    """The form's dates as a period: from the start of `since` to the end of `until`."""

    def midnight(day: datetime.date | None, *, after: bool = False) -> datetime.datetime | None:
        if day is None:
            return None
        day += datetime.timedelta(days=1 if after else 0)
        return timezone.make_aware(datetime.datetime.combine(day, datetime.time()))

    return EventFilters(
        patient=data.get("patient", "").strip(),
        actor=data.get("actor", "").strip(),
        institution=data.get("institution", "").strip().upper(),
        action=data.get("action", ""),
        outcome=data.get("outcome", ""),
        basis=data.get("basis", ""),
        since=midnight(data.get("since")),
        until=midnight(data.get("until"), after=True),
    )


def _export_query(filters: EventFilters) -> str:
    """The same filters for GET /api/v1/audit/export/ (the DPO's session authenticates it)."""
    used = dataclasses.asdict(filters)
    return urlencode(
        {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in used.items() if v}
    )


@dpo_page
def audit_search(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    valid = not form.is_bound or form.is_valid()
    data = form.cleaned_data if form.is_bound and valid else {}
    filters = _filters(data)
    events = (
        event_list(filters=filters, before=data.get("before"), limit=PAGE_SIZE) if valid else []
    )
    _audit(
        request,
        Action.AUDIT_SEARCH,
        {"filters": filters.used(), "returned": len(events)},
    )
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "form": form,
        "rows": [(event, describe(event.action)) for event in events],
        "older": events[-1].seq if len(events) == PAGE_SIZE else None,
        "query": query.urlencode(),
        "export_query": _export_query(filters),
    }
    return render(request, "audit/search.html", context)


@dpo_page
def audit_verify(request: HttpRequest) -> HttpResponse:
    result = None
    if request.method == "POST":
        result = verify_chain()
        _audit(request, Action.AUDIT_VERIFY, {"valid": result.valid, "events": result.events})
    return render(request, "audit/verify.html", {"result": result})
