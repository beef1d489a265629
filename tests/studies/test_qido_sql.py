"""The QIDO-RS page in plain SQL selects what the ORM's reading of the same rules selects."""

import dataclasses
import datetime
import itertools

import pytest
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from consent import facts_query
from consent.models import Institution, StudyVisibility
from consent.prepared import fetch_prepared
from studies import qido, qido_sql
from studies.models import Study
from tests.conftest import require_postgres
from tests.consent.conftest import care


@pytest.fixture
def index(cast):
    """Studies of Xavier and Yvonne at CHL and CHEM, unreconciled ones, and hidden ones."""
    chl, chem = Institution.objects.get(code="CHL"), Institution.objects.get(code="CHEM")
    rows = [
        # (institution, patient, PatientID, date, accession, modalities)
        (chem, cast.xavier, "CHEM-X1", "2024-01-05", "A_1", "CT"),
        (chem, cast.xavier, "CHEM-X1", "2024-02-10", "A%2", "MR\\CT"),
        (chl, cast.xavier, "CHL-X1", "2024-02-10", "B1", "CTA\\PT"),
        (chl, cast.xavier, "CHL-X1", None, "B2", "OT"),
        (chem, cast.yvonne, "CHEM-Y1", "2023-12-31", "C1", "US"),
        (chl, None, "CHL-U1", "2024-03-01", "U1", "CT"),
        (chem, None, "CHEM-U1", "2024-03-02", "U2", "CT"),
    ]
    studies = [
        Study.objects.create(
            study_uid=f"1.2.3.{n}",
            institution=institution,
            patient=patient,
            dicom_patient_id=pid,
            study_date=datetime.date.fromisoformat(day) if day else None,
            accession_number=accession,
            modalities=modalities,
        )
        for n, (institution, patient, pid, day, accession, modalities) in enumerate(rows)
    ]
    # Xavier hid his MR study (made at CHEM) and his CHL study of 2024-02-10; the second
    # hide was lifted for the OT study.
    for number in (1, 2):
        StudyVisibility.objects.create(
            patient=cast.xavier, study_uid=studies[number].study_uid, hidden_by="test"
        )
    StudyVisibility.objects.create(
        patient=cast.xavier,
        study_uid=studies[3].study_uid,
        hidden_by="test",
        unhidden_at=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    )
    return {"chl": chl, "chem": chem, "studies": studies}


def _orm(scope: qido_sql.Scope, query: qido.Query) -> list[str]:
    """The same rules through the ORM (an Exists per study), as QIDO-RS read them before."""
    in_scope = Q(patient_id__in=scope.patient_ids)
    if scope.leave_out_hidden:
        hidden = Exists(
            StudyVisibility.objects.filter(
                patient_id=OuterRef("patient_id"),
                study_uid=OuterRef("study_uid"),
                unhidden_at__isnull=True,
            )
        )
        if scope.institution_id is not None:
            hidden = hidden & ~Q(institution_id=scope.institution_id)
        in_scope &= ~hidden
    if scope.unreconciled and scope.institution_id is not None:
        in_scope |= Q(patient__isnull=True, institution_id=scope.institution_id)
    qs = qido.filter_studies(Study.objects.filter(in_scope), query)
    qs = qs.order_by(F("study_date").desc(nulls_last=True), "-pk")
    return list(qs.values_list("study_uid", flat=True)[query.offset : query.offset + query.limit])


def _sql(scope: qido_sql.Scope, query: qido.Query) -> list[str]:
    rows = qido_sql.page(scope=scope, query=query, offset=query.offset, limit=query.limit)
    return [row[0] for row in rows]


