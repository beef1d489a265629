"""The patient's portal pages (record, consents, who can see, doctors) and the DPO's reviews."""

import dataclasses
import datetime
from collections.abc import Callable
from functools import wraps

from django import forms
from django.contrib import messages
from django.core.validators import MaxValueValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from guardian.shortcuts import get_objects_for_user

from anim_gateway.errors import ApplicationError
from anim_gateway.portal import forbidden, portal_view
from audit.actions import Action, describe_for_patient
from audit.selectors import access_log_list
from consent import gate, selectors
from consent.access import access_own_record, refusals_audited, serves_patient_data
from consent.actors import Actor
from consent.gate import AccessDenied
from consent.models import Institution, Patient, Practitioner, RecordStatus, ReviewState, Role
from consent.services import care, consents, emergency, exclusions

ACTING_FOR_KEY = "portal_acting_for"
ACCESS_LOG_PAGE = 50
REVIEWED_PAGE = 50
REPRESENTATION_ENDED = (
    "You no longer act for the person you chose: these pages show your own record again."
)


# --- the patient acted on: oneself, or a represented child ---------------------------------


def represented_patients(user: object) -> list[Patient]:
    """Patients this login may act for as legal representative (django-guardian)."""
    rows = get_objects_for_user(
        user, "consent.act_for_patient", klass=Patient, with_superuser=False, use_groups=False
    )
    return list(rows.exclude(user=user).order_by("birth_date"))


def _acting_actor(request: HttpRequest) -> Actor:
    """The Actor switched to the represented patient chosen in the session.

    Only a claim: the gate checks the representation on every access. A choice whose
    representation has ended since is dropped, so that the pages fall back to one's own
    record with a word of why, rather than a "no such patient" on every page.
    """
    actor, wanted = request.actor, request.session.get(ACTING_FOR_KEY)
    if not wanted or wanted == actor.patient_national_id:
        return actor
    target = next((p for p in represented_patients(request.user) if p.national_id == wanted), None)
    if target is None:
        request.session.pop(ACTING_FOR_KEY, None)
        messages.info(request, REPRESENTATION_ENDED)
        return actor
    return dataclasses.replace(actor, patient=target, representative=actor.patient)


def patient_page(view: Callable) -> Callable:
    """A patient page: logged in, gate-enforced, acting for the right person, denials shown."""

    @portal_view(Role.PATIENT)
    @serves_patient_data
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        request.actor = _acting_actor(request)
        try:
            return view(request, *args, **kwargs)
        except AccessDenied as denied:
            return forbidden(request, denied.message, status=denied.status_code)

    return wrapper


def run_service(
    request: HttpRequest,
    action: Callable[[], object],
    success: str,
    *,
    audit_action: str,
    patient: Patient | None,
    detail: dict | None = None,
) -> bool:
    """Run one service; its refusal (not a gate deny) is audited and becomes a message."""
    try:
        with refusals_audited(
            request.actor, audit_action=audit_action, patient=patient, detail=detail
        ):
            action()
    except AccessDenied:
        raise
    except ApplicationError as error:
        messages.error(request, error.message)
        return False
    messages.success(request, success)
    return True


def last_day(end: datetime.datetime | None) -> datetime.date | None:
    """The last day, in local time, of a period that excludes its end (DESIGN.md, the rule).

    A consent "until 31 Dec" ends at midnight starting 1 Jan: the patient chose 31 Dec.
    """
    if end is None:
        return None
    return timezone.localtime(end - datetime.timedelta(microseconds=1)).date()


def own_record(request: HttpRequest, audit_action: str, audit_permit: bool = True) -> Patient:
    return access_own_record(request.actor, audit_action=audit_action, audit_permit=audit_permit)


# --- my record -----------------------------------------------------------------------------


