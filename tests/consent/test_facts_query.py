"""The gate's one fact query: any patient ids and study UIDs, one prepared statement."""

import datetime

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from consent import facts_query, gate
from tests.conftest import require_postgres

from .conftest import actor, care, consent_for, hide, inst

# Texts an array literal could split or unquote, were they not escaped.
AWKWARD_UIDS = ["1.2", 'a,"b', "back\\slash", "{brace}", " spaced ", "NULL", ""]


def rows(cast, patients, uids) -> list[facts_query.Row]:
    return facts_query.practitioner_rows(
        practitioner_id=cast.alice.pk,
        institution_id=inst("CHL").pk,
        patient_ids=[p.pk for p in patients],
        study_uids=uids,
        now=timezone.now(),
    )


@pytest.mark.parametrize("uid", AWKWARD_UIDS)
def test_it_finds_exactly_the_hidden_study_whatever_its_uid(cast, uid):
    hide(cast.xavier, uid)
    hide(cast.xavier, "1.2.3")
    others = [u for u in AWKWARD_UIDS if u != uid]
    facts = gate.load_facts(
        actor(cast.alice.user, "CHL"), patient_ids=[cast.xavier.pk], study_uids=[uid, *others]
    )
    assert facts[cast.xavier.pk].hidden_study_uids == {uid}


def test_it_answers_each_patient_of_a_list_and_no_other(cast):
    hide(cast.yvonne, "9.9")
    found = rows(cast, [cast.xavier, cast.yvonne], ["9.9"])
    assert {r.patient_id for r in found if r.kind == "rec"} == {cast.xavier.pk, cast.yvonne.pk}
    assert [(r.kind, r.patient_id) for r in found if r.kind == "hid"] == [("hid", cast.yvonne.pk)]
    only_xavier = rows(cast, [cast.xavier], ["9.9"])
    assert {r.patient_id for r in only_xavier if r.kind != "aff"} == {cast.xavier.pk}


def test_without_patients_it_still_answers_the_affiliations(cast):
    found = rows(cast, [], [])
    assert [r.kind for r in found] == ["aff"]


def prepared_runs() -> list[int]:
    """How often the server ran each prepared statement of the fact query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans + custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s AND statement NOT LIKE %s",
            ["%consent_affiliation%", "%WITH found%"],  # not the gate's lookup variants
        )
        return [n for (n,) in cursor.fetchall()]


def test_on_postgresql_the_statement_is_prepared_once_and_reused(cast):
    require_postgres()
    if settings.DATABASES["default"]["OPTIONS"].get("prepare_threshold") is None:
        pytest.skip("prepared statements are turned off (DB_PREPARED_STATEMENTS=False)")
    rows(cast, [cast.xavier], ["1.2"])
    before = prepared_runs()
    for patients in ([cast.xavier], [cast.xavier, cast.yvonne], []):
        rows(cast, patients, ["1.2", "1.3"][: len(patients)])
    # One statement for every shape of the call, run by the server as prepared.
    assert len(before) == 1
    assert prepared_runs() == [before[0] + 3]


def test_on_postgresql_the_statement_runs_its_generic_plan_from_the_first_run(cast):
    """Planned once per connection, not for each run's values: planning it took longer
    than running it (bench/README.md, twelfth session)."""
    require_postgres()
    if settings.DATABASES["default"]["OPTIONS"].get("prepare_threshold") is None:
        pytest.skip("prepared statements are turned off (DB_PREPARED_STATEMENTS=False)")
    for patients in ([cast.xavier], [cast.xavier, cast.yvonne], [], [cast.yvonne]):
        rows(cast, patients, ["1.2"])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s AND statement NOT LIKE %s",
            ["%consent_affiliation%", "%WITH found%"],
        )
        assert cursor.fetchall() == [(4, 0)]


def test_on_postgresql_the_orms_queries_are_never_prepared(cast):
    """Planned for their values every time (a DPO's search, say), however often they run:
    force_generic_plan (the settings) applies to prepared statements only."""
    require_postgres()
    for _ in range(12):
        assert get_user_model().objects.filter(username="alice").exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%"auth_user"."username"%'],  # the ORM's query, not the token look-up
        )
        assert cursor.fetchone() == (0,)


def test_on_postgresql_it_prepares_nothing_when_the_settings_say_so(cast):
    """Behind a pooler in transaction mode (DB_PREPARED_STATEMENTS=False)."""
    require_postgres()
    connection.ensure_connection()
    raw = connection.connection
    before = prepared_runs()
    saved, raw.prepare_threshold = raw.prepare_threshold, None
    try:
        found = rows(cast, [cast.xavier], ["1.2"])
    finally:
        raw.prepare_threshold = saved
    assert [r.kind for r in found] == ["aff", "rec", "nid"]
    assert prepared_runs() == before


def test_it_loads_the_stored_values_exactly(cast):
    consent = consent_for(cast.xavier, ["CHL"], allow_emergency=False)
    link = care(cast.alice, cast.xavier)
    found = {r.kind: r for r in rows(cast, [cast.xavier], [])}
    con, car = found["con"], found["car"]
    assert (con.id, con.patient_id, con.ref) == (consent.pk, cast.xavier.pk, inst("CHL").pk)
    assert (con.start, con.end, con.revoked) == (consent.valid_from, None, None)
    assert (con.flag, con.flag2) == (False, False)
    assert (car.start, car.end) == (link.start, link.end)
    assert car.start.utcoffset() == datetime.timedelta(0)
    assert found["rec"].text == "active"


def test_it_reads_the_codes_asked_for_and_each_patients_national_id(cast):
    found = facts_query.practitioner_rows(
        practitioner_id=cast.alice.pk,
        institution_id=inst("CHL").pk,
        patient_ids=[cast.xavier.pk, cast.yvonne.pk],
        study_uids=[],
        institution_ids=[inst("CHEM").pk, inst("HRS").pk],
        now=timezone.now(),
    )
    codes = {r.id: r.text for r in found if r.kind == "ins"}
    national_ids = {r.patient_id: r.text for r in found if r.kind == "nid"}
    assert codes == {inst("CHEM").pk: "CHEM", inst("HRS").pk: "HRS"}
    assert national_ids == {
        cast.xavier.pk: cast.xavier.national_id,
        cast.yvonne.pk: cast.yvonne.national_id,
    }
