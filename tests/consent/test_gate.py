"""The gate: facts from the database, the policy's decision, the audit row, permit or raise."""

import datetime

import pytest
from django.db import transaction

from audit.events import Event
from audit.models import AuditEvent
from audit.services import append
from consent import gate, national_id
from consent.gate import AccessDenied

from .conftest import actor, care, consent_for, exclude, hide, study

UID = "1.2.826.0.1.3680043.8.498.1"
BIRTH = datetime.date(1990, 1, 1)


def last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-seq").first()


def test_it_permits_a_shared_study_and_audits_the_basis(shared):
    alice = actor(shared.alice.user, "CHL")
    decision = gate.authorize(
        alice,
        gate.VIEW_IMAGES,
        patient=shared.xavier,
        study=study(UID, "CHEM", shared.xavier),
        audit_action="study.retrieve",
    )
    assert decision.basis == "CONSENT"
    event = last_event()
    assert (event.outcome, event.basis, event.patient) == (
        "permit",
        "CONSENT",
        shared.xavier.national_id,
    )
    assert event.study_uid == UID
    assert event.actor_username == "alice"
    assert set(event.basis_ids) == {"affiliation", "consent", "care_relationship"}


def test_it_denies_without_consent_and_audits_the_deny(cast):
    care(cast.alice, cast.yvonne)
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(cast.alice.user, "CHL"),
            gate.VIEW_IMAGES,
            patient=cast.yvonne,
            study=study(UID, "CHEM", cast.yvonne),
            audit_action="study.retrieve",
        )
    assert (info.value.status_code, info.value.code) == (403, "NO_CONSENT")
    assert "CHL" in info.value.message
    event = last_event()
    assert (event.outcome, event.reason_code) == ("deny", "NO_CONSENT")


def test_a_hidden_study_is_a_404_with_the_not_found_body_but_audited_as_hidden(shared):
    hide(shared.xavier, UID)
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.VIEW_IMAGES,
            patient=shared.xavier,
            study=study(UID, "CHEM", shared.xavier),
            audit_action="study.retrieve",
        )
    assert (info.value.status_code, info.value.code, info.value.message) == (
        404,
        "NOT_FOUND",
        "No such study.",
    )
    assert last_event().reason_code == "STUDY_HIDDEN"


def test_a_study_of_another_patient_is_not_found(shared):
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.VIEW_IMAGES,
            patient=shared.xavier,
            study=study(UID, "CHEM", shared.yvonne),
            audit_action="study.retrieve",
        )
    assert info.value.status_code == 404


def test_it_fails_closed_inside_a_callers_transaction(shared):
    with pytest.raises(AccessDenied) as info, transaction.atomic():
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.LIST_STUDIES,
            patient=shared.xavier,
            audit_action="patient.studies_list",
        )
    assert info.value.code == "GATE_ERROR"


def test_it_fails_closed_when_the_audit_log_is_unavailable(shared, monkeypatch):
    from audit.errors import AuditUnavailable

    def broken(event):
        raise AuditUnavailable("disk full")

    monkeypatch.setattr("consent.auditing.append", broken)
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.LIST_STUDIES,
            patient=shared.xavier,
            audit_action="patient.studies_list",
        )
    assert (info.value.status_code, info.value.code) == (503, "AUDIT_UNAVAILABLE")


def test_it_fails_closed_when_deciding_raises(shared, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("bug")

    monkeypatch.setattr("consent.policy.decide", broken)
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.LIST_STUDIES,
            patient=shared.xavier,
            audit_action="patient.studies_list",
        )
    assert info.value.code == "GATE_ERROR"
    assert last_event().outcome == "error"


def test_a_list_withholds_per_institution_and_never_mentions_hidden_studies(cast):
    consent_for(cast.xavier, ["CHL"])
    care(cast.alice, cast.xavier)
    hide(cast.xavier, "1.1")
    studies = [
        study("1.1", "CHEM", cast.xavier),  # hidden: silently dropped
        study("1.2", "CHEM", cast.xavier),  # consent covers CHL, the acting institution
        study("1.3", "CHL", cast.xavier),  # local
        study("1.4", "HRS", cast.yvonne),  # Yvonne gave no consent
        study("1.5", "CHL", None),  # unreconciled, own institution
        study("1.6", "HRS", None),  # unreconciled elsewhere: never shared
    ]
    result = gate.authorize_studies(
        actor(cast.alice.user, "CHL"),
        gate.LIST_STUDIES,
        studies=studies,
        audit_action="study.search",
    )
    assert [s.study_uid for s in result.permitted] == ["1.2", "1.3", "1.5"]
    assert result.withheld == [("HRS", "NOT_SHARED"), ("HRS", "NO_CONSENT")]
    summary, *xavier = AuditEvent.objects.filter(action="study.search").order_by("seq")
    assert (summary.patient, summary.detail["permitted"], summary.detail["hidden"]) == ("", 3, 1)
    # The one patient whose studies the list returned (the unreconciled one has no patient),
    # an event per basis: CHEM's study on his consent, CHL's as a local one.
    assert [(e.patient, e.basis, e.detail["returned"]) for e in xavier] == [
        (cast.xavier.national_id, "CONSENT", ["1.2"]),
        (cast.xavier.national_id, "LOCAL", ["1.3"]),
    ]


