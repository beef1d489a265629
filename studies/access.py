"""Access helpers on top of the gate: fetch a study, ask the gate, return it or raise."""

from dataclasses import dataclass
from typing import NoReturn

from django.db.models import Q

from anim_gateway.errors import NotFound
from audit.actions import Action
from consent import facts_query, gate
from consent.actors import Actor
from consent.gate import Found
from consent.models import Patient, Role
from studies import fixity, lookups, qido, qido_sql, selectors
from studies.dicom import is_valid_uid
from studies.models import Instance, Series, Study

# How many studies a patient's list may weigh.
MAX_CANDIDATES = 10_000


def access_study(
    actor: Actor,
    *,
    study_uid: str,
    action: str,
    audit_action: str,
    detail: dict | None = None,
    national_id: str | None = None,
) -> Study:
    """The study, if the gate permits the action on it; 404 alike for unknown and hidden.

    With ``national_id`` (a page under a patient's URL), a study of anyone else is unknown
    too, and audited as such: the gate never decides on a patient the request did not name.

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
    if study is None or not _filed_under(study, national_id):
        _unknown_study(actor, study_uid=study_uid, action=action, audit_action=audit_action)
    gate.authorize(
        actor, action, patient=study.patient, study=study, audit_action=audit_action, detail=detail
    )
    return study


def access_study_row(
    actor: Actor, *, study_uid: str, action: str, audit_action: str
) -> lookups.StudyRow:
    """As ``access_study``, for WADO-RS: the study's row from one prepared statement.

    Raises
    ------
    AccessDenied, NotFound
        As ``access_study``.
    """
    if is_valid_uid(study_uid) and gate.looks_up_with_facts(actor):
        # The study found and decided in one statement; when it is not there, the usual
        # path below answers (and audits) as for any unknown study.
        found = gate.authorize_found(
            actor, action, lookup=lookups.study_lookup(study_uid), audit_action=audit_action
        )
        if found is not None:
            return lookups.study_of(found)
    row = lookups.study_row(study_uid) if is_valid_uid(study_uid) else None
    if row is None:
        _unknown_study(actor, study_uid=study_uid, action=action, audit_action=audit_action)
    gate.authorize(actor, action, patient=row.patient, study=row, audit_action=audit_action)
    return row


def _filed_under(study: Study, national_id: str | None) -> bool:
    if national_id is None:
        return True
    return study.patient is not None and study.patient.national_id == national_id


def _unknown_study(actor: Actor, *, study_uid: str, action: str, audit_action: str) -> NoReturn:
    # Only a valid UID is quoted in the audit detail; anything else is not worth keeping.
    quoted = study_uid if is_valid_uid(study_uid) else "invalid"
    gate.deny_unknown(actor, audit_action=audit_action, detail={"study_uid": quoted}, action=action)
    raise NotFound(gate.NOT_FOUND_MESSAGE)


def access_instance(
    actor: Actor, *, study_uid: str, series_uid: str, sop_uid: str, action: str, audit_action: str
) -> Instance:
    """An instance, if the gate permits the action on its study; in one query when it exists.

    The gate decides on the study before anything about the instance is answered: an
    instance of a hidden study is the same 404 as an unknown study; a missing instance of a
    permitted study is 404 "No such instance".

    Raises
    ------
    AccessDenied, NotFound
        As ``access_study``; NotFound for a missing instance of a permitted study.
    """
    instance = None
    if is_valid_uid(study_uid) and is_valid_uid(series_uid) and is_valid_uid(sop_uid):
        qs = Instance.objects.select_related("study__patient", "series").filter(
            sop_instance_uid=sop_uid, series__series_uid=series_uid, study__study_uid=study_uid
        )
        instance = next(iter(qs[:1]), None)
    if instance is None:
        # Decided (and audited) on the study alone, as for any request on it.
        study = access_study(actor, study_uid=study_uid, action=action, audit_action=audit_action)
        return instance_of(study, series_uid=series_uid, sop_uid=sop_uid)
    study = instance.study
    gate.authorize(actor, action, patient=study.patient, study=study, audit_action=audit_action)
    return instance


def access_instance_copy(
    actor: Actor, *, study_uid: str, series_uid: str, sop_uid: str, action: str, audit_action: str
) -> Instance:
    """As ``access_instance``, for a door that reads the instance's stored copy (its frames,
    a rendering, bulk data): a copy that failed its fixity check is refused as a lost one,
    and the refusal audited (``studies.fixity``). Its metadata, from the index, is not.

    Raises
    ------
    AccessDenied, NotFound
        As ``access_instance``.
    ObjectUnavailable
        For a copy that failed its fixity check.
    """
    instance = access_instance(
        actor,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        action=action,
        audit_action=audit_action,
    )
    fixity.refuse_if_failed(actor, instance, study=instance.study, audit_action=audit_action)
    return instance


def access_stored_object(
    actor: Actor, *, study_uid: str, series_uid: str, sop_uid: str, action: str, audit_action: str
) -> lookups.StoredObject:
    """The stored object of an instance (WADO-RS serves its bytes), decided as
    ``access_instance``, in one prepared statement when it exists; refused as a lost one
    when it failed its fixity check, as ``access_instance_copy``.

    Raises
    ------
    AccessDenied, NotFound
        As ``access_instance``.
    ObjectUnavailable
        For a copy that failed its fixity check.
    """
    found = None
    if is_valid_uid(study_uid) and is_valid_uid(series_uid) and is_valid_uid(sop_uid):
        uids = {"study_uid": study_uid, "series_uid": series_uid, "sop_uid": sop_uid}
        if gate.looks_up_with_facts(actor):
            # Found and decided in one statement; when the instance is not there, the
            # study alone is decided below, as for any missing instance.
            lookup = lookups.instance_lookup(**uids)
            hit = gate.authorize_found(actor, action, lookup=lookup, audit_action=audit_action)
            if hit is not None:
                stored = lookups.stored_object_of(hit)
                return _intact(actor, stored, study=hit, sop_uid=sop_uid, audit_action=audit_action)
        else:
            found = lookups.instance_object(**uids)
    if found is None:
        # Decided (and audited) on the study alone; a permitted study lacks this instance,
        # since the statement above matched all three UIDs.
        access_study_row(actor, study_uid=study_uid, action=action, audit_action=audit_action)
        raise NotFound("No such instance in this series.")
    study, stored = found
    gate.authorize(actor, action, patient=study.patient, study=study, audit_action=audit_action)
    return _intact(actor, stored, study=study, sop_uid=sop_uid, audit_action=audit_action)


def _intact(
    actor: Actor,
    stored: lookups.StoredObject,
    *,
    study: gate.StudyRef,
    sop_uid: str,
    audit_action: str,
) -> lookups.StoredObject:
    """The stored object, unless it failed its fixity check (refused, ``studies.fixity``)."""
    if stored.failed:
        fixity.refuse(actor, study=study, sop_uids=[sop_uid], audit_action=audit_action)
    return stored


def series_in(study: Study | lookups.StudyRow, series_uid: str) -> Series:
    """A series of an already authorized study, or 404."""
    series = None
    if is_valid_uid(series_uid):
        series = Series.objects.filter(study_id=study.pk, series_uid=series_uid).first()
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


@dataclass(frozen=True)
class SearchPage:
    """A page of QIDO-RS study results, and whether studies the caller may see follow it."""

    hits: list[selectors.StudyHit]
    more: bool


def studies_search(actor: Actor, *, query: qido.Query) -> SearchPage:
    """The page of studies matching a QIDO-RS query that the actor may see.

    SQL selects the studies in the actor's scope (``_search_scope``: the patients they may
    possibly see, less what is surely not theirs to see) that match the query, newest first,
    with the columns of a result only; the gate decides them in that order, window after
    window, and the page is cut from the permitted ones (``gate.authorize_search``). Offset
    and limit count the studies the actor may see: a study withheld from them (a patient who
    blocked them, a consent that does not cover their institution, a closed record) takes no
    place on a page, so neither a short page nor the "more results" warning tells that it
    matched. ``more`` says whether permitted studies follow the page.
    """
    if actor.role not in (Role.PRACTITIONER, Role.PATIENT):
        # The DPO, administrators and hospital systems search no patient's images.
        gate.refuse(
            actor,
            reason_code="ROLE_NOT_ALLOWED",
            message="Only practitioners and patients search studies.",
            audit_action=Action.STUDY_SEARCH,
            detail=query.describe(),
        )
    decision = gate.authorize_search(
        actor,
        gate.LIST_STUDIES,
        window=_search_window(actor, query),
        offset=query.offset,
        limit=query.limit,
        audit_action=Action.STUDY_SEARCH,
        detail=query.describe(),
    )
    hits = [selectors.study_hit_of(s) if isinstance(s, Found) else s for s in decision.permitted]
    return SearchPage(hits, more=decision.more)


def _search_window(actor: Actor, query: qido.Query) -> gate.SearchWindow:
    """Rows [start, start + count) of the search: for a practitioner on PostgreSQL, a lookup
    that the gate's fact query finds in its own statement; otherwise the studies."""
    if gate.looks_up_with_facts(actor):
        own = actor.institution.pk if actor.institution else None
        scope = qido_sql.Scope(
            patient_ids=(),
            patients_sql=facts_query.VISIBLE_PATIENTS,
            leave_out_hidden=True,
            institution_id=own,
            unreconciled=True,
        )
        return lambda start, count, bare: qido_sql.page_lookup(
            scope=scope, query=query, offset=start, limit=count, bare=bare
        )
    scope = _search_scope(actor)
    return lambda start, count, _bare: selectors.study_page(
        scope=scope, query=query, offset=start, limit=count
    )


def _search_scope(actor: Actor) -> qido_sql.Scope:
    """Studies of the patients the actor may possibly see; for a practitioner, less the
    studies their patient hid from other institutions (rule 5), plus the unreconciled
    studies of the acting institution. A pre-filter: the gate decides every study."""
    patients = tuple(sorted(gate.visible_patient_ids(actor)))
    if actor.role != Role.PRACTITIONER:
        return qido_sql.Scope(patient_ids=patients)  # a patient sees their own, hidden or not
    own = actor.institution.pk if actor.institution else None
    return qido_sql.Scope(
        patient_ids=patients, leave_out_hidden=True, institution_id=own, unreconciled=True
    )


def patient_studies(actor: Actor, *, patient: Patient, audit_action: str) -> gate.StudyListDecision:
    """A patient's studies that the actor may see, and which institutions withheld theirs."""
    studies = selectors.study_list(scope=Q(patient=patient), query=None, limit=MAX_CANDIDATES)
    return gate.authorize_studies(
        actor, gate.LIST_STUDIES, studies=studies, audit_action=audit_action, patient=patient
    )