@patient_page
def me(request: HttpRequest) -> HttpResponse:
    patient = own_record(request, Action.RECORD_VIEW)
    now = timezone.now()
    context = {
        "patient": patient,
        "record": patient.record,
        "history": selectors.record_history(patient=patient).order_by("-changed_at")[:5],
        "active_consents": [
            c for c in selectors.consent_list(patient=patient) if c.is_active(at=now)
        ],
        "blocked": [e for e in selectors.exclusion_list(patient=patient) if e.is_active(at=now)],
        "represented": represented_patients(request.user),
    }
    return render(request, "consent/me.html", context)


@require_POST
@patient_page
def record_status(request: HttpRequest, status: str) -> HttpResponse:
    action = Action.RECORD_CLOSE if status == RecordStatus.CLOSED else Action.RECORD_REOPEN
    patient = own_record(request, action, audit_permit=False)
    done = "closed: no other hospital can see your images" if status == "closed" else "open again"
    run_service(
        request,
        lambda: consents.record_set_status(actor=request.actor, patient=patient, status=status),
        f"Your shared record is {done}.",
        audit_action=action,
        patient=patient,
    )
    return redirect("portal:me")


@require_POST
@portal_view(Role.PATIENT)
def acting_for(request: HttpRequest) -> HttpResponse:
    """Choose whose record the next pages act on; only a choice, no patient data served."""
    wanted = request.POST.get("national_id", "")
    if wanted in {p.national_id for p in represented_patients(request.user)}:
        request.session[ACTING_FOR_KEY] = wanted
    else:
        request.session.pop(ACTING_FOR_KEY, None)
    return redirect("portal:me")


@patient_page
def who_can_see(request: HttpRequest) -> HttpResponse:
    actor = request.actor
    overview = gate.access_overview(actor, patient=actor.patient, audit_action=Action.RECORD_VIEW)
    return render(request, "consent/who_can_see.html", {"overview": overview})