def audit_append_queries(django_assert_max_num_queries) -> int:
    """What one audit append costs here (the audit app's business, vendor-dependent)."""
    with django_assert_max_num_queries(10) as context:
        append(Event(action="study.retrieve", outcome="permit"))
    return len(context.captured_queries)


def test_the_gate_runs_a_fixed_number_of_queries(
    shared, django_assert_num_queries, django_assert_max_num_queries
):
    alice = actor(shared.alice.user, "CHL")
    chem_study = study(UID, "CHEM", shared.xavier)
    audit = audit_append_queries(django_assert_max_num_queries)
    # One fact query (affiliations, record, exclusions, hidden, emergencies, consents, care).
    with django_assert_num_queries(1):
        gate.load_facts(alice, patient_ids=[shared.xavier.pk], study_uids=[UID])
    with django_assert_num_queries(1 + audit):
        gate.authorize(
            alice,
            gate.VIEW_IMAGES,
            patient=shared.xavier,
            study=chem_study,
            audit_action="study.retrieve",
        )


def test_a_list_costs_the_same_queries_for_2_or_20_patients(
    cast, django_assert_num_queries, django_assert_max_num_queries
):
    others = [cast._patient(national_id.make(BIRTH, n), "Other", f"p{n}", []) for n in range(18)]
    alice = actor(cast.alice.user, "CHL")
    few = [study("2.1", "CHEM", cast.xavier), study("2.2", "CHL", cast.yvonne)]
    many = [study(f"2.{n}", "HRS", p) for n, p in enumerate([cast.xavier, cast.yvonne, *others])]
    audit = audit_append_queries(django_assert_max_num_queries)
    # The fact query (the institution codes included), the audit append.
    with django_assert_num_queries(1 + audit):
        gate.authorize_studies(alice, gate.LIST_STUDIES, studies=few, audit_action="study.search")
    with django_assert_num_queries(1 + audit):
        gate.authorize_studies(alice, gate.LIST_STUDIES, studies=many, audit_action="study.search")


def test_a_list_of_one_patient_is_audited_with_their_national_id_in_one_fact_query(
    cast, django_assert_num_queries, django_assert_max_num_queries
):
    alice = actor(cast.alice.user, "CHL")
    one = [study("2.1", "CHEM", cast.xavier), study("2.2", "HRS", cast.xavier)]
    audit = audit_append_queries(django_assert_max_num_queries)
    with django_assert_num_queries(1 + audit):
        decision = gate.authorize_studies(
            alice, gate.LIST_STUDIES, studies=one, audit_action="study.search"
        )
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.patient == cast.xavier.national_id
    # The withheld institutions are named by their codes, read by the same query.
    assert decision.withheld == [("CHEM", "NO_CONSENT"), ("HRS", "NO_CONSENT")]


def test_an_excluded_practitioner_is_denied_even_with_consent_and_care(shared):
    exclude(shared.xavier, shared.alice)
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.LIST_STUDIES,
            patient=shared.xavier,
            audit_action="patient.studies_list",
        )
    assert info.value.code == "EXCLUDED_BY_PATIENT"


