"""The rule table of DESIGN.md, tested as a table: one shared setup, each case flips one fact."""

import datetime
import itertools
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from consent import policy
from consent.policy import ConsentFact, Facts, Period

UTC = datetime.UTC
NOW = datetime.datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night Luxembourg goes to summer time
DAY = datetime.timedelta(days=1)
US = datetime.timedelta(microseconds=1)
CHL, CHEM, HRS = 1, 2, 3
UID = "1.2.3.4"
MATRIX = {
    "physician": ["list_studies", "view_images", "emergency"],
    "nurse": ["list_studies"],
}


def open_period(pk: int) -> Period:
    return Period(id=pk, start=NOW - DAY, end=NOW + DAY)


BASE = Facts(
    role="practitioner",
    now=NOW,
    acting_institution_id=CHL,
    institution_codes={CHL: "CHL", CHEM: "CHEM", HRS: "HRS"},
    affiliations=(open_period(11),),
    profession="physician",
    profession_actions=MATRIX,
    patient_id=7,
    record_active=True,
    consents=(ConsentFact(id=21, start=NOW - DAY, institution_ids=frozenset({CHL})),),
    care_relationships=(open_period(31),),
)


def decide(facts: Facts, j: int | None = CHEM, action: str = policy.VIEW_IMAGES, uid=UID):
    return policy.decide(facts, action=action, study_institution_id=j, study_uid=uid)


# Each failing check of the table, in its order: (rule, reason, the one fact flipped).
FAILURES = [
    (1, "NOT_AFFILIATED", {"affiliations": ()}),
    (2, "PROFESSION_NOT_ALLOWED", {"profession": "clerk"}),
    (3, "EXCLUDED_BY_PATIENT", {"exclusions": (open_period(41),)}),
    (4, "RECORD_NOT_ACTIVE", {"record_active": False}),
    (5, "STUDY_HIDDEN", {"hidden_study_uids": frozenset({UID})}),
    (7, "NO_CONSENT", {"consents": ()}),
    (8, "NO_CARE_RELATIONSHIP", {"care_relationships": ()}),
]
SHARED_ONLY = {4, 5, 7}
EMERGENCY = {"emergencies": (open_period(51),)}


def flipped(rules: tuple) -> Facts:
    changes: dict = {}
    for rule, _reason, change in FAILURES:
        if rule in rules:
            changes.update(change)
    return replace(BASE, **changes)


def test_it_permits_a_shared_study_on_consent_with_the_ids_it_relied_on():
    decision = decide(BASE)
    assert decision.permit
    assert decision.basis == "CONSENT"
    assert decision.basis_ids == {"affiliation": 11, "consent": 21, "care_relationship": 31}
    assert "CHL" in decision.message


@pytest.mark.parametrize(("rule", "reason", "change"), FAILURES)
def test_each_failing_check_alone_gives_its_reason(rule, reason, change):
    decision = decide(replace(BASE, **change))
    assert not decision.permit
    assert decision.reason_code == reason
    assert decision.message


ALL_SUBSETS = [
    combo
    for size in range(1, len(FAILURES) + 1)
    for combo in itertools.combinations([r for r, _, _ in FAILURES], size)
]


@pytest.mark.parametrize("rules", ALL_SUBSETS, ids=lambda r: "+".join(map(str, r)))
def test_the_first_failing_check_is_the_reason_in_every_combination(rules):
    reasons = {rule: reason for rule, reason, _ in FAILURES}
    assert decide(flipped(rules)).reason_code == reasons[min(rules)]


@pytest.mark.parametrize("rules", ALL_SUBSETS, ids=lambda r: "+".join(map(str, r)))
def test_an_emergency_permits_past_rules_7_and_8_but_not_before(rules):
    reasons = {rule: reason for rule, reason, _ in FAILURES}
    decision = decide(replace(flipped(rules), **EMERGENCY))
    if min(rules) < 6:
        assert decision.reason_code == reasons[min(rules)]
    else:
        assert decision.permit
        assert decision.basis == "EMERGENCY"
        assert decision.basis_ids["emergency_access"] == 51


