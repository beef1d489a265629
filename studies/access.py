"""Access helpers on top of the gate: fetch a study, ask the gate, return it or raise."""

from django.db.models import Q

from anim_gateway.errors import NotFound
from audit.actions import Action
from consent import gate
from consent.actors import Actor
from consent.models import Patient, Role
from studies import qido, selectors
from studies.dicom import is_valid_uid
from studies.models import Instance, Series, Study

# How many candidate studies one query may weigh; beyond it the caller must narrow the query.
MAX_CANDIDATES = 10_000


def access_study(
    actor: Actor, *, study_uid: str, action: str, audit_action: str, detail: dict | None = None
) -> Study:
    """The study, if the gate permits the action on it; 404 alike for unknown and hidden.

    Raises
    ------
    AccessDenied
        From the gate (403 with the reason, 404 for a study the patient hid).
    NotFound
        For an unknown study UID (audited as a deny).
    """
    study = None
    if is_valid_uid(study_uid):
        study = Study.objects.select_related("patient", "institution").filter(study_uid=study_uid)
        study = study.first()
    if study is None:
        # Only a valid UID is quoted in the audit detail; anything else is not worth keeping.
        quoted = study_uid if is_valid_uid(study_uid) else "invalid"
        gate.deny_unknown(actor, audit_action=audit_action, detail={"study_uid": quoted})
        raise NotFound(gate.NOT_FOUND_MESSAGE)
    gate.authorize(
        actor, action, patient=study.patient, study=study, audit_action=audit_action, detail=detail
    )
    return study


def series_in(study: Study, series_uid: str) -> Series:
    """A series of an already authorized study, or 404."""
    series = None
    if is_valid_uid(series_uid):
        series = Series.objects.filter(study=study, series_uid=series_uid).first()
    if series is None:
        raise NotFound("No such series in this study.")
    return series


def instance_of(study: Study, *, series_uid: str, sop_uid: str) -> Instance:
    """An instance of an already authorized study, by series and SOP UIDs, in one query."""
    instance = None
    if is_valid_uid(series_uid) and is_valid_uid(sop_uid):
        instance = (
            Instance.objects.select_related("series")
            .filter(study=study, series__series_uid=series_uid, sop_instance_uid=sop_uid)
            .first()
        )
    if instance is None:
        raise NotFound("No such instance in this series.")
    return instance


def studies_search(actor: Actor, *, query: qido.Query) -> list[Study]:
    """The page of studies matching a QIDO-RS query that the actor may see.

    SQL keeps only studies of patients the actor may possibly see (and, for a practitioner,
    the unreconciled studies of the acting institution); the gate then decides each one,
    over a window a little larger than the page. Only when the gate withholds so many that
    the page comes out short is a wider window decided (and audited) again.
    """
    visible = gate.visible_patient_ids(actor)
    scope = Q(patient_id__in=visible)
    if actor.role == Role.PRACTITIONER and actor.institution is not None:
        scope |= Q(patient__isnull=True, institution=actor.institution)
    wanted = query.offset + query.limit
    # A margin of 10% (at least 20) for studies the gate drops; hidden ones are rare.
    window = min(wanted + max(20, wanted // 10), MAX_CANDIDATES)
    while True:
        candidates = selectors.study_list(scope=scope, query=query, limit=window)
        decision = gate.authorize_studies(
            actor,
            gate.LIST_STUDIES,
            studies=candidates,
            audit_action=Action.STUDY_SEARCH,
            detail=query.describe(),
        )
        exhausted = len(candidates) < window or window == MAX_CANDIDATES
        if len(decision.permitted) >= wanted or exhausted:
            return decision.permitted[query.offset : wanted]
        window = min(window * 4, MAX_CANDIDATES)


def patient_studies(actor: Actor, *, patient: Patient, audit_action: str) -> gate.StudyListDecision:
    """A patient's studies that the actor may see, and which institutions withheld theirs."""
    studies = selectors.study_list(scope=Q(patient=patient), query=None, limit=MAX_CANDIDATES)
    return gate.authorize_studies(
        actor, gate.LIST_STUDIES, studies=studies, audit_action=audit_action
    )
