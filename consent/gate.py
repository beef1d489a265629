"""The one door: load the facts, ask the policy, write the audit event, then permit or raise.

Fail closed: any error while loading, deciding or auditing is a deny. Nothing is cached
across calls, so a revocation holds from the next call on.

The audit row of a decision must survive the request even when the request then fails,
so the gate must not run inside a caller's transaction (which would roll the row back
with it): called inside one, it denies with ``GATE_ERROR``. Views call the gate first and
the writing service afterwards. ATOMIC_REQUESTS is off for the same reason.

Errors: a policy deny is 403 with the reason code, except ``STUDY_HIDDEN`` which is 404
with the not-found body; ``GATE_ERROR`` (deciding failed) is 403; ``AUDIT_UNAVAILABLE``
(the audit log could not be written) is 503, since retrying later may succeed.
"""

import contextvars
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, NoReturn, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import status

from anim_gateway.errors import ApplicationError
from audit.errors import AuditUnavailable
from consent import facts_query, policy, selectors
from consent.actors import Actor
from consent.auditing import audit_event, audit_events
from consent.models import (
    Affiliation,
    CareRelationship,
    Consent,
    EmergencyAccess,
    Exclusion,
    Institution,
    Patient,
    Role,
    SharedRecord,
    StudyVisibility,
)
from consent.policy import ConsentFact, Decision, Facts, Period

logger = logging.getLogger(__name__)

LIST_STUDIES = policy.LIST_STUDIES
VIEW_IMAGES = policy.VIEW_IMAGES
STORE = policy.STORE
EMERGENCY = policy.EMERGENCY
MANAGE_RECORD = policy.MANAGE_RECORD
ASSERT_CARE = policy.ASSERT_CARE
REVIEW_EMERGENCY = policy.REVIEW_EMERGENCY

NOT_FOUND_MESSAGE = "No such study."
NO_SUCH_PATIENT = "No such patient."
# A patient's denies on a record that is not theirs (nor one they represent).
_NOT_THEIRS = ("NOT_OWN_RECORD", "NOT_REPRESENTATIVE")
# Denies that depend on the actor alone (checks 1 and 2 of the rule), whatever the patient.
_ACTOR_REFUSALS = ("NOT_AFFILIATED", "PROFESSION_NOT_ALLOWED")


class StudyRef(Protocol):
    """Anything that says which study, made where, of which patient (None: unreconciled)."""

    study_uid: str
    institution_id: int
    patient_id: int | None


class AccessDenied(ApplicationError):
    """A deny of the gate; ``decision`` keeps the real reason (the audit row has it too)."""

    status_code = status.HTTP_403_FORBIDDEN

    def __init__(
        self, decision: Decision, *, conceal: bool = False, not_found: str = NOT_FOUND_MESSAGE
    ):
        self.decision = decision
        if conceal or decision.reason_code in ("STUDY_HIDDEN", "NOT_FOUND"):
            # Its existence is not revealed: the same body as a study (or a patient, as
            # ``not_found`` says) that is not there.
            super().__init__(not_found, code="NOT_FOUND", status_code=404)
            return
        message = f"{decision.message} {decision.remedy}".strip()
        status_code = 503 if decision.reason_code == "AUDIT_UNAVAILABLE" else 403
        super().__init__(message, code=decision.reason_code, status_code=status_code)


@dataclass(frozen=True)
class StudyListDecision:
    permitted: list
    # (institution code, reason code) of institutions whose studies were withheld; studies
    # hidden by the patient are never mentioned.
    withheld: list[tuple[str, str]]
    # Permitted studies follow the page (authorize_search).
    more: bool = False
    # Per (patient, institution), the decision their permitted studies rest on: what the
    # patients' events of a list of several patients record.
    bases: dict[tuple[int | None, int], Decision] = field(default_factory=dict)


# Set by consent.access.serves_patient_data around a view: did this request consult the gate?
_consulted: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "gate_consulted", default=None
)


def authorize(
    actor: Actor,
    action: str,
    *,
    patient: Patient | None,
    study: StudyRef | None = None,
    audit_action: str,
    detail: dict | None = None,
    audit_permit: bool = True,
) -> Decision:
    """Decide one action on one patient (and optionally one study), audit it, permit or raise.

    Parameters
    ----------
    actor
        Who acts, in which role, for which institution (``request.auth``).
    action
        A policy action (``gate.VIEW_IMAGES``...).
    patient
        The patient acted on; None only with an unreconciled study.
    study
        The study, when one is involved: its performing institution is J in the rule.
    audit_action
        The audit code of the event (``audit.actions.Action``).
    detail
        Extra, non-identifying detail for the audit event.
    audit_permit
        False when the caller is a service that writes its own event for the permitted
        change, in its transaction; denies are always audited here.

    Raises
    ------
    AccessDenied
        On every deny, including errors while deciding or auditing.
    """
    _mark_consulted()
    national_id = patient.national_id if patient else ""
    study_uid = study.study_uid if study else ""
    conceal = False
    try:
        _refuse_inside_transaction()
        decision, conceal = _decide_one(actor, action, patient=patient, study=study)
    except Exception:
        logger.exception("The gate failed while deciding %s", action)
        decision = _error_decision("GATE_ERROR", "Access could not be decided; it is denied.")
    if decision.permit and not audit_permit:
        return decision
    return _audited_or_denied(
        actor,
        decision,
        audit_action,
        national_id,
        study_uid=study_uid,
        detail=detail,
        conceal=conceal,
        not_found=NOT_FOUND_MESSAGE if study is not None else NO_SUCH_PATIENT,
    )