@pytest.mark.parametrize("rules", ALL_SUBSETS, ids=lambda r: "+".join(map(str, r)))
def test_a_local_study_skips_the_sharing_checks(rules):
    reasons = {rule: reason for rule, reason, _ in FAILURES}
    local_failures = [r for r in rules if r not in SHARED_ONLY]
    decision = decide(flipped(rules), j=CHL)
    if local_failures:
        assert decision.reason_code == reasons[min(local_failures)]
    else:
        assert decision.permit
        assert decision.basis == "LOCAL"


@pytest.mark.parametrize("rules", ALL_SUBSETS, ids=lambda r: "+".join(map(str, r)))
def test_without_a_study_only_the_checks_for_all_apply(rules):
    reasons = {rule: reason for rule, reason, _ in FAILURES}
    general = [r for r in rules if r not in SHARED_ONLY]
    decision = decide(flipped(rules), j=None, action=policy.LIST_STUDIES, uid=None)
    if general:
        assert decision.reason_code == reasons[min(general)]
    else:
        assert decision.basis == "CARE_RELATIONSHIP"


def test_an_emergency_never_reveals_a_hidden_study():
    facts = replace(BASE, hidden_study_uids=frozenset({UID}), **EMERGENCY)
    assert decide(facts).reason_code == "STUDY_HIDDEN"


def test_a_hidden_study_stays_visible_at_its_own_institution():
    assert decide(replace(BASE, hidden_study_uids=frozenset({UID})), j=CHL).permit


def test_a_consent_for_another_institution_does_not_cover_this_one():
    consent = ConsentFact(id=22, start=NOW - DAY, institution_ids=frozenset({HRS}))
    assert decide(replace(BASE, consents=(consent,))).reason_code == "NO_CONSENT"


def test_a_consent_for_all_members_covers_every_institution():
    consent = ConsentFact(id=23, start=NOW - DAY, all_members=True)
    assert decide(replace(BASE, consents=(consent,))).basis_ids["consent"] == 23


def test_the_profession_matrix_is_per_action():
    nurse = replace(BASE, profession="nurse")
    assert decide(nurse, action=policy.LIST_STUDIES, j=None, uid=None).permit
    assert decide(nurse, action=policy.VIEW_IMAGES).reason_code == "PROFESSION_NOT_ALLOWED"
    assert decide(nurse, action=policy.EMERGENCY, j=None).reason_code == "PROFESSION_NOT_ALLOWED"


# Boundaries: every period includes its start and excludes its end, whatever the time zone.
LUX = ZoneInfo("Europe/Luxembourg")
START = datetime.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 CET becomes 03:00 CEST
END = datetime.datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 03:00 CEST becomes 02:00 CET
BOUNDARIES = [
    (START - US, False),
    (START, True),
    (START.astimezone(LUX), True),
    (END - US, True),
    ((END - US).astimezone(LUX), True),
    (END, False),
    (END.astimezone(LUX), False),
]


def at(now: datetime.datetime, **changes) -> Facts:
    return replace(BASE, now=now, **changes)


@pytest.mark.parametrize(("now", "active"), BOUNDARIES)
def test_an_affiliation_is_active_from_its_start_until_its_end(now, active):
    facts = at(now, affiliations=(Period(id=1, start=START, end=END),))
    facts = replace(facts, care_relationships=(Period(id=2, start=START - DAY),))
    facts = replace(facts, consents=(ConsentFact(id=3, start=START - DAY, all_members=True),))
    assert (decide(facts).reason_code != "NOT_AFFILIATED") is active


@pytest.mark.parametrize(("now", "active"), BOUNDARIES)
def test_a_consent_is_active_from_its_start_until_its_end(now, active):
    consent = ConsentFact(id=3, start=START, end=END, all_members=True)
    facts = at(now, consents=(consent,), affiliations=(Period(1, START - DAY),))
    facts = replace(facts, care_relationships=(Period(id=2, start=START - DAY),))
    assert decide(facts).permit is active