QUERIES = [
    {},
    {"patient_id": "CHEM-X1"},
    {"patient_id": "CHEM-?1"},
    {"patient_id": "*X*"},
    {"patient_id": "C**H?***-X*1"},
    {"patient_id": "CHEM-X"},
    {"date_from": datetime.date(2024, 1, 1)},
    {"date_to": datetime.date(2024, 2, 10)},
    {"date_from": datetime.date(2024, 2, 10), "date_to": datetime.date(2024, 2, 10)},
    {"accession_number": "A_1"},
    {"accession_number": "A?1"},
    {"accession_number": "A%2"},
    {"accession_number": "A_2"},
    {"modality": "CT"},
    {"modality": "C_"},
    {"modality": "PT"},
    {"modality": "%"},
    {"study_uids": ("1.2.3.0", "1.2.3.2", "1.2.3.6")},
    {"limit": 2, "offset": 1},
    {"limit": 1, "offset": 6},
]


@pytest.mark.parametrize("keys", QUERIES, ids=[str(q) for q in QUERIES])
@pytest.mark.parametrize("who", ["practitioner at CHL", "no institution", "patient"])
def test_it_selects_what_the_orm_selects(cast, index, keys, who):
    patients = (cast.xavier.pk, cast.yvonne.pk)
    scope = {
        "practitioner at CHL": qido_sql.Scope(
            patient_ids=patients,
            leave_out_hidden=True,
            institution_id=index["chl"].pk,
            unreconciled=True,
        ),
        "no institution": qido_sql.Scope(patient_ids=patients, leave_out_hidden=True),
        "patient": qido_sql.Scope(patient_ids=(cast.xavier.pk,)),
    }[who]
    query = qido.Query(**keys)
    assert _sql(scope, query) == _orm(scope, query)


def test_it_leaves_out_only_the_studies_hidden_from_other_institutions(cast, index):
    scope = qido_sql.Scope(
        patient_ids=(cast.xavier.pk,),
        leave_out_hidden=True,
        institution_id=index["chl"].pk,
        unreconciled=True,
    )
    found = _sql(scope, qido.Query())
    uids = [s.study_uid for s in index["studies"]]
    # The MR study hidden at CHEM is left out; the hidden CHL one stays for CHL; the lifted
    # hide counts for nothing; CHL's unreconciled study is in, CHEM's is not.
    assert found == [uids[5], uids[2], uids[0], uids[3]]


def test_pages_put_together_are_the_whole_list(cast, index):
    scope = qido_sql.Scope(patient_ids=(cast.xavier.pk, cast.yvonne.pk))
    whole = _sql(scope, qido.Query())
    pages = [_sql(scope, qido.Query(limit=2, offset=o)) for o in range(0, 8, 2)]
    assert list(itertools.chain(*pages)) == whole
    assert len(whole) == 5


