"""Portal pages on studies: the practitioner's patient history, study and emergency; my studies."""

from collections.abc import Callable
from functools import wraps

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from stdnum.exceptions import ValidationError as StdnumError

from anim_gateway.errors import NotFound
from anim_gateway.portal import not_found, portal_view
from audit.actions import Action
from consent import gate, national_id
from consent.access import access_own_record, access_patient_by_national_id, serves_patient_data
from consent.gate import AccessDenied
from consent.models import Role
from consent.pages import patient_page, run_service
from consent.selectors import hidden_study_uids
from consent.services import emergency, exclusions
from studies import access, qido, selectors

# Why an institution's studies were withheld, in the practitioner's words (DESIGN.md, the rule).
WITHHELD = {
    "NOT_AFFILIATED": "You have no active affiliation with the hospital you act for.",
    "PROFESSION_NOT_ALLOWED": "Your profession may not open these studies.",
    "EXCLUDED_BY_PATIENT": "The patient has blocked you.",
    "RECORD_NOT_ACTIVE": "The patient's shared record is closed.",
    "NO_CONSENT": "The patient has not consented to sharing with your hospital.",
    "NO_CARE_RELATIONSHIP": "You have no care relationship with the patient.",
    "NOT_SHARED": "These studies are not linked to the patient's shared record.",
}
# Denials that an emergency access can lift (rules 4 and 7-8; never 1-3 or a hidden study).
EMERGENCY_CAN_HELP = {"NO_CONSENT", "NO_CARE_RELATIONSHIP"}
# The preview box is 420 pixels high; a little more keeps the image sharp on dense screens.
PREVIEW_QUERY = "viewport=512,512&accept=image/png"
# The series viewer's images: as large as a laptop's screen shows them, lossless.
VIEWER_QUERY = "viewport=1024,1024&accept=image/png"
# CT window presets (center, width in Hounsfield units), as radiology viewers offer them.
CT_WINDOWS = {
    "soft-tissue": ("Soft tissue", "40,400"),
    "lung": ("Lung", "-600,1500"),
    "bone": ("Bone", "400,1800"),
    "brain": ("Brain", "40,80"),
}
# The kinds of imaging in a patient's words (DICOM modality codes, PS3.3 C.7.3.1.1.1).
MODALITY_WORDS = {
    "CR": "X-ray",
    "DX": "X-ray",
    "MG": "Mammography",
    "CT": "CT scan",
    "MR": "MRI scan",
    "US": "Ultrasound",
    "NM": "Nuclear medicine scan",
    "PT": "PET scan",
    "XA": "Angiography",
    "RF": "Fluoroscopy",
    "IO": "Dental X-ray",
    "PX": "Dental X-ray",
    "OT": "Other imaging",
}


def modality_words(codes: list[str]) -> str:
    """'CT, MR' as 'CT scan, MRI scan'; codes that are not images (SEG, SR) as 'Other imaging'."""
    words = dict.fromkeys(MODALITY_WORDS.get(code, "Other imaging") for code in codes)
    return ", ".join(words) or "Not stated"


def practitioner_page(view: Callable) -> Callable:
    """A practitioner page: logged in with TOTP, acting institution chosen, gate-enforced."""

    @portal_view(Role.PRACTITIONER)
    @serves_patient_data
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound:
            return not_found(request)
        except AccessDenied as denied:
            if denied.status_code == 404:
                return not_found(request)
            context = {
                "denied": denied,
                "national_id": kwargs.get("national_id", ""),
                "emergency_possible": denied.decision.reason_code in EMERGENCY_CAN_HELP,
            }
            return render(request, "studies/denied.html", context, status=denied.status_code)

    return wrapper


# --- find a patient ------------------------------------------------------------------------


class SearchForm(forms.Form):
    national_id = forms.CharField(
        label="National identifier",
        max_length=20,
        help_text="The 13-digit Luxembourg national identifier (matricule).",
        error_messages={"required": "Enter the patient's national identifier."},
        widget=forms.TextInput(
            {"inputmode": "numeric", "autocomplete": "off", "placeholder": "13 digits"}
        ),
    )

    def clean_national_id(self) -> str:
        try:
            return national_id.validate(self.cleaned_data["national_id"])
        except StdnumError as error:
            # Its message names the identifier and what is wrong with it: said once.
            raise forms.ValidationError(str(error)) from error


