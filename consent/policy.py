"""The rule of DESIGN.md as a pure function from plain facts to a Decision (no DB, no request).

Only ``consent.gate`` imports this module (import-linter); it loads the facts and audits.
Validity is always checked here against ``facts.now``: a period includes its start and
excludes its end, and no stored "expired" flag is ever trusted.
"""

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Policy actions.
LIST_STUDIES = "list_studies"
VIEW_IMAGES = "view_images"
STORE = "store"
EMERGENCY = "emergency"
# Patient self-service on their own record (consents, exclusions, hiding, closing...).
MANAGE_RECORD = "manage_record"
# A hospital system (or an administrator) asserting or ending a care relationship.
ASSERT_CARE = "assert_care"
# The DPO's oversight of emergency accesses.
REVIEW_EMERGENCY = "review_emergency"

# Bases of a permit (the values of audit.actions.Basis).
CONSENT = "CONSENT"
LOCAL = "LOCAL"
BASIS_EMERGENCY = "EMERGENCY"
CARE_RELATIONSHIP = "CARE_RELATIONSHIP"
PATIENT = "PATIENT"
DPO = "DPO"
ADMIN = "ADMIN"


@dataclass(frozen=True)
class Decision:
    permit: bool
    reason_code: str
    message: str
    remedy: str = ""
    basis: str = ""
    basis_ids: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Period:
    """One dated fact: valid from ``start`` (inclusive) to ``end`` (exclusive, None = open)."""

    id: int
    start: datetime.datetime
    end: datetime.datetime | None = None
    revoked_at: datetime.datetime | None = None

    def active(self, at: datetime.datetime) -> bool:
        return (
            self.start <= at
            and (self.end is None or at < self.end)
            and (self.revoked_at is None or at < self.revoked_at)
        )


@dataclass(frozen=True)
class ConsentFact(Period):
    all_members: bool = False
    institution_ids: frozenset[int] = frozenset()
    allow_emergency: bool = True

    def covers(self, institution_id: int | None) -> bool:
        return self.all_members or institution_id in self.institution_ids


@dataclass(frozen=True)
class Facts:
    """Everything the rule looks at, for one actor and one patient (or none: unreconciled)."""

    role: str
    now: datetime.datetime
    acting_institution_id: int | None = None
    institution_codes: Mapping[int, str] = field(default_factory=dict)
    # Practitioner: affiliations at the acting institution, profession and the matrix (rule 2).
    affiliations: Sequence[Period] = ()
    profession: str = ""
    profession_actions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Patient acted on; None for an unreconciled study.
    patient_id: int | None = None
    record_active: bool = False
    exclusions: Sequence[Period] = ()
    hidden_study_uids: frozenset[str] = frozenset()
    emergencies: Sequence[Period] = ()
    consents: Sequence[ConsentFact] = ()
    care_relationships: Sequence[Period] = ()
    # Patient role: the patient the account acts for, and whether a representation holds.
    actor_patient_id: int | None = None
    via_representative: bool = False
    representation_granted: bool = False

    def code(self, institution_id: int | None) -> str:
        return (
            self.institution_codes.get(institution_id, "another member") if institution_id else ""
        )


def decide(
    facts: Facts,
    *,
    action: str,
    study_institution_id: int | None = None,
    study_uid: str | None = None,
) -> Decision:
    """Decide one action of the actor described by ``facts``.

    Parameters
    ----------
    facts
        The facts loaded by the gate, all at ``facts.now``.
    action
        One of the policy actions of this module.
    study_institution_id
        J, the performing institution of the study; None when no study is involved
        (listing a patient's studies): then only the checks that apply to "all" run.
    study_uid
        The study, for rule 5 (hidden by the patient).
    """
    refusal = role_refusal(facts.role, action)
    if refusal is not None:
        return refusal
    deciders = {
        "practitioner": _practitioner,
        "patient": _patient,
        "system": _system,
        "dpo": _dpo,
        "admin": _admin,
    }
    return deciders[facts.role](facts, action, study_institution_id, study_uid)