@pytest.mark.parametrize(("now", "active"), BOUNDARIES)
def test_a_consent_stops_at_its_revocation(now, active):
    consent = ConsentFact(id=3, start=START - DAY, revoked_at=END, all_members=True)
    facts = at(now, consents=(consent,), affiliations=(Period(1, START - DAY),))
    facts = replace(facts, care_relationships=(Period(id=2, start=START - DAY),))
    if now >= START:
        assert decide(facts).permit is active


@pytest.mark.parametrize(("now", "active"), BOUNDARIES)
def test_a_care_relationship_is_active_from_its_start_until_its_end(now, active):
    facts = at(
        now, affiliations=(Period(1, START - DAY),), care_relationships=(Period(2, START, END),)
    )
    facts = replace(facts, consents=(ConsentFact(id=3, start=START - DAY, all_members=True),))
    assert decide(facts).permit is active


@pytest.mark.parametrize(("now", "active"), BOUNDARIES)
def test_an_exclusion_holds_from_its_start_until_its_removal(now, active):
    facts = at(now, affiliations=(Period(1, START - DAY),), exclusions=(Period(4, START, END),))
    facts = replace(facts, care_relationships=(Period(id=2, start=START - DAY),))
    facts = replace(facts, consents=(ConsentFact(id=3, start=START - DAY, all_members=True),))
    assert (decide(facts).reason_code == "EXCLUDED_BY_PATIENT") is active


@pytest.mark.parametrize(("now", "active"), BOUNDARIES)
def test_an_emergency_access_is_active_from_its_start_until_it_expires(now, active):
    facts = at(
        now,
        affiliations=(Period(1, START - DAY),),
        consents=(),
        care_relationships=(),
        emergencies=(Period(5, START, END),),
    )
    assert decide(facts).permit is active


# Declaring an emergency access.
def test_it_permits_declaring_an_emergency_without_consent_or_care():
    facts = replace(BASE, consents=(), care_relationships=())
    assert decide(facts, action=policy.EMERGENCY, j=None).basis == "EMERGENCY"


def test_it_refuses_an_emergency_the_patient_refused():
    consent = ConsentFact(id=24, start=NOW - DAY, all_members=True, allow_emergency=False)
    decision = decide(replace(BASE, consents=(consent,)), action=policy.EMERGENCY, j=None)
    assert decision.reason_code == "EMERGENCY_REFUSED"
    assert decision.basis_ids["consent"] == 24


def test_a_refusal_made_after_an_emergency_access_opened_ends_it():
    refusing = ConsentFact(id=25, start=NOW - US, all_members=True, allow_emergency=False)
    facts = replace(BASE, consents=(refusing,), care_relationships=(), **EMERGENCY)
    decision = decide(facts)
    assert not decision.permit
    assert decision.reason_code == "NO_CARE_RELATIONSHIP"


def test_after_a_refusal_of_emergencies_the_patients_consent_still_permits():
    refusing = ConsentFact(id=25, start=NOW - DAY, all_members=True, allow_emergency=False)
    decision = decide(replace(BASE, consents=(refusing,), **EMERGENCY))
    assert decision.basis == "CONSENT"
    assert "emergency_access" not in decision.basis_ids


def test_only_a_refusal_in_effect_blocks_an_open_emergency_access():
    refusing = ConsentFact(
        id=25, start=NOW - DAY, revoked_at=NOW - US, all_members=True, allow_emergency=False
    )
    facts = replace(BASE, consents=(refusing,), care_relationships=(), **EMERGENCY)
    assert decide(facts).basis == "EMERGENCY"


def test_an_excluded_practitioner_cannot_declare_an_emergency():
    facts = replace(BASE, exclusions=(open_period(41),))
    assert decide(facts, action=policy.EMERGENCY, j=None).reason_code == "EXCLUDED_BY_PATIENT"