def test_the_fact_query_loads_every_kind_of_fact(cast):
    from django.utils import timezone

    from consent.models import EmergencyAccess

    from .conftest import DAY, inst

    now = timezone.now()
    old = consent_for(cast.xavier, ["CHL", "HRS"], valid_from=now - 2 * DAY)
    new = consent_for(cast.xavier, allow_emergency=False)
    consent_for(cast.xavier, revoked_at=now - DAY, revoked_by="x")  # over: not loaded
    link = care(cast.alice, cast.xavier)
    care(cast.alice, cast.xavier, ended_at=now - DAY, ended_by="x")  # over: not loaded
    exclusion = exclude(cast.xavier, cast.alice)
    hide(cast.xavier, "9.1")
    hide(cast.yvonne, "9.2")
    emergency = EmergencyAccess.objects.create(
        practitioner=cast.alice,
        institution=inst("CHL"),
        patient=cast.xavier,
        reason="r" * 30,
        expires_at=now + DAY,
    )
    facts = gate.load_facts(
        actor(cast.alice.user, "CHL"),
        patient_ids=[cast.xavier.pk, cast.yvonne.pk],
        study_uids=["9.1", "9.2", "9.3"],
    )
    x, y = facts[cast.xavier.pk], facts[cast.yvonne.pk]
    assert [a.id for a in x.affiliations] == [a.id for a in facts[None].affiliations]
    assert len(x.affiliations) == 1
    assert [c.id for c in x.consents] == [new.pk, old.pk]
    assert x.consents[1].institution_ids == {inst("CHL").pk, inst("HRS").pk}
    assert (x.consents[0].all_members, x.consents[0].allow_emergency) == (True, False)
    assert [c.id for c in x.care_relationships] == [link.pk]
    assert [e.id for e in x.exclusions] == [exclusion.pk]
    assert [e.id for e in x.emergencies] == [emergency.pk]
    assert (x.hidden_study_uids, y.hidden_study_uids) == ({"9.1"}, {"9.2"})
    assert (x.record_active, y.record_active) == (True, True)
    assert (y.consents, y.care_relationships, y.exclusions) == ((), (), ())
    assert all(c.start.tzinfo is not None for c in x.consents)


def test_visible_patient_ids_are_those_with_care_or_an_emergency(cast):
    from django.utils import timezone

    from consent.models import EmergencyAccess

    from .conftest import DAY, inst

    care(cast.alice, cast.xavier)
    care(cast.alice, cast.yvonne, start=timezone.now() - 2 * DAY, end=timezone.now() - DAY)
    EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=inst("CHEM"),
        patient=cast.yvonne,
        reason="r" * 30,
        expires_at=timezone.now() + DAY,
    )
    assert gate.visible_patient_ids(actor(cast.alice.user, "CHL")) == {cast.xavier.pk}
    assert gate.visible_patient_ids(actor(cast.bob.user, "CHEM")) == {cast.yvonne.pk}
    assert gate.visible_patient_ids(actor(cast.xavier.user)) == {cast.xavier.pk}
    assert gate.visible_patient_ids(actor(cast.dora.user)) == set()


def test_a_patient_lists_only_their_own_studies_hidden_ones_included(cast):
    hide(cast.xavier, "3.1")
    studies = [
        study("3.1", "CHEM", cast.xavier),
        study("3.2", "CHL", cast.xavier),
        study("3.3", "CHL", cast.yvonne),
    ]
    result = gate.authorize_studies(
        actor(cast.xavier.user), gate.LIST_STUDIES, studies=studies, audit_action="study.search"
    )
    assert [s.study_uid for s in result.permitted] == ["3.1", "3.2"]
    assert result.withheld == [("CHL", "NOT_OWN_RECORD")]


def test_a_hospital_system_lists_no_studies_not_even_its_own(cast):
    studies = [study("4.1", "CHL", cast.xavier), study("4.2", "CHEM", cast.xavier)]
    with pytest.raises(gate.AccessDenied) as refused:
        gate.authorize_studies(
            actor(cast.chl_system.user, "CHL"),
            gate.LIST_STUDIES,
            studies=studies,
            audit_action="study.search",
        )
    assert refused.value.decision.reason_code == "ROLE_NOT_ALLOWED"
    event = last_event()
    assert (event.outcome, event.reason_code) == ("deny", "ROLE_NOT_ALLOWED")


def test_a_visible_revocation_holds_even_from_a_worker_whose_clock_lags(shared, monkeypatch):
    from django.utils import timezone

    from consent.models import Consent

    from .conftest import DAY

    # Another worker, its clock a day ahead, revoked the consent and excluded Dr Alice.
    Consent.objects.update(revoked_at=timezone.now() + DAY, revoked_by="xavier")
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.VIEW_IMAGES,
            patient=shared.xavier,
            study=study(UID, "CHEM", shared.xavier),
            audit_action="study.retrieve",
        )
    assert info.value.code == "NO_CONSENT"
    from consent.models import Exclusion

    Exclusion.objects.create(
        patient=shared.xavier,
        practitioner=shared.alice,
        created_by="xavier",
        created_at=timezone.now() + DAY,
    )
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            actor(shared.alice.user, "CHL"),
            gate.LIST_STUDIES,
            patient=shared.xavier,
            audit_action="patient.studies_list",
        )
    assert info.value.code == "EXCLUDED_BY_PATIENT"