def _audited_or_denied(
    actor: Actor,
    decision: Decision,
    audit_action: str,
    national_id: str,
    *,
    study_uid: str,
    detail: dict | None,
    conceal: bool,
    not_found: str = NOT_FOUND_MESSAGE,
) -> Decision:
    """Audit one decision; raise AccessDenied unless it (and its audit) permitted."""
    audited = _audited(
        actor, decision, audit_action, national_id, study_uid=study_uid, detail=detail or {}
    )
    if not audited.permit:
        # The audit row keeps the real reason; the answer may be the not-found one.
        conceal = conceal and audited is decision
        raise AccessDenied(audited, conceal=conceal, not_found=not_found)
    return audited


def authorize_studies(
    actor: Actor,
    action: str,
    *,
    studies: Sequence[StudyRef],
    audit_action: str,
    detail: dict | None = None,
    patient: Patient | None = None,
) -> StudyListDecision:
    """Decide each study of a list or query with the same facts; one audit event for all,
    about ``patient`` when the list is theirs (even empty: the patient was looked at).

    The facts of every patient involved are loaded in a fixed number of queries.

    Raises
    ------
    AccessDenied
        When deciding or auditing fails (never because some studies were withheld).
    """
    _mark_consulted()
    national_id = patient.national_id if patient else ""
    _refuse_role(actor, action, audit_action, national_id, detail=detail)
    overall = None
    try:
        _refuse_inside_transaction()
        national_ids: dict[int, str] = {}
        facts = load_facts(
            actor,
            patient_ids=[s.patient_id for s in studies] + ([patient.pk] if patient else []),
            study_uids=[s.study_uid for s in studies],
            institution_ids=[s.institution_id for s in studies],
            national_ids=national_ids,
        )
        result, hidden = _decided_many(action, studies, facts)
        # The decision on the patient's list as a whole: its basis when no study is permitted.
        overall = policy.decide(facts[patient.pk], action=action) if patient else None
        outcome = _permitted_of(result, studies)
        national_id = national_id or _one_patient(studies, national_ids)
    except Exception:
        logger.exception("The gate failed while deciding a list of %s", action)
        result, hidden = StudyListDecision([], []), 0
        outcome = _error_decision("GATE_ERROR", "Access could not be decided; it is denied.")
    return _list_audited(
        actor,
        outcome,
        result,
        studies,
        hidden,
        audit_action,
        national_id,
        detail=detail,
        overall=overall,
    )


def _refuse_role(
    actor: Actor, action: str, audit_action: str, national_id: str, *, detail: dict | None
) -> None:
    """Refuse a list or search to a role that may never perform the action, before any
    study is decided: not one is mentioned, withheld or otherwise.

    Raises
    ------
    AccessDenied
        For such a role (audited as a deny).
    """
    refusal = policy.role_refusal(actor.role, action)
    if refusal is not None:
        audited = _audited(
            actor, refusal, audit_action, national_id, study_uid="", detail=detail or {}
        )
        raise AccessDenied(audited)


def _permitted_of(result: StudyListDecision, studies: Sequence[StudyRef]) -> Decision:
    message = f"{len(result.permitted)} of {len(studies)} studies permitted."
    return Decision(permit=True, reason_code="", message=message)


def _one_patient(studies: Sequence[StudyRef], national_ids: dict[int, str]) -> str:
    """The national identifier of the list's one patient (a patient's list: the event is
    about them), or "" for a list of several patients or unreconciled studies."""
    patients = {s.patient_id for s in studies}
    if len(patients) != 1 or None in patients:
        return ""
    (pid,) = patients
    return national_ids.get(pid) or _national_ids({pid}).get(pid, "")


def _list_audited(
    actor: Actor,
    outcome: Decision,
    result: StudyListDecision,
    studies: Sequence[StudyRef],
    hidden: int,
    audit_action: str,
    national_id: str,
    *,
    detail: dict | None,
    national_ids: dict[int, str] | None = None,
    overall: Decision | None = None,
) -> StudyListDecision:
    """Audit a list's decision with its counts; raise unless it was permitted.

    A list of several patients' studies is one event without a patient, and one event per
    patient whose studies it returned, about them: each patient's access log, and the DPO's
    search by patient, show the search that found their studies.

    A list of one patient's studies is about them, with the basis (and basis ids) its
    studies were permitted on, as any gated read: one event per basis when they were
    permitted on several; with no study permitted, the basis of ``overall`` (the decision on
    the patient's list as a whole) when it permitted."""
    counts = {
        "studies": len(studies),
        "permitted": len(result.permitted),
        "withheld": [list(w) for w in result.withheld],
        "hidden": hidden,
    }
    detail = {**(detail or {}), **counts}
    also: list[dict] = []
    if outcome.permit:
        try:
            if national_id:
                outcome, detail, also = _one_patient_events(
                    outcome, result, overall, audit_action, national_id, detail
                )
            else:
                also = _per_patient_events(result, audit_action, national_ids or {})
        except Exception:
            # Studies that cannot be attributed in the log are not served.
            logger.exception("The gate failed while naming the patients or bases of a list")
            outcome = _error_decision("GATE_ERROR", "Access could not be recorded; it is denied.")
    outcome = _audited(
        actor,
        outcome,
        audit_action,
        national_id,
        study_uid="",
        detail=detail,
        also=also,
    )
    if not outcome.permit:
        raise AccessDenied(outcome)
    return result