# Unreconciled studies: their own institution only, never shared.
def test_an_unreconciled_study_is_visible_only_at_its_own_institution():
    facts = replace(BASE, patient_id=None, care_relationships=())
    assert decide(facts, j=CHL).basis == "LOCAL"
    assert decide(facts, j=CHEM).reason_code == "NOT_SHARED"
    assert decide(replace(facts, affiliations=()), j=CHL).reason_code == "NOT_AFFILIATED"
    assert decide(replace(facts, profession="nurse"), j=CHL).reason_code == (
        "PROFESSION_NOT_ALLOWED"
    )


def test_a_practitioner_stores_only_for_the_acting_institution():
    assert decide(BASE, action=policy.STORE, j=CHL).permit
    assert decide(BASE, action=policy.STORE, j=CHEM).reason_code == "NOT_AFFILIATED"
    assert decide(replace(BASE, affiliations=()), action=policy.STORE, j=CHL).reason_code == (
        "NOT_AFFILIATED"
    )


# The other roles.
PATIENT = Facts(role="patient", now=NOW, patient_id=7, actor_patient_id=7)


@pytest.mark.parametrize("action", [policy.LIST_STUDIES, policy.VIEW_IMAGES, policy.MANAGE_RECORD])
def test_a_patient_acts_on_their_own_record(action):
    assert decide(PATIENT, action=action).basis == "PATIENT"


def test_a_patient_cannot_act_on_another_record():
    assert decide(replace(PATIENT, patient_id=8)).reason_code == "NOT_OWN_RECORD"
    assert decide(replace(PATIENT, patient_id=None)).reason_code == "NOT_OWN_RECORD"


def test_a_representative_needs_the_granted_permission():
    represented = replace(PATIENT, via_representative=True)
    assert decide(represented).reason_code == "NOT_REPRESENTATIVE"
    assert decide(replace(represented, representation_granted=True)).permit


def test_a_patient_cannot_declare_an_emergency_or_store():
    assert decide(PATIENT, action=policy.EMERGENCY).reason_code == "ROLE_NOT_ALLOWED"
    assert decide(PATIENT, action=policy.STORE).reason_code == "ROLE_NOT_ALLOWED"


@pytest.mark.parametrize(
    "action", [policy.LIST_STUDIES, policy.VIEW_IMAGES, policy.MANAGE_RECORD, policy.STORE]
)
def test_the_dpo_never_sees_patient_data(action):
    dpo = Facts(role="dpo", now=NOW, patient_id=7)
    assert decide(dpo, action=action).reason_code == "ROLE_NOT_ALLOWED"
    assert decide(dpo, action=policy.REVIEW_EMERGENCY, j=None).basis == "DPO"


SYSTEM = Facts(role="system", now=NOW, acting_institution_id=CHL, patient_id=7)


def test_a_hospital_system_stores_only_for_its_institution():
    assert decide(SYSTEM, action=policy.STORE, j=CHL).basis == "LOCAL"
    assert decide(SYSTEM, action=policy.STORE, j=CHEM).reason_code == "OTHER_INSTITUTION"


@pytest.mark.parametrize("action", [policy.VIEW_IMAGES, policy.LIST_STUDIES])
def test_a_hospital_system_never_reads_studies_not_even_its_own(action):
    assert decide(SYSTEM, action=action, j=CHL).reason_code == "ROLE_NOT_ALLOWED"


def test_an_administrator_provisions_but_never_sees_patient_data():
    admin = Facts(role="admin", now=NOW, patient_id=7)
    assert decide(admin, action=policy.ASSERT_CARE, j=None).permit
    assert decide(admin, action=policy.VIEW_IMAGES).reason_code == "ROLE_NOT_ALLOWED"


def test_an_unknown_role_is_denied():
    assert decide(replace(BASE, role="")).reason_code == "ROLE_NOT_ALLOWED"