@portal_view(Role.PRACTITIONER)
def patient_search(request: HttpRequest) -> HttpResponse:
    """Only a form: the patient's data is behind the gate on the next page."""
    form = SearchForm(request.GET or None)
    if form.is_bound and form.is_valid():
        return redirect("portal:patient-studies", national_id=form.cleaned_data["national_id"])
    return render(request, "studies/patient_search.html", {"form": form})


# --- a patient's cross-hospital history ----------------------------------------------------


@practitioner_page
def patient_studies(request: HttpRequest, national_id: str) -> HttpResponse:
    actor = request.actor
    patient = access_patient_by_national_id(
        actor,
        national_id,
        action=gate.LIST_STUDIES,
        audit_action=Action.PATIENT_STUDIES_LIST,
        audit_permit=False,
    )
    decision = access.patient_studies(
        actor, patient=patient, audit_action=Action.PATIENT_STUDIES_LIST
    )
    withheld = [
        (code, reason, WITHHELD.get(reason, reason), reason in EMERGENCY_CAN_HELP)
        for code, reason in decision.withheld
    ]
    context = {
        "patient": patient,
        "studies": decision.permitted,
        "withheld": withheld,
        "emergency_possible": any(row[3] for row in withheld),
    }
    return render(request, "studies/patient_studies.html", context)


@practitioner_page
def study_detail(request: HttpRequest, national_id: str, study_uid: str) -> HttpResponse:
    study = _patients_study(request, national_id, study_uid, view="portal")
    series = _series_with_preview(request, study)
    context = {"study": study, "series": series, "images": sum(row[2] for row in series)}
    return render(request, "studies/study_detail.html", context)


def _patients_study(request: HttpRequest, national_id: str, study_uid: str, *, view: str) -> object:
    """The study, if it is the patient's of the URL and the gate lets the practitioner view
    its images (audited as reading its metadata from that page); another patient's study is
    unknown here, decided on nobody's behalf."""
    return access.access_study(
        request.actor,
        study_uid=study_uid,
        action=gate.VIEW_IMAGES,
        audit_action=Action.STUDY_METADATA,
        detail={"view": view},
        national_id=national_id,
    )


def _series_with_preview(request: HttpRequest, study: object) -> list[tuple]:
    """Each series with the DICOMweb thumbnail URL of its middle image (gated per image),
    sized for the preview box (a mammogram is not sent whole to fill 420 pixels), and its
    images as the viewer counts them; a series without images gets neither."""
    images = selectors.image_counts(study=study)
    rows = []
    for series in selectors.series_list(study=study, query=qido.Query(limit=1000)):
        url = ""
        if images.get(series.pk):
            path = reverse(
                "dicomweb:series-thumbnail",
                kwargs={"study": study.study_uid, "series": series.series_uid},
            )
            url = f"{path}?{PREVIEW_QUERY}"
        rows.append((series, url, images.get(series.pk, 0)))
    return rows


@practitioner_page
def series_viewer(
    request: HttpRequest, national_id: str, study_uid: str, series_uid: str
) -> HttpResponse:
    """One image of a series at a time, from the DICOMweb rendering (each image gated and
    audited as it is shown); links step through it without script, portal.js with keys."""
    study = _patients_study(request, national_id, study_uid, view="portal-series")
    series = access.series_in(study, series_uid)
    images = selectors.series_images(series=series)
    total = sum(frames for _, frames in images)
    position = _position(request.GET.get("image", ""), total)
    window = request.GET.get("window", "") if series.modality == "CT" else ""
    template = _rendered_template(study, series, CT_WINDOWS.get(window, ("", ""))[1])
    context = {
        "study": study,
        "series": series,
        "images": [[sop, frames] for sop, frames in images],
        "total": total,
        "position": position,
        "src": _rendered_src(template, images, position),
        "windows": CT_WINDOWS if series.modality == "CT" else {},
        "window": window if window in CT_WINDOWS else "",
        "template": template,
    }
    return render(request, "studies/series_viewer.html", context)


def _position(raw: str, total: int) -> int:
    """The image asked for, 1 to total; anything else is the nearest image, or the first."""
    try:
        number = int(raw)
    except ValueError:
        return 1
    return min(max(number, 1), max(total, 1))