def _one_patient_events(
    outcome: Decision,
    result: StudyListDecision,
    overall: Decision | None,
    audit_action: str,
    national_id: str,
    detail: dict,
) -> tuple[Decision, dict, list[dict]]:
    """The list's decision and detail with the basis of its (first) permitted studies, and
    the fields of one more event per further basis they were permitted on; when there are
    several, each event names its studies."""
    groups = _basis_groups(result)
    if not groups:
        basis = overall if overall is not None and overall.permit else outcome
        return replace(outcome, basis=basis.basis, basis_ids=basis.basis_ids), detail, []
    (_, first, uids), *others = groups
    also = [
        {
            "action": audit_action,
            "outcome": "permit",
            "patient": national_id,
            "basis": decision.basis,
            "basis_ids": decision.basis_ids,
            "message": f"{outcome.message} {len(returned)} of them on this basis.",
            "detail": {**detail, "returned": returned},
        }
        for _, decision, returned in others
    ]
    if others:
        detail = {**detail, "returned": uids}
    return replace(outcome, basis=first.basis, basis_ids=first.basis_ids), detail, also


def _basis_groups(result: StudyListDecision) -> list[tuple[int | None, Decision, list[str]]]:
    """(patient, decision, study UIDs) per patient and per basis (and basis ids) that the
    list's permitted studies rest on (a patient's own hospital's studies and another's,
    say), in the order of the list."""
    groups: dict[tuple, tuple[int | None, Decision, list[str]]] = {}
    for study in result.permitted:
        decision = result.bases[(study.patient_id, study.institution_id)]
        ids = tuple(sorted(decision.basis_ids.items()))
        key = (study.patient_id, decision.basis, ids)
        groups.setdefault(key, (study.patient_id, decision, []))[2].append(study.study_uid)
    return list(groups.values())


def _per_patient_events(
    result: StudyListDecision, audit_action: str, national_ids: dict[int, str]
) -> list[dict]:
    """One event's fields per patient whose studies the list returned and per basis they
    were permitted on, in order."""
    groups = [group for group in _basis_groups(result) if group[0] is not None]
    missing = {pid for pid, _, _ in groups} - set(national_ids)
    known = {**national_ids, **(_national_ids(missing) if missing else {})}
    return [
        {
            "action": audit_action,
            "outcome": "permit",
            "basis": decision.basis,
            "basis_ids": decision.basis_ids,
            "patient": known[pid],
            "message": f"{len(uids)} of the patient's studies were in the results.",
            "detail": {"returned": uids},
        }
        for pid, decision, uids in groups
    ]


class Found(NamedTuple):
    """A study a lookup found (a StudyRef), with the lookup's own columns."""

    pk: int
    study_uid: str
    institution_id: int
    patient_id: int | None
    extra: list[str]


def looks_up_with_facts(actor: Actor) -> bool:
    """Whether ``authorize_found`` and a search's lookups serve this actor: a
    practitioner, on PostgreSQL. Otherwise the caller looks the study up, then authorizes."""
    return (
        actor.role == Role.PRACTITIONER
        and actor.practitioner is not None
        and facts_query.folds_lookups()
    )


def authorize_found(
    actor: Actor,
    action: str,
    *,
    lookup: facts_query.Lookup,
    audit_action: str,
    detail: dict | None = None,
) -> Found | None:
    """As ``authorize``, on the one study the lookup finds, found in the fact query's own
    statement (one round trip less than looking it up first).

    Returns None when the lookup finds nothing, with nothing audited: the caller answers
    as for any unknown study (``deny_unknown``, or ``authorize`` on what it finds itself).

    Raises
    ------
    AccessDenied
        On every deny, including errors while deciding or auditing.
    """
    _mark_consulted()
    national_ids: dict[int, str] = {}
    study, conceal = None, False
    try:
        _refuse_inside_transaction()
        facts, found = _facts_and_found(actor, lookup, national_ids=national_ids)
        if not found:
            return None
        if len(found) > 1:
            raise ValueError(f"the lookup found {len(found)} studies where one was asked for")
        study = found[0]
        decision, conceal = _decide_found(actor, action, facts, study)
    except Exception:
        logger.exception("The gate failed while deciding %s", action)
        decision = _error_decision("GATE_ERROR", "Access could not be decided; it is denied.")
    _audited_or_denied(
        actor,
        decision,
        audit_action,
        national_ids.get(study.patient_id, "") if study else "",
        study_uid=study.study_uid if study else lookup.study_uid,
        detail=detail,
        conceal=conceal,
    )
    return study


# A search decides at most this many studies to fill a page with permitted ones: beyond,
# the page may come short, and ``more`` says that studies follow.
MAX_SEARCH_DECIDED = 20_000

# The studies of rows [start, start + count) of a search in its order, the first ``bare``
# of them without their result's columns (rows before the offset, which never land on the
# page): a list, or a lookup found in the fact query's own statement (a practitioner on
# PostgreSQL).
SearchWindow = Callable[[int, int, int], "Sequence[StudyRef] | facts_query.Lookup"]