def page_cursor(raw: str) -> int | None:
    """An "older" link's cursor: ASCII digits only ("²" is a digit to isdigit(), not to
    int()), and one beyond a bigint is no cursor (never a database error)."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


@patient_page
def access_log(request: HttpRequest) -> HttpResponse:
    patient = own_record(request, Action.AUDIT_ACCESS_LOG)
    mine = request.GET.get("mine") == "1"
    before = request.GET.get("before", "")
    events = access_log_list(
        national_id=patient.national_id,
        exclude_actor="" if mine else request.actor.username,
        before=page_cursor(before),
        limit=ACCESS_LOG_PAGE,
    )
    rows = [(event, describe_for_patient(event.action)) for event in events]
    older = events[-1].seq if len(events) == ACCESS_LOG_PAGE else None
    context = {"rows": rows, "mine": mine, "older": older}
    return render(request, "consent/access_log.html", context)


# --- consents ------------------------------------------------------------------------------


class ConsentForm(forms.Form):
    scope = forms.ChoiceField(
        choices=[("all", "All member hospitals"), ("some", "Only the hospitals I choose")],
        initial="all",
        widget=forms.RadioSelect,
    )
    institutions = forms.ModelMultipleChoiceField(
        queryset=Institution.objects.order_by("name"),
        to_field_name="code",
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    valid_until = forms.DateField(
        required=False,
        label="Last day (optional)",
        help_text="The consent holds through this day. Leave empty for a consent without end.",
        widget=forms.DateInput({"type": "date"}),
        # The consent ends at the start of the next day, which must exist.
        validators=[MaxValueValidator(datetime.date(9999, 12, 30))],
    )
    allow_emergency = forms.BooleanField(
        required=False, initial=True, label="Allow emergency access by a doctor who treats me"
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institutions"].label_from_instance = lambda i: f"{i.name} ({i.code})"

    def clean(self) -> dict:
        data = super().clean()
        if data.get("scope") == "some" and not data.get("institutions"):
            self.add_error("institutions", "Choose at least one hospital.")
        return data

    def clean_valid_until(self) -> datetime.date | None:
        """The last day may be today (the consent then holds until midnight), not before:
        said on the field, in the patient's words, rather than as the service's refusal."""
        until = self.cleaned_data["valid_until"]
        if until and until < timezone.localdate():
            raise forms.ValidationError("The last day cannot be in the past.")
        return until

    def grant_arguments(self) -> dict:
        data = self.cleaned_data
        until = data["valid_until"]
        return {
            "institution_codes": None
            if data["scope"] == "all"
            else [i.code for i in data["institutions"]],
            # The consent holds through the chosen day (periods exclude their end).
            "valid_until": timezone.make_aware(
                datetime.datetime.combine(until + datetime.timedelta(days=1), datetime.time())
            )
            if until
            else None,
            "allow_emergency": data["allow_emergency"],
        }


@patient_page
def consent_page(request: HttpRequest) -> HttpResponse:
    form = ConsentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        patient = own_record(request, Action.CONSENT_GRANT, audit_permit=False)
        args = form.grant_arguments()
        granted = run_service(
            request,
            lambda: consents.consent_grant(actor=request.actor, patient=patient, **args),
            "Consent granted. It applies from now on.",
            audit_action=Action.CONSENT_GRANT,
            patient=patient,
        )
        if granted:
            return redirect("portal:me-consents")
    patient = own_record(request, Action.CONSENT_LIST)
    now = timezone.now()
    rows = [
        (c, c.status(at=now), last_day(c.valid_until))
        for c in selectors.consent_list(patient=patient)
    ]
    return render(request, "consent/consents.html", {"form": form, "rows": rows})


@require_POST
@patient_page
def consent_revoke(request: HttpRequest, consent_id: int) -> HttpResponse:
    patient = own_record(request, Action.CONSENT_REVOKE, audit_permit=False)
    run_service(
        request,
        lambda: consents.consent_revoke(
            actor=request.actor, patient=patient, consent_id=consent_id
        ),
        "Consent revoked. It no longer applies, from the next request on.",
        audit_action=Action.CONSENT_REVOKE,
        patient=patient,
    )
    return redirect("portal:me-consents")


# --- my doctors: declared physicians and blocked practitioners -----------------------------


class PractitionerForm(forms.Form):
    practitioner = forms.ChoiceField(
        error_messages={
            "required": "Choose a practitioner from the list.",
            "invalid_choice": "Choose a practitioner from the list.",
        },
        widget=forms.Select({"class": "grow"}),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        people = Practitioner.objects.select_related("user").prefetch_related("institutions")
        self.fields["practitioner"].choices = [("", "Choose a practitioner")] + [
            (p.user.username, _practitioner_label(p)) for p in people.order_by("display_name")
        ]

    def clean_practitioner(self) -> Practitioner:
        practitioner = selectors.practitioner_get(username=self.cleaned_data["practitioner"])
        if practitioner is None:
            raise forms.ValidationError("Choose a practitioner from the list.")
        return practitioner


def _practitioner_label(practitioner: Practitioner) -> str:
    codes = ", ".join(sorted(i.code for i in practitioner.institutions.all()))
    return f"{practitioner.display_name} ({practitioner.get_profession_display()}, {codes})"


# The page's two practitioner forms, told apart by their fields' ids ("declare-practitioner").
DOCTOR_FORMS = ("declare", "block")


def _doctors_page(
    request: HttpRequest, status: int = 200, **sent: PractitionerForm
) -> HttpResponse:
    patient = own_record(request, Action.RECORD_VIEW)
    now = timezone.now()
    context = {
        "blocked": [e for e in selectors.exclusion_list(patient=patient) if e.is_active(at=now)],
        "links": [
            (c, last_day(c.effective_end))
            for c in selectors.care_relationship_list(patient=patient)
            if c.is_active(at=now)
        ],
        **{f"{name}_form": PractitionerForm(auto_id=f"{name}-%s") for name in DOCTOR_FORMS},
        # A form sent back comes with its error next to its own field.
        **sent,
    }
    return render(request, "consent/doctors.html", context, status=status)


@patient_page
def doctors(request: HttpRequest) -> HttpResponse:
    return _doctors_page(request)


def _practitioner_post(
    request: HttpRequest, audit_action: str, service: Callable, ok: str, *, form_name: str
) -> HttpResponse:
    # The gate first: a patient page that answers without it is refused as a 500.
    patient = own_record(request, audit_action, audit_permit=False)
    form = PractitionerForm(request.POST, auto_id=f"{form_name}-%s")
    if not form.is_valid():
        return _doctors_page(request, status=400, **{f"{form_name}_form": form})
    practitioner = form.cleaned_data["practitioner"]
    run_service(
        request,
        lambda: service(actor=request.actor, patient=patient, practitioner=practitioner),
        ok.format(name=practitioner.display_name),
        audit_action=audit_action,
        patient=patient,
    )
    return redirect("portal:me-doctors")


@require_POST
@patient_page
def exclusion_add(request: HttpRequest) -> HttpResponse:
    return _practitioner_post(
        request,
        Action.EXCLUSION_ADD,
        exclusions.exclusion_add,
        "{name} is blocked: they cannot open your studies, even in an emergency.",
        form_name="block",
    )


@require_POST
@patient_page
def exclusion_remove(request: HttpRequest, exclusion_id: int) -> HttpResponse:
    patient = own_record(request, Action.EXCLUSION_REMOVE, audit_permit=False)
    run_service(
        request,
        lambda: exclusions.exclusion_remove(
            actor=request.actor, patient=patient, exclusion_id=exclusion_id
        ),
        "The practitioner is no longer blocked.",
        audit_action=Action.EXCLUSION_REMOVE,
        patient=patient,
    )
    return redirect("portal:me-doctors")


@require_POST
@patient_page
def care_declare(request: HttpRequest) -> HttpResponse:
    return _practitioner_post(
        request,
        Action.CARE_DECLARE,
        care.care_relationship_declare,
        "{name} is declared as your doctor for the next 15 months.",
        form_name="declare",
    )


# --- the DPO's review of emergency accesses ------------------------------------------------


class ReviewForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[(ReviewState.JUSTIFIED, "Justified"), (ReviewState.UNJUSTIFIED, "Unjustified")],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(required=False, widget=forms.Textarea({"rows": 2}), max_length=2000)


def _review_problem(form: ReviewForm) -> str:
    """What is wrong with a review, in the DPO's words (the page shows it above the list)."""
    if "outcome" in form.errors:
        return "Review not recorded: choose justified or unjustified."
    limit = form.fields["note"].max_length
    return f"Review not recorded: the note is longer than {limit} characters."


