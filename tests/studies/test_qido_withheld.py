"""QIDO-RS pages count only the studies the caller may see: a withheld study that matches a
search takes no place on a page and is not announced by the "more results" warning."""

import json

import pytest

from consent.models import SharedRecord
from tests.conftest import client_for
from tests.consent.conftest import care, consent_for, exclude

from .conftest import dicom_copy, ingest

pytestmark = pytest.mark.django_db

ALL_DATES = "19000101-20991231"


def _withhold(cast, how: str) -> None:
    """Xavier's CHEM studies withheld from Alice (CHL), who has an admission with him."""
    if how == "blocked":  # "they cannot open your studies, even in an emergency"
        consent_for(cast.xavier)
        exclude(cast.xavier, cast.alice)
    elif how == "record closed":
        consent_for(cast.xavier)
        SharedRecord.objects.filter(patient=cast.xavier).update(status="closed")
    # "no consent": none given


@pytest.fixture
def searches(cast, tmp_path):
    """Yvonne's three CHL studies, seen by Alice, between Xavier's withheld CHEM studies."""
    care(cast.alice, cast.xavier)
    care(cast.alice, cast.yvonne)
    for date in ("20240110", "20240210", "20240310", "20240410"):
        ingest(dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1", StudyDate=date))
    seen = [
        ingest(dicom_copy(tmp_path, patient_id="CHL-Y1", StudyDate=date), "CHL").study_uid
        for date in ("20240301", "20240201", "20240101")  # newest first
    ]
    alice = client_for("alice", "CHL")

    def search(**params) -> tuple[list[str], bool]:
        response = alice.get("/dicomweb/studies", params)
        assert response.status_code == 200
        uids = [s["0020000D"]["Value"][0] for s in json.loads(response.content or b"[]")]
        return uids, "Additional results" in response.get("Warning", "")

    return seen, search


@pytest.mark.parametrize("how", ["blocked", "no consent", "record closed"])
def test_a_withheld_study_takes_no_place_on_a_page(cast, searches, how):
    _withhold(cast, how)
    seen, search = searches
    pages = [search(StudyDate=ALL_DATES, limit=1, offset=n) for n in range(4)]
    assert pages == [([seen[0]], True), ([seen[1]], True), ([seen[2]], False), ([], False)]
    assert search(StudyDate=ALL_DATES, limit=2, offset=1) == (seen[1:], False)


@pytest.mark.parametrize("how", ["blocked", "no consent", "record closed"])
def test_a_search_cannot_tell_where_a_withheld_study_lies(cast, searches, how):
    _withhold(cast, how)
    _seen, search = searches
    # Narrowing a date range around a withheld study (10 Feb) or around none (15 Feb) gives
    # the same answers: the warning and the pages depend on Yvonne's studies alone.
    around = search(StudyDate="20240209-20240301", limit=1)
    beside = search(StudyDate="20240211-20240301", limit=1)
    assert around == beside
    assert search(ModalitiesInStudy="MR", limit=1) == ([], False)


def test_permitted_studies_page_as_before(cast, searches):
    consent_for(cast.xavier)  # Xavier's studies are shared with Alice now: seven in all
    _seen, search = searches
    uids = [search(StudyDate=ALL_DATES, limit=2, offset=n)[0] for n in (0, 2, 4, 6)]
    assert [len(page) for page in uids] == [2, 2, 2, 1]
    assert len({uid for page in uids for uid in page}) == 7
    assert search(StudyDate=ALL_DATES, limit=2, offset=4)[1] is True
    assert search(StudyDate=ALL_DATES, limit=2, offset=5)[1] is False


def test_a_search_stops_deciding_at_its_cap_and_says_more_may_follow(cast, searches, monkeypatch):
    from consent import gate

    _withhold(cast, "blocked")
    seen, search = searches
    # Newest first: two withheld studies, then Yvonne's newest; the cap stops it there.
    monkeypatch.setattr(gate, "MAX_SEARCH_DECIDED", 3)
    assert search(StudyDate=ALL_DATES, limit=1) == ([seen[0]], True)
    monkeypatch.setattr(gate, "MAX_SEARCH_DECIDED", 2)
    assert search(StudyDate=ALL_DATES, limit=1) == ([], True)


def test_an_offset_beyond_the_cap_decides_no_more_than_the_cap(cast, searches, monkeypatch):
    from audit.models import AuditEvent
    from consent import gate

    _seen, search = searches
    monkeypatch.setattr(gate, "MAX_SEARCH_DECIDED", 2)
    assert search(StudyDate=ALL_DATES, limit=1, offset=10**9) == ([], True)
    assert AuditEvent.objects.filter(action="study.search").get().detail["decided"] == 2