def _rendered_template(study: object, series: object, window: str) -> str:
    """The rendered frame's URL with SOP and FRAME as placeholders, for the page and script."""
    path = reverse(
        "dicomweb:frames-rendered",
        kwargs={
            "study": study.study_uid,
            "series": series.series_uid,
            "instance": "SOP",
            "frames": "FRAME",
        },
    )
    query = f"{VIEWER_QUERY}&window={window}" if window else VIEWER_QUERY
    return f"{path}?{query}"


def _rendered_src(template: str, images: list[tuple[str, int]], position: int) -> str:
    """The URL of the position-th image, counting every frame of multi-frame instances."""
    for sop, frames in images:
        if position <= frames:
            return template.replace("SOP", sop, 1).replace("FRAME", str(position), 1)
        position -= frames
    return ""


# --- emergency access ----------------------------------------------------------------------


class EmergencyForm(forms.Form):
    reason = forms.CharField(
        min_length=settings.EMERGENCY_REASON_MIN_LENGTH,
        max_length=2000,
        widget=forms.Textarea({"rows": 4}),
        help_text=f"At least {settings.EMERGENCY_REASON_MIN_LENGTH} characters. "
        "The patient is notified and the data protection officer reviews every emergency.",
    )


def _emergency_page(request: HttpRequest, form: EmergencyForm, national_id: str, status: int):
    context = {"form": form, "national_id": national_id, "hours": settings.EMERGENCY_ACCESS_HOURS}
    return render(request, "studies/emergency.html", context, status=status)


@portal_view(Role.PRACTITIONER)
def emergency_form(request: HttpRequest, national_id: str) -> HttpResponse:
    """Only the form (no patient data); the gate decides when it is sent."""
    return _emergency_page(request, EmergencyForm(), national_id, status=200)


@require_POST
@practitioner_page
def emergency_declare(request: HttpRequest, national_id: str) -> HttpResponse:
    form = EmergencyForm(request.POST)
    if not form.is_valid():
        return _emergency_page(request, form, national_id, status=400)
    patient = access_patient_by_national_id(
        request.actor,
        national_id,
        action=gate.EMERGENCY,
        audit_action=Action.EMERGENCY_DECLARE,
        audit_permit=False,
    )
    hours = settings.EMERGENCY_ACCESS_HOURS
    run_service(
        request,
        lambda: emergency.emergency_declare(
            actor=request.actor, patient=patient, reason=form.cleaned_data["reason"]
        ),
        f"Emergency access declared for {hours} hours. The patient will be notified "
        "and the data protection officer will review it.",
        audit_action=Action.EMERGENCY_DECLARE,
        patient=patient,
    )
    return redirect("portal:patient-studies", national_id=patient.national_id)


# --- the patient's own studies -------------------------------------------------------------


@patient_page
def my_studies(request: HttpRequest) -> HttpResponse:
    actor = request.actor
    patient = access_own_record(actor, audit_action=Action.PATIENT_STUDIES_LIST, audit_permit=False)
    decision = access.patient_studies(
        actor, patient=patient, audit_action=Action.PATIENT_STUDIES_LIST
    )
    hidden = hidden_study_uids(patient=patient)
    rows = [
        (study, study.study_uid in hidden, modality_words(study.modality_list()))
        for study in decision.permitted
    ]
    return render(request, "studies/my_studies.html", {"rows": rows})


@require_POST
@patient_page
def my_study_visibility(request: HttpRequest, study_uid: str, hide: bool) -> HttpResponse:
    action = Action.STUDY_HIDE if hide else Action.STUDY_UNHIDE
    patient = access_own_record(request.actor, audit_action=action, audit_permit=False)
    study = selectors.study_get_ref(study_uid)
    if study is None or study.patient_id != patient.pk:
        gate.deny_unknown(request.actor, audit_action=action)
        return not_found(request)
    service = exclusions.study_hide if hide else exclusions.study_unhide
    run_service(
        request,
        lambda: service(actor=request.actor, patient=patient, study_uid=study_uid),
        "The study is hidden from other hospitals, even in an emergency."
        if hide
        else "The study is visible again to hospitals you consented to.",
        audit_action=action,
        patient=patient,
    )
    return redirect("portal:me-studies")