def authorize_search(
    actor: Actor,
    action: str,
    *,
    window: SearchWindow,
    offset: int,
    limit: int,
    audit_action: str,
    detail: dict | None = None,
) -> StudyListDecision:
    """A page of the permitted studies of a search: ``offset`` and ``limit`` count studies
    the actor may see, so a study withheld from them never takes a place on a page, and
    neither a gap nor ``more`` tells that one matched the search. One audit event.

    The search's rows are decided in order, window after window, until the page and one
    study beyond it are permitted (``more``) or the rows end: one window, one statement,
    unless studies are withheld. The first ``offset`` rows can never be on the page, and
    are read without their result's columns.

    Raises
    ------
    AccessDenied
        When deciding or auditing fails (never because some studies were withheld).
    """
    _mark_consulted()
    _refuse_role(actor, action, audit_action, "", detail=detail)
    national_ids: dict[int, str] = {}
    try:
        _refuse_inside_transaction()
        permitted, withheld, hidden, decided, bases = [], set(), 0, [], {}
        wanted = offset + limit + 1
        start, count = 0, min(wanted, MAX_SEARCH_DECIDED)
        while True:
            rows = window(start, count, max(0, offset - start))
            studies, result, hid = _decided_window(actor, action, rows, national_ids)
            permitted += result.permitted
            withheld.update(result.withheld)
            bases.update(result.bases)
            hidden, decided = hidden + hid, decided + list(studies)
            done = len(permitted) >= wanted or len(studies) < count
            if done or len(decided) >= MAX_SEARCH_DECIDED:
                break
            # Windows grow: many withheld studies cost few statements.
            start, count = start + count, min(2 * count, MAX_SEARCH_DECIDED - len(decided))
        page = permitted[offset : offset + limit]
        more = len(permitted) > offset + limit or not done
        result = StudyListDecision(page, sorted(withheld), more, bases)
        # The event is about one patient when every study decided is theirs.
        national_id = _one_patient(decided, national_ids)
        outcome = _permitted_of(result, page)
        counts = {"decided": len(decided)}
    except _RefusedWhoever as refused:
        # As for a patient or study named in a URL (deny_unknown): one deny, about no one.
        decision = refused.decision
        raise AccessDenied(
            _audited(actor, decision, audit_action, "", study_uid="", detail=detail or {})
        ) from None
    except Exception:
        logger.exception("The gate failed while deciding a search of %s", action)
        page, national_id, counts = [], "", {}
        result, hidden = StudyListDecision([], []), 0
        outcome = _error_decision("GATE_ERROR", "Access could not be decided; it is denied.")
    return _list_audited(
        actor,
        outcome,
        result,
        page,
        hidden,
        audit_action,
        national_id,
        detail={**(detail or {}), **counts},
        national_ids=national_ids,
    )


class _RefusedWhoever(Exception):
    """A search's actor is refused whoever the patients (``_refused_whoever``): so is the
    whole search, before any study is decided or mentioned."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason_code)
        self.decision = decision


def _decided_window(
    actor: Actor,
    action: str,
    studies: "Sequence[StudyRef] | facts_query.Lookup",
    national_ids: dict[int, str],
) -> tuple[Sequence[StudyRef], StudyListDecision, int]:
    """The studies of one window of a search, decided: (studies, decision, hidden).

    Raises
    ------
    _RefusedWhoever
        When the actor is refused whoever the patient, read from the window's own facts
        (no query more).
    """
    if isinstance(studies, facts_query.Lookup):
        facts, found = _facts_and_found(actor, studies, national_ids=national_ids)
        found.sort(key=lambda study: study.pk)
    else:
        found = list(studies)
        facts = load_facts(
            actor,
            patient_ids=[s.patient_id for s in found],
            study_uids=[s.study_uid for s in found],
            institution_ids=[s.institution_id for s in found],
            national_ids=national_ids,
        )
    refusal = _refused_whoever(facts, action)
    if refusal is not None:
        raise _RefusedWhoever(refusal)
    return found, *_decided_many(action, found, facts)


def deny_unknown(
    actor: Actor, *, audit_action: str, detail: dict | None = None, action: str = ""
) -> None:
    """Audit a request for an unknown patient or study as a deny; the caller answers 404.

    An actor whose role may never perform ``action``, or who is refused it whatever the
    patient (checks 1 and 2: no affiliation at the acting institution, a profession that
    may not), is refused for that (403), as for a patient or study that exists: the answer
    does not tell whether it exists.

    Raises
    ------
    AccessDenied
        For an actor refused ``action`` whatever the patient, and when the audit log is
        unavailable.
    """
    refusal = policy.role_refusal(actor.role, action) if action else None
    if refusal is None and action:
        refusal = _refused_whoever_unknown(actor, action)
    if refusal is not None:
        raise AccessDenied(
            _audited(actor, refusal, audit_action, "", study_uid="", detail=detail or {})
        )
    decision = Decision(False, "NOT_FOUND", "No such patient or study.")
    decision = _audited(actor, decision, audit_action, "", study_uid="", detail=detail or {})
    if decision.reason_code != "NOT_FOUND":
        raise AccessDenied(decision)


def _refused_whoever_unknown(actor: Actor, action: str) -> Decision | None:
    """The deny of ``action`` that holds for any patient (``_refused_whoever``), decided on
    the actor's facts alone; a failure to decide is a deny."""
    try:
        return _refused_whoever(load_facts(actor, patient_ids=[]), action)
    except Exception:
        logger.exception("The gate failed while deciding %s", action)
        return _error_decision("GATE_ERROR", "Access could not be decided; it is denied.")