@portal_view(Role.DPO)
@serves_patient_data
def emergency_reviews(request: HttpRequest) -> HttpResponse:
    gate.authorize(
        request.actor, gate.REVIEW_EMERGENCY, patient=None, audit_action=Action.EMERGENCY_LIST
    )
    reviewed = selectors.reviewed_emergency_list(
        before=page_cursor(request.GET.get("before", "")), limit=REVIEWED_PAGE
    )
    context = {
        "pending": selectors.emergency_access_list(review=ReviewState.PENDING),
        "reviewed": reviewed,
        "older": reviewed[-1].pk if len(reviewed) == REVIEWED_PAGE else None,
        "form": ReviewForm(),
    }
    return render(request, "consent/emergency_reviews.html", context)


@require_POST
@portal_view(Role.DPO)
@serves_patient_data
def emergency_review(request: HttpRequest, access_id: int) -> HttpResponse:
    form = ReviewForm(request.POST)
    try:
        gate.authorize(
            request.actor,
            gate.REVIEW_EMERGENCY,
            patient=None,
            audit_action=Action.EMERGENCY_REVIEW,
            audit_permit=False,
        )
    except AccessDenied as denied:
        return forbidden(request, denied.message, status=denied.status_code)
    if not form.is_valid():
        messages.error(request, _review_problem(form))
        return redirect("portal:dpo-emergencies")
    run_service(
        request,
        lambda: emergency.emergency_review(
            actor=request.actor, access_id=access_id, **form.cleaned_data
        ),
        "Review recorded.",
        audit_action=Action.EMERGENCY_REVIEW,
        patient=selectors.emergency_access_patient(access_id=access_id),
        detail={"emergency_access": access_id},
    )
    return redirect("portal:dpo-emergencies")