def test_nothing_in_scope_runs_no_query(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert _sql(qido_sql.Scope(patient_ids=()), qido.Query()) == []


def _lookup(scope: qido_sql.Scope, query: qido.Query, **fact_params) -> list[str]:
    """The page as the gate's fact query reads it (its lookup), in the rank it gives."""
    lookup = qido_sql.page_lookup(scope=scope, query=query, offset=query.offset, limit=query.limit)
    rows = fetch_prepared(lookup.sql, {**lookup.params, **fact_params})
    assert [rank for rank, *_ in sorted(rows)] == list(range(1, len(rows) + 1))
    return [row[3] for row in sorted(rows)]


@pytest.mark.parametrize("keys", QUERIES, ids=[str(q) for q in QUERIES])
def test_as_a_lookup_it_selects_the_same_page(cast, index, keys):
    require_postgres()
    care(cast.alice, cast.xavier)
    day = datetime.timedelta(days=1)
    care(cast.alice, cast.yvonne, start=timezone.now() - 2 * day, end=timezone.now() - day)
    chl = index["chl"].pk
    scope = qido_sql.Scope(
        patient_ids=(cast.xavier.pk,), leave_out_hidden=True, institution_id=chl, unreconciled=True
    )
    query = qido.Query(**keys)
    # The practitioner's patients from the fact query's own parameters, as the gate runs it.
    visible = dataclasses.replace(scope, patient_ids=(), patients_sql=facts_query.VISIBLE_PATIENTS)
    now = {"practitioner": cast.alice.pk, "institution": chl, "now": timezone.now()}
    assert _lookup(scope, query) == _sql(scope, query)
    assert _lookup(visible, query, **now) == _sql(scope, query)


# Values with the characters that LIKE, GLOB and regular expressions treat specially.
TRICKY = ["A[1]", "A%2", "A_3", "a_3", "A\\4", "A.5", "AB_3"]
WILDCARDS = [
    ("A[*", ["A[1]"]),
    ("*]", ["A[1]"]),
    ("A%*", ["A%2"]),
    ("A_?", ["A_3"]),  # case-sensitive: not a_3
    ("?_3", ["A_3", "a_3"]),
    ("A\\*", ["A\\4"]),
    ("A.?", ["A.5"]),
    ("A?", []),
    ("*_3", ["A_3", "a_3", "AB_3"]),
    ("**A***_*3", ["A_3", "AB_3"]),
]


@pytest.mark.parametrize(("pattern", "expected"), WILDCARDS)
def test_wildcards_match_as_dicom_says_on_both_paths(cast, pattern, expected):
    """'*' and '?' are the only special characters (PS3.4 C.2.2.2.4), on the ORM path and
    in the SQL of QIDO-RS pages alike, whatever GLOB, LIKE or a regex make of the rest."""
    chem = Institution.objects.get(code="CHEM")
    for n, value in enumerate(TRICKY):
        Study.objects.create(
            study_uid=f"1.9.{n}", institution=chem, patient=cast.xavier, accession_number=value
        )
    query = qido.Query(accession_number=pattern, limit=50)
    scope = qido_sql.Scope(patient_ids=(cast.xavier.pk,))
    by_orm = qido.filter_studies(Study.objects.all(), query).values_list("accession_number")
    assert sorted(v for (v,) in by_orm) == sorted(expected)
    rows = qido_sql.page(scope=scope, query=query, offset=0, limit=50)
    assert sorted(Study.objects.get(study_uid=r[0]).accession_number for r in rows) == sorted(
        expected
    )


@pytest.mark.parametrize(
    ("asked", "given"), [("1", 1), ("1000", 1000), ("1001", 1000), ("9" * 30, 1000)]
)
def test_a_limit_above_the_maximum_gives_the_maximum(asked, given):
    """PS3.18 8.3.4.4.1: at most the server's maximum is returned; the request is not refused."""
    from django.http import QueryDict

    assert qido.MAX_LIMIT == 1000
    assert qido.parse_query(QueryDict(f"limit={asked}")).limit == given


@pytest.mark.parametrize(
    "key", ["PatientName", "00100010", "StudyDescription", "00081030", "patientname"]
)
def test_matching_on_an_attribute_the_index_lacks_is_refused(key):
    """Ignored, a name search would answer with every patient's studies the caller may see."""
    from django.http import QueryDict

    with pytest.raises(qido.ApplicationError, match=f"{key}: matching on this attribute"):
        qido.parse_query(QueryDict(f"{key}=DOE*"))


@pytest.mark.parametrize(
    "query", ["PatientName=*", "PatientName=", "_=1701", "limit=5&fuzzymatching=true"]
)
def test_a_universal_match_or_a_parameter_naming_no_attribute_is_accepted(query):
    from django.http import QueryDict

    assert qido.parse_query(QueryDict(query)).patient_id == ""


@pytest.mark.parametrize("tag", ["0020000D", "0020000d"])
def test_a_key_written_as_a_tag_matches_in_either_case_of_its_hex_digits(tag):
    """PS3.18 8.3.4.1: attribute-tag is 8HEXDIG, which ABNF takes in either case; a lower-case
    tag used to be refused as an attribute the search does not match on."""
    from django.http import QueryDict

    uid = "1.2.826.0.1.3680043.8.498.1"
    assert qido.parse_query(QueryDict(f"{tag}={uid}")).study_uids == (uid,)
    assert qido.parse_query(QueryDict(f"00100020=CHEM-X1&{tag.lower()}=")).patient_id == "CHEM-X1"