def _refused_whoever(facts: dict[int | None, Facts], action: str) -> Decision | None:
    """The deny of ``action`` that depends on the actor alone (checks 1 and 2 of the rule),
    or None. It holds for every patient and study, registered, hidden or unknown, and is
    given alike for all of them: it tells nothing about which exist."""
    decision = policy.decide(facts[None], action=action)
    if not decision.permit and decision.reason_code in _ACTOR_REFUSALS:
        return decision
    return None


def refuse(
    actor: Actor,
    *,
    reason_code: str,
    message: str,
    audit_action: str,
    patient: Patient | None = None,
    detail: dict | None = None,
) -> NoReturn:
    """Audit and raise a deny found outside the rule's facts (e.g. about the request's input).

    Raises
    ------
    AccessDenied
        Always.
    """
    decision = Decision(False, reason_code, message)
    national_id = patient.national_id if patient else ""
    raise AccessDenied(
        _audited(actor, decision, audit_action, national_id, study_uid="", detail=detail or {})
    )


def visible_patient_ids(actor: Actor) -> set[int]:
    """Patients the actor may possibly see now (care relationship or emergency access).

    A pre-filter for SQL (QIDO); the gate still decides every study. Unreconciled studies of
    the acting institution are visible too and must be added by the caller's query.
    """
    if actor.role == Role.PATIENT:
        return {actor.patient.pk} if actor.patient else set()
    if actor.role != Role.PRACTITIONER or actor.practitioner is None:
        return set()
    now = timezone.now()
    institution_id = actor.institution.pk if actor.institution else None
    prepared = facts_query.visible_patient_ids(
        practitioner_id=actor.practitioner.pk, institution_id=institution_id, now=now
    )
    if prepared is not None:
        return prepared
    care = CareRelationship.objects.filter(practitioner=actor.practitioner, start__lte=now)
    care = care.filter(end__gt=now).filter(Q(ended_at__isnull=True) | Q(ended_at__gt=now))
    emergencies = EmergencyAccess.objects.filter(
        practitioner=actor.practitioner,
        institution=actor.institution,
        start__lte=now,
        expires_at__gt=now,
    )
    return set(care.values_list("patient_id", flat=True)) | set(
        emergencies.values_list("patient_id", flat=True)
    )


def _decide_one(
    actor: Actor, action: str, *, patient: Patient | None, study: StudyRef | None
) -> tuple[Decision, bool]:
    """The decision, and whether a deny must look like an unknown study (404)."""
    refusal = policy.role_refusal(actor.role, action)
    if refusal is not None:
        return refusal, False  # whatever the patient or study: it reveals neither
    patient_id = patient.pk if patient else None
    uids = [study.study_uid] if study else []
    facts = load_facts(actor, patient_ids=[patient_id], study_uids=uids)
    refusal = _refused_whoever(facts, action)
    if refusal is not None:
        return refusal, False  # as for an unknown patient or study (deny_unknown)
    if study is not None and patient is not None and study.patient_id != patient.pk:
        # A study of another patient than the one in the URL: it is not there for this one.
        return Decision(False, "NOT_FOUND", NOT_FOUND_MESSAGE), True
    if study is not None and patient is None and study.patient_id is not None:
        return Decision(False, "NOT_FOUND", NOT_FOUND_MESSAGE), True
    if study is not None:
        return _decide_found(actor, action, facts, study)
    decision = policy.decide(facts[patient_id], action=action)
    # A patient account may not learn that a national identifier is registered: another
    # patient's record gets the answer of an unknown one.
    conceal = actor.role == Role.PATIENT and decision.reason_code in _NOT_THEIRS
    return decision, conceal


def _decide_found(
    actor: Actor, action: str, facts: dict[int | None, Facts], study: StudyRef
) -> tuple[Decision, bool]:
    """The decision on one study, and whether a deny must look like an unknown study."""
    refusal = policy.role_refusal(actor.role, action) or _refused_whoever(facts, action)
    if refusal is not None:
        return refusal, False  # hidden or not, as for an unknown study (deny_unknown)
    facts_of = facts[study.patient_id]
    decision = policy.decide(
        facts_of,
        action=action,
        study_institution_id=study.institution_id,
        study_uid=study.study_uid,
    )
    return decision, _conceals(actor, facts_of, study)


def _conceals(actor: Actor, facts: Facts, study: StudyRef) -> bool:
    """Whether a deny on this study must not reveal that it exists.

    A study the patient hid stays unknown whatever check failed first (rule 5 must not be
    given away by rule 4), and only practitioners learn that a study exists but is withheld.
    """
    return actor.role != Role.PRACTITIONER or _hidden_from(facts, study)


def _hidden_from(facts: Facts, study: StudyRef) -> bool:
    shared = study.institution_id != facts.acting_institution_id
    return shared and study.study_uid in facts.hidden_study_uids


def _decided_many(
    action: str, studies: Sequence[StudyRef], facts: dict[int | None, Facts]
) -> tuple[StudyListDecision, int]:
    permitted, withheld, hidden, bases = [], set(), 0, {}
    # A study's decision depends on its patient and institution, and on its UID only when
    # the patient hid it: decided once per patient and institution otherwise (a search
    # decides up to MAX_SEARCH_DECIDED studies).
    same: dict[tuple[int | None, int], Decision] = {}
    for study in studies:
        facts_of = facts[study.patient_id]
        key = (study.patient_id, study.institution_id)
        decision = None if study.study_uid in facts_of.hidden_study_uids else same.get(key)
        if decision is None:
            decision = policy.decide(
                facts_of,
                action=action,
                study_institution_id=study.institution_id,
                study_uid=study.study_uid,
            )
            if study.study_uid not in facts_of.hidden_study_uids:
                same[key] = decision
        if decision.permit:
            permitted.append(study)
            bases[key] = decision
        elif _hidden_from(facts_of, study):
            # Never mentioned, whichever check failed first (rule 5 is not given away).
            hidden += 1
        else:
            withheld.add((facts_of.code(study.institution_id), decision.reason_code))
    return StudyListDecision(permitted, sorted(withheld), bases=bases), hidden