# What each role may ever do, and what it is told otherwise. A refusal here depends on the
# role and the action alone, never on a patient or a study: the gate gives it before it looks
# either up, so that it reveals neither's existence.
ROLE_ACTIONS = {
    "practitioner": frozenset({STORE, LIST_STUDIES, VIEW_IMAGES, EMERGENCY}),
    "patient": frozenset({LIST_STUDIES, VIEW_IMAGES, MANAGE_RECORD}),
    # Hospital systems store and provision; they never read studies back (API.md), not
    # even their own institution's: a list would also say where else a patient was imaged.
    "system": frozenset({STORE, ASSERT_CARE}),
    "dpo": frozenset({REVIEW_EMERGENCY}),
    "admin": frozenset({ASSERT_CARE}),
}
_REFUSED = {
    "practitioner": "Practitioners may not perform this action.",
    "patient": "Patients may not perform this action.",
    "system": "Hospital systems may not perform this action.",
    "dpo": "The DPO reads audit data only, never patient data.",
    "admin": "Administrators do not see patient data.",
}


def role_refusal(role: str, action: str) -> Decision | None:
    """The deny of an action the role may never perform, or None."""
    if role not in ROLE_ACTIONS:
        return _deny("ROLE_NOT_ALLOWED", "This account has no role that gives access.")
    if action not in ROLE_ACTIONS[role]:
        return _deny("ROLE_NOT_ALLOWED", _REFUSED[role])
    return None


def _practitioner(f: Facts, action: str, j: int | None, study_uid: str | None) -> Decision:
    i = f.acting_institution_id
    here = f.code(i)
    affiliation = _first_active(f.affiliations, f.now)
    # 1: an active affiliation at the acting institution
    if i is None or affiliation is None:
        return _deny(
            "NOT_AFFILIATED",
            f"You have no active affiliation at {here or 'the acting institution'}.",
            "Act for an institution you work at, or ask its administrator to affiliate you.",
        )
    ids = {"affiliation": affiliation.id}
    if action == STORE:
        return _store(f, j, ids)
    # 2: the profession may perform the action
    if action not in f.profession_actions.get(f.profession, ()):
        return _deny(
            "PROFESSION_NOT_ALLOWED",
            f"Your profession ({f.profession or 'unknown'}) may not perform this action.",
            "Ask a colleague whose profession allows it.",
            ids=ids,
        )
    if f.patient_id is None:
        return _unreconciled(f, j, ids)
    # 3: the patient has not excluded this practitioner
    exclusion = _first_active(f.exclusions, f.now)
    if exclusion is not None:
        return _deny(
            "EXCLUDED_BY_PATIENT",
            "The patient has blocked you from their studies.",
            ids={**ids, "exclusion": exclusion.id},
        )
    if action == EMERGENCY:
        return _emergency_declaration(f, ids)
    shared = j is not None and j != i
    # 4: the shared record is active (studies made elsewhere)
    if shared and not f.record_active:
        return _deny(
            "RECORD_NOT_ACTIVE",
            "The patient's shared record is closed, so studies made elsewhere are not shared.",
            "Only the patient can reopen their shared record.",
            ids=ids,
        )
    # 5: not hidden by the patient; an emergency does not reveal it either
    if shared and study_uid in f.hidden_study_uids:
        return _deny("STUDY_HIDDEN", "The patient has hidden this study.", ids=ids)
    # 6: an active emergency access permits, unless a consent in effect refuses emergency
    # access (granting one also ends the open accesses: consent.services.consents)
    emergency = _first_active(f.emergencies, f.now)
    if emergency is not None and _refusing_emergencies(f) is None:
        return Decision(
            permit=True,
            reason_code="EMERGENCY",
            message="Permitted under your emergency access; the DPO will review it.",
            basis=BASIS_EMERGENCY,
            basis_ids={**ids, "emergency_access": emergency.id},
        )
    consent = None
    # 7: a consent that covers the acting institution (studies made elsewhere)
    if shared:
        consent = next((c for c in f.consents if c.active(f.now) and c.covers(i)), None)
        if consent is None:
            return _deny(
                "NO_CONSENT",
                f"No consent from the patient for sharing with {here}.",
                f"The patient can grant consent for {here} in the portal.",
                ids=ids,
            )
        ids["consent"] = consent.id
    # 8: an active care relationship
    care = _first_active(f.care_relationships, f.now)
    if care is None:
        return _deny(
            "NO_CARE_RELATIONSHIP",
            "You have no active care relationship with the patient.",
            "Your hospital can record an admission or referral, or the patient can declare you.",
            ids=ids,
        )
    ids["care_relationship"] = care.id
    if shared:
        return _permit(CONSENT, f"Permitted: the patient consented to sharing with {here}.", ids)
    if j is None:
        return _permit(CARE_RELATIONSHIP, "Permitted: you have a care relationship.", ids)
    return _permit(LOCAL, f"Permitted: a study made at {here}, your institution.", ids)


