"""The gate deciding on the studies a lookup finds inside its own fact query (PostgreSQL)."""

import pytest

from audit.models import AuditEvent
from consent import facts_query, gate
from consent.gate import AccessDenied
from tests.conftest import require_postgres

from .conftest import actor, care, consent_for, hide, inst

UID = "1.2.826.0.1.3680043.8.498.1"

# Studies as VALUES rows (id, patient, institution, uid, extra): no study table needed here.
_ROWS = """
SELECT * FROM (VALUES
  (CAST(%(l_pk1)s AS bigint), CAST(%(l_patient1)s AS bigint), CAST(%(l_inst1)s AS bigint),
   CAST(%(l_uid1)s AS varchar(64)), ARRAY['one']),
  (CAST(%(l_pk2)s AS bigint), CAST(%(l_patient2)s AS bigint), CAST(%(l_inst2)s AS bigint),
   CAST(%(l_uid2)s AS varchar(64)), ARRAY['two'])
) AS v WHERE v.column1 IS NOT NULL"""


def lookup(*studies: tuple) -> facts_query.Lookup:
    """A lookup finding these (pk, patient, institution code, uid) studies; at most two."""
    params = {}
    for n in (1, 2):
        pk, patient, code, uid = studies[n - 1] if len(studies) >= n else (None,) * 4
        params.update(
            {
                f"l_pk{n}": pk,
                f"l_patient{n}": patient.pk if patient else None,
                f"l_inst{n}": inst(code).pk if code else None,
                f"l_uid{n}": uid,
            }
        )
    return facts_query.Lookup(_ROWS, params)


@pytest.fixture(autouse=True)
def _postgresql():
    require_postgres()


def last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-seq").first()


def found(who, *studies, **kwargs):
    return gate.authorize_found(
        who, gate.VIEW_IMAGES, lookup=lookup(*studies), audit_action="study.retrieve", **kwargs
    )


def test_it_permits_the_study_it_finds_and_audits_the_basis_and_patient(shared):
    hit = found(actor(shared.alice.user, "CHL"), (7, shared.xavier, "CHEM", UID))
    assert hit == gate.Found(7, UID, inst("CHEM").pk, shared.xavier.pk, ["one"])
    event = last_event()
    assert (event.outcome, event.basis, event.study_uid) == ("permit", "CONSENT", UID)
    assert event.patient == shared.xavier.national_id
    assert set(event.basis_ids) == {"affiliation", "consent", "care_relationship"}


def test_it_denies_without_consent_and_audits_the_deny(cast):
    care(cast.alice, cast.yvonne)
    with pytest.raises(AccessDenied) as info:
        found(actor(cast.alice.user, "CHL"), (7, cast.yvonne, "CHEM", UID))
    assert (info.value.status_code, info.value.code) == (403, "NO_CONSENT")
    event = last_event()
    assert (event.outcome, event.reason_code, event.patient) == (
        "deny",
        "NO_CONSENT",
        cast.yvonne.national_id,
    )


def test_a_hidden_study_is_the_not_found_answer_but_audited_as_hidden(shared):
    hide(shared.xavier, UID)
    with pytest.raises(AccessDenied) as info:
        found(actor(shared.alice.user, "CHL"), (7, shared.xavier, "CHEM", UID))
    assert (info.value.status_code, info.value.code) == (404, "NOT_FOUND")
    assert last_event().reason_code == "STUDY_HIDDEN"


def test_a_study_hidden_by_another_patient_is_not_hidden_for_this_one(shared):
    consent_for(shared.yvonne)
    hide(shared.yvonne, UID)
    assert found(actor(shared.alice.user, "CHL"), (7, shared.xavier, "CHEM", UID)) is not None


def test_nothing_found_is_none_and_nothing_is_audited(shared):
    before = AuditEvent.objects.count()
    assert found(actor(shared.alice.user, "CHL")) is None
    assert AuditEvent.objects.count() == before


def test_an_unreconciled_study_of_the_acting_institution_is_permitted(shared):
    hit = found(actor(shared.alice.user, "CHL"), (7, None, "CHL", UID))
    assert hit.patient_id is None
    assert (last_event().basis, last_event().patient) == ("LOCAL", "")


@pytest.mark.django_db(transaction=True)  # autocommit, as served: the failure aborts nothing
def test_a_failing_lookup_is_an_audited_gate_error(shared):
    broken = facts_query.Lookup("SELECT * FROM no_such_table", {}, study_uid=UID)
    with pytest.raises(AccessDenied) as info:
        gate.authorize_found(
            actor(shared.alice.user, "CHL"),
            gate.VIEW_IMAGES,
            lookup=broken,
            audit_action="study.retrieve",
        )
    assert info.value.code == "GATE_ERROR"
    assert (last_event().outcome, last_event().reason_code) == ("error", "GATE_ERROR")
    assert last_event().study_uid == UID  # the study asked for, though nothing was found


def test_a_lookup_that_finds_two_studies_is_a_gate_error_not_a_pick(shared):
    with pytest.raises(AccessDenied) as info:
        found(
            actor(shared.alice.user, "CHL"),
            (7, shared.xavier, "CHEM", UID),
            (8, shared.xavier, "CHEM", UID + ".2"),
        )
    assert info.value.code == "GATE_ERROR"
    assert last_event().reason_code == "GATE_ERROR"


def test_only_practitioners_are_served(cast):
    assert gate.looks_up_with_facts(actor(cast.alice.user, "CHL"))
    assert not gate.looks_up_with_facts(actor(cast.xavier.user))
    assert not gate.looks_up_with_facts(actor(cast.dora.user))


def search(who, found, *, limit: int = 10):
    """The gate's search over one window: the lookup's studies, whatever rows are asked."""
    return gate.authorize_search(
        who,
        gate.LIST_STUDIES,
        window=lambda start, count, bare: found if start == 0 else lookup(),
        offset=0,
        limit=limit,
        audit_action="study.search",
    )


def test_a_list_comes_in_rank_order_and_withholds_as_authorize_studies(shared):
    care(shared.alice, shared.yvonne)  # but no consent from Yvonne
    hits = [(2, shared.xavier, "CHEM", "1.2"), (1, shared.xavier, "HRS", "1.1")]
    result = search(actor(shared.alice.user, "CHL"), lookup(*hits))
    assert [s.study_uid for s in result.permitted] == ["1.1", "1.2"]
    withheld = search(
        actor(shared.alice.user, "CHL"),
        lookup((1, shared.yvonne, "CHEM", "2.1"), (2, shared.xavier, "CHL", "2.2")),
    )
    assert [s.study_uid for s in withheld.permitted] == ["2.2"]
    assert withheld.withheld == [("CHEM", "NO_CONSENT")]
    last_two = AuditEvent.objects.filter(action="study.search").order_by("-seq")[:2]
    summary, xavier = reversed(last_two)
    assert (summary.detail["decided"], summary.detail["permitted"], summary.patient) == (2, 1, "")
    # Xavier's study was returned: an event about him; Yvonne's was withheld: none.
    assert (xavier.patient, xavier.detail["returned"]) == (shared.xavier.national_id, ["2.2"])


def test_a_list_never_mentions_a_hidden_study(shared):
    hide(shared.xavier, "1.2")
    result = search(actor(shared.alice.user, "CHL"), lookup((1, shared.xavier, "CHEM", "1.2")))
    assert (result.permitted, result.withheld) == ([], [])
    assert last_event().detail["hidden"] == 1
    assert last_event().patient == shared.xavier.national_id