def load_facts(
    actor: Actor,
    *,
    patient_ids: Iterable[int | None],
    study_uids: Iterable[str] = (),
    institution_ids: Iterable[int] = (),
    national_ids: dict[int, str] | None = None,
) -> dict[int | None, Facts]:
    """The facts of the rule for the actor and each patient, at one instant, in a fixed
    number of queries (one for a practitioner, whatever the number of patients or studies).

    For a practitioner, ``national_ids`` (when given) is filled with the patients' national
    identifiers, read by the same query for the audit event."""
    now = timezone.now()
    common = _common(actor, now)
    codes = common["institution_codes"]
    missing_codes = set(institution_ids) - set(codes) - {None}
    per_patient: dict[int, dict] = {pid: {} for pid in patient_ids if pid is not None}
    if actor.role == Role.PRACTITIONER and actor.practitioner is not None:
        wanted = _Wanted(sorted(set(study_uids)), sorted(missing_codes), codes, national_ids)
        rows = facts_query.practitioner_rows(
            practitioner_id=actor.practitioner.pk,
            institution_id=common["acting_institution_id"],
            patient_ids=sorted(per_patient),
            study_uids=wanted.study_uids,
            institution_ids=wanted.institution_ids,
            now=now,
        )
        common.update(_practitioner_facts(actor, rows, per_patient, wanted, now))
    else:
        codes.update(_codes(missing_codes))
        if actor.role == Role.PATIENT and actor.patient is not None:
            common.update(_patient_base(actor))
    return _built(common, per_patient)


def _facts_and_found(
    actor: Actor, lookup: facts_query.Lookup, *, national_ids: dict[int, str]
) -> tuple[dict[int | None, Facts], list[Found]]:
    """The facts of ``load_facts`` (a practitioner's) for the studies the lookup finds, and
    those studies, from one statement."""
    now = timezone.now()
    common = _common(actor, now)
    rows = facts_query.rows_with_lookup(
        practitioner_id=actor.practitioner.pk,
        institution_id=common["acting_institution_id"],
        lookup=lookup,
        now=now,
    )
    found = [Found(r.id, r.text, r.ref, r.patient_id, r.extra) for r in rows if r.kind == "fnd"]
    per_patient: dict[int, dict] = {f.patient_id: {} for f in found if f.patient_id is not None}
    wanted = _Wanted([], [], common["institution_codes"], national_ids)
    common.update(_practitioner_facts(actor, rows, per_patient, wanted, now))
    return _built(common, per_patient), found


def _common(actor: Actor, now) -> dict:
    """The facts every patient shares: who acts, where, when."""
    codes = {actor.institution.pk: actor.institution.code} if actor.institution else {}
    return {
        "role": actor.role,
        "now": now,
        "acting_institution_id": actor.institution.pk if actor.institution else None,
        "institution_codes": codes,
    }


def _built(common: dict, per_patient: dict[int, dict]) -> dict[int | None, Facts]:
    # Built once each, not copied with dataclasses.replace: this runs on every decision.
    facts = {pid: Facts(**common, patient_id=pid, **own) for pid, own in per_patient.items()}
    facts[None] = Facts(**common)
    return facts


def _codes(institution_ids: set[int]) -> dict[int, str]:
    if not institution_ids:
        return {}
    found = facts_query.institution_codes(institution_ids)
    if found is None:
        found = Institution.objects.filter(pk__in=institution_ids).values_list("pk", "code")
    return dict(found)


class _Wanted(NamedTuple):
    """What the practitioner's fact query reads besides the rule's own facts, and where
    it puts them."""

    study_uids: list[str]
    institution_ids: list[int]  # whose codes are missing from `codes`
    codes: dict[int, str]
    national_ids: dict[int, str] | None


# The Facts field each kind of dated row of the fact query fills.
_PERIODS = {"exc": "exclusions", "emg": "emergencies", "car": "care_relationships"}


def _practitioner_facts(
    actor: Actor,
    rows: list[facts_query.Row],
    per_patient: dict[int, dict],
    wanted: _Wanted,
    now,
) -> dict:
    """Fill ``per_patient`` (and the codes and national identifiers ``wanted``) from the
    rows of the one fact query; return the practitioner's own facts."""
    affiliations, consents = [], {}
    for row in rows:
        if row.kind == "fnd":  # a lookup's study, read by the caller
            continue
        if row.kind == "ins":
            wanted.codes[row.id] = row.text
            continue
        if row.kind == "nid":
            if wanted.national_ids is not None:
                wanted.national_ids[row.patient_id] = row.text
            continue
        row = _in_effect(row, now=now)
        if row.kind == "aff":
            affiliations.append(Period(row.id, row.start, row.end))
            continue
        own = per_patient[row.patient_id]
        if row.kind == "rec":
            own["record_active"] = row.text == "active"
        elif row.kind == "hid":
            own.setdefault("hidden_study_uids", set()).add(row.text)
        elif row.kind == "con":
            # One row per covered institution (LEFT JOIN): gather them per consent.
            consents.setdefault(row.id, (row, set()))[1].add(row.ref)
        else:
            own.setdefault(_PERIODS[row.kind], []).append(
                Period(row.id, row.start, row.end, row.revoked)
            )
    _add_consents(per_patient, consents.values())
    for own in per_patient.values():
        _freeze(own)
    return {
        "affiliations": tuple(affiliations),
        "profession": actor.practitioner.profession,
        "profession_actions": settings.PROFESSION_ACTIONS,
    }