def _store(f: Facts, j: int | None, ids: dict) -> Decision:
    # Storing is not in the profession matrix (which governs reading); only where one works.
    if j is not None and j != f.acting_institution_id:
        return _deny("NOT_AFFILIATED", "You may store studies only for your institution.", ids=ids)
    return _permit(LOCAL, "Permitted: storing for your own institution.", ids)


def _unreconciled(f: Facts, j: int | None, ids: dict) -> Decision:
    # A study not linked to a shared record stays at its own hospital and is never shared.
    if j is not None and j == f.acting_institution_id:
        return _permit(LOCAL, "Permitted: an unlinked study of your own institution.", ids)
    return _deny("NOT_SHARED", "This study is not linked to a shared record.", ids=ids)


def _refusing_emergencies(f: Facts) -> ConsentFact | None:
    """The patient's consent in effect that refuses emergency access, if any."""
    return next((c for c in f.consents if c.active(f.now) and not c.allow_emergency), None)


def _emergency_declaration(f: Facts, ids: dict) -> Decision:
    refusing = _refusing_emergencies(f)
    if refusing is not None:
        return _deny(
            "EMERGENCY_REFUSED",
            "The patient has refused emergency access to their studies.",
            ids={**ids, "consent": refusing.id},
        )
    return _permit(BASIS_EMERGENCY, "Permitted: an emergency access may be opened.", ids)


def _patient(f: Facts, action: str, j: int | None, study_uid: str | None) -> Decision:
    if f.patient_id is None or f.patient_id != f.actor_patient_id:
        return _deny("NOT_OWN_RECORD", "Patients may act only on their own record.")
    if f.via_representative and not f.representation_granted:
        return _deny(
            "NOT_REPRESENTATIVE",
            "You are not registered as this patient's legal representative.",
            "An administrator can register you as the patient's representative.",
        )
    return _permit(PATIENT, "Permitted: the patient's own record.", {"patient": f.patient_id})


def _system(f: Facts, action: str, j: int | None, study_uid: str | None) -> Decision:
    # Hospital systems act only for their own institution.
    if f.acting_institution_id is None:
        return _deny("NOT_AFFILIATED", "This system account belongs to no institution.")
    if j is not None and j != f.acting_institution_id:
        return _deny(
            "OTHER_INSTITUTION", "A hospital system sees only its own institution's studies."
        )
    return _permit(LOCAL, f"Permitted: {f.code(f.acting_institution_id)}'s own data.", {})


def _dpo(f: Facts, action: str, j: int | None, study_uid: str | None) -> Decision:
    # The DPO oversees; they never see patient data (images, studies).
    if action == REVIEW_EMERGENCY:
        return _permit(DPO, "Permitted: data protection oversight.", {})
    return _deny("ROLE_NOT_ALLOWED", _REFUSED["dpo"])


def _admin(f: Facts, action: str, j: int | None, study_uid: str | None) -> Decision:
    if action == ASSERT_CARE:
        return _permit(ADMIN, "Permitted: provisioning by an administrator.", {})
    return _deny("ROLE_NOT_ALLOWED", _REFUSED["admin"])


def _first_active(periods: Sequence[Period], at: datetime.datetime) -> Period | None:
    return next((p for p in periods if p.active(at)), None)


def _permit(basis: str, message: str, ids: dict) -> Decision:
    return Decision(
        permit=True, reason_code=basis, message=message, basis=basis, basis_ids=dict(ids)
    )


def _deny(code: str, message: str, remedy: str = "", *, ids: dict | None = None) -> Decision:
    return Decision(
        permit=False, reason_code=code, message=message, remedy=remedy, basis_ids=dict(ids or {})
    )