def _add_consents(per_patient: dict[int, dict], consents: Iterable[tuple]) -> None:
    by_patient = defaultdict(list)
    for row, institutions in consents:
        institutions.discard(None)  # the LEFT JOIN row of a consent listing no institution
        by_patient[row.patient_id].append(
            ConsentFact(
                id=row.id,
                start=row.start,
                end=row.end,
                revoked_at=row.revoked,
                all_members=bool(row.flag),
                allow_emergency=bool(row.flag2),
                institution_ids=frozenset(institutions),
            )
        )
    for pid, items in by_patient.items():
        # Newest first, so the decision cites the latest covering consent.
        per_patient[pid]["consents"] = tuple(sorted(items, key=lambda c: (c.start, c.id))[::-1])


def _freeze(own: dict) -> None:
    """Facts are immutable: tuples and frozensets, as the policy's tests build them."""
    for name, value in own.items():
        if isinstance(value, list):
            own[name] = tuple(value)
        elif isinstance(value, set):
            own[name] = frozenset(value)


def _load_consents(pids: set[int], out: dict[int, list], now) -> None:
    """One query: a LEFT JOIN row per (consent, covered institution)."""
    rows = (
        Consent.objects.filter(patient_id__in=pids)
        .filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now))
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        .order_by("-valid_from", "-pk")
        .values_list(
            "pk",
            "patient_id",
            "valid_from",
            "valid_until",
            "revoked_at",
            "all_members",
            "allow_emergency",
            "institutions",
        )
    )
    merged: dict[int, tuple] = {}
    covered: dict[int, set[int]] = defaultdict(set)
    for pk, pid, start, end, revoked, all_members, allow_emergency, institution in rows:
        merged.setdefault(pk, (pid, start, end, revoked, all_members, allow_emergency))
        if institution is not None:
            covered[pk].add(institution)
    for pk, (pid, start, end, revoked, all_members, allow_emergency) in merged.items():
        out[pid].append(
            ConsentFact(
                id=pk,
                start=start,
                end=end,
                revoked_at=revoked,
                all_members=all_members,
                institution_ids=frozenset(covered[pk]),
                allow_emergency=allow_emergency,
            )
        )


def _in_effect(row: facts_query.Row, *, now) -> facts_query.Row:
    """A revocation, an end or an exclusion this query can see has committed: it holds now,
    even when this worker's clock lags the one that wrote it (revocation holds from the next
    request, whatever the skew between web workers)."""
    if row.revoked is not None and row.revoked > now:
        row = row._replace(revoked=now)
    if row.kind == "exc" and row.start > now:
        row = row._replace(start=now)
    return row


def _patient_base(actor: Actor) -> dict:
    granted = False
    if actor.representative is not None and actor.user is not None:
        # The administrator grants consent.act_for_patient on the child to this login
        # (django-guardian); a group's permission is never a representation.
        granted = selectors.represents(actor.user, actor.patient)
    return {
        "actor_patient_id": actor.patient.pk,
        "via_representative": actor.representative is not None,
        "representation_granted": granted,
    }


def _national_ids(pids: set[int]) -> dict[int, str]:
    found = facts_query.national_ids(pids)
    if found is None:
        found = dict(Patient.objects.filter(pk__in=pids).values_list("pk", "national_id"))
    return found


def _audited(
    actor: Actor,
    decision: Decision,
    audit_action: str,
    national_id: str,
    *,
    study_uid: str,
    detail: dict,
    also: Sequence[dict] = (),
) -> Decision:
    """Write the decision's audit event (and the events ``also`` gives, all or none); if
    that fails, the answer becomes a deny."""
    event = {
        "action": audit_action,
        "outcome": _outcome(decision),
        "reason_code": decision.reason_code,
        "basis": decision.basis,
        "basis_ids": decision.basis_ids,
        "patient": national_id,
        "study_uid": study_uid,
        "message": decision.message,
        "detail": detail,
    }
    try:
        if also:
            audit_events(actor, [event, *also])
        else:
            audit_event(actor, **event)
    except AuditUnavailable:
        logger.exception("The audit log could not be written; denying %s", audit_action)
        return _error_decision("AUDIT_UNAVAILABLE", "The audit log is unavailable; try later.")
    except Exception:
        logger.exception("Auditing %s failed; denying", audit_action)
        return _error_decision("GATE_ERROR", "Access could not be recorded; it is denied.")
    return decision


def _outcome(decision: Decision) -> str:
    if decision.permit:
        return "permit"
    return "error" if decision.reason_code in ("GATE_ERROR", "AUDIT_UNAVAILABLE") else "deny"


def _error_decision(code: str, message: str) -> Decision:
    return Decision(permit=False, reason_code=code, message=message)


def _refuse_inside_transaction() -> None:
    # The audit row must not roll back with a caller's transaction (see the module docstring).
    connection = transaction.get_connection()
    if any(not block._from_testcase for block in connection.atomic_blocks):
        raise RuntimeError("consent.gate called inside a transaction; call it before the service")


def _mark_consulted() -> None:
    box = _consulted.get()
    if box is not None:
        box.append(True)


def access_overview(actor: Actor, *, patient: Patient, audit_action: str) -> dict:
    """ "Who can see my images right now?": per member institution, could its practitioners
    open the patient's studies today, and why (the same policy as every real decision)."""
    authorize(
        actor,
        MANAGE_RECORD,
        patient=patient,
        audit_action=audit_action,
        detail={"view": "who_can_see"},
    )
    now = timezone.now()
    record_active = SharedRecord.objects.filter(patient=patient, status="active").exists()
    consents: dict[int, list] = defaultdict(list)
    _load_consents({patient.pk}, consents, now)
    links = _active_links(patient, now)
    people = {link.practitioner_id: link.practitioner for link in links}
    affiliated = defaultdict(set)
    for practitioner_id, institution_id, start, end in Affiliation.objects.filter(
        practitioner_id__in=people
    ).values_list("practitioner_id", "institution_id", "start", "end"):
        if Period(0, start, end).active(now):
            affiliated[institution_id].add(practitioner_id)
    hidden = StudyVisibility.objects.filter(patient=patient, unhidden_at__isnull=True).count()
    institutions = [
        _institution_overview(
            institution, patient, now, record_active, consents[patient.pk], links, affiliated
        )
        for institution in Institution.objects.order_by("code")
    ]
    return {
        "national_id": patient.national_id,
        "record_status": "active" if record_active else "closed",
        "hidden_studies": hidden,
        "institutions": institutions,
    }


def _active_links(patient: Patient, now) -> list:
    """Care relationships, emergency accesses and exclusions of the patient active now."""
    care = CareRelationship.objects.filter(patient=patient, start__lte=now, end__gt=now)
    care = care.filter(Q(ended_at__isnull=True) | Q(ended_at__gt=now))
    emergencies = EmergencyAccess.objects.filter(
        patient=patient, start__lte=now, expires_at__gt=now
    )
    exclusions = Exclusion.objects.filter(patient=patient, removed_at__isnull=True)
    related = ("practitioner__user",)
    return [
        *care.select_related(*related),
        *emergencies.select_related(*related),
        *exclusions.select_related(*related),
    ]


def _institution_overview(
    institution, patient, now, record_active, consents, links, affiliated
) -> dict:
    codes = {institution.pk: institution.code}
    consent = next((c for c in consents if c.active(now) and c.covers(institution.pk)), None)
    excluded = [x.practitioner for x in links if isinstance(x, Exclusion)]
    people = []
    for practitioner_id in sorted(affiliated[institution.pk]):
        mine = [x for x in links if x.practitioner_id == practitioner_id]
        if all(isinstance(x, Exclusion) for x in mine):
            continue
        facts = Facts(
            role=Role.PRACTITIONER,
            now=now,
            acting_institution_id=institution.pk,
            institution_codes=codes,
            affiliations=(Period(0, now),),
            profession=mine[0].practitioner.profession,
            profession_actions=settings.PROFESSION_ACTIONS,
            patient_id=patient.pk,
            record_active=record_active,
            exclusions=tuple(Period(x.pk, x.created_at) for x in mine if isinstance(x, Exclusion)),
            emergencies=tuple(
                Period(x.pk, x.start, x.expires_at)
                for x in mine
                if isinstance(x, EmergencyAccess) and x.institution_id == institution.pk
            ),
            consents=tuple(consents),
            care_relationships=tuple(
                Period(x.pk, x.start, x.end, x.ended_at)
                for x in mine
                if isinstance(x, CareRelationship)
            ),
        )
        elsewhere = policy.decide(facts, action=VIEW_IMAGES, study_institution_id=0)
        here = policy.decide(facts, action=VIEW_IMAGES, study_institution_id=institution.pk)
        people.append(
            {
                "username": mine[0].practitioner.user.username,
                "display_name": mine[0].practitioner.display_name,
                "profession": mine[0].practitioner.profession,
                "other_hospitals_studies": _explained(elsewhere),
                "own_studies": _explained(here),
            }
        )
    shared = any(p["other_hospitals_studies"]["visible"] for p in people)
    return {
        "institution": institution.code,
        "name": institution.name,
        "consent": consent.id if consent else None,
        "other_hospitals_studies_visible": shared,
        "why": _why(institution.code, shared, record_active, consent, people),
        "practitioners": people,
        "excluded": [
            {"username": p.user.username, "display_name": p.display_name}
            for p in excluded
            if p.pk in affiliated[institution.pk]
        ],
    }


def _explained(decision: Decision) -> dict:
    return {"visible": decision.permit, "reason": decision.reason_code, "why": decision.message}


def _why(code: str, shared: bool, record_active: bool, consent, people: list) -> str:
    if not record_active:
        return "Your shared record is closed: no other hospital sees your studies."
    if shared and consent is None:  # only an emergency access opens them without consent
        return (
            f"A practitioner of {code} has opened an emergency access: they see your studies "
            "until it ends, and the Data Protection Officer reviews it."
        )
    if consent is None:
        return f"You have not consented to sharing with {code}."
    if shared:
        return f"You consented to sharing with {code} and some of its practitioners care for you."
    if not people:
        return f"You consented to sharing with {code}, but none of its practitioners cares for you."
    return people[0]["other_hospitals_studies"]["why"]
