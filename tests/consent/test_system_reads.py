"""Hospital systems store and provision, and never read studies back (security review)."""

import pytest

from audit.models import AuditEvent
from consent.models import StudyVisibility
from tests.conftest import XAVIER_ID, YVONNE_ID, client_for
from tests.portal import conftest as portal_fixtures

pytestmark = pytest.mark.django_db
# Real stored studies: Xavier's CT and hidden MR made at CHEM, Yvonne's CT made at CHL.
storage_dir = portal_fixtures.storage_dir
xavier_studies = portal_fixtures.xavier_studies


def refused_for_the_role(response) -> bool:
    return response.status_code == 403 and response.json()["error"]["code"] == "ROLE_NOT_ALLOWED"


def test_a_system_cannot_list_a_patients_studies_even_its_own(cast, xavier_studies):
    chl = client_for("chl-pacs", "CHL")
    assert refused_for_the_role(chl.get(f"/api/v1/patients/{YVONNE_ID}/studies/"))


def test_a_system_learns_nothing_of_another_hospitals_studies(cast, xavier_studies):
    # Xavier's studies were made at CHEM, and he hid both: before, the CHL system was told
    # that CHEM withheld some (OTHER_INSTITUTION), and so that they exist.
    StudyVisibility.objects.create(
        patient=cast.xavier, study_uid=xavier_studies["ct"].study_uid, hidden_by="xavier"
    )
    response = client_for("chl-pacs", "CHL").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    assert refused_for_the_role(response)
    assert "withheld" not in response.json()


def test_a_system_of_a_hospital_with_no_link_learns_nothing(cast, xavier_studies):
    cast._account("hrs-pacs", "system", "HRS")
    response = client_for("hrs-pacs", "HRS").get(f"/api/v1/patients/{XAVIER_ID}/studies/")
    assert refused_for_the_role(response)


@pytest.mark.parametrize("search", ["series", "instances"])
def test_a_system_cannot_search_its_own_studys_series_or_instances(cast, xavier_studies, search):
    uid = xavier_studies["yvonne"].study_uid
    response = client_for("chl-pacs", "CHL").get(f"/dicomweb/studies/{uid}/{search}")
    assert refused_for_the_role(response)


def test_the_refusal_is_audited(cast, xavier_studies):
    client_for("chl-pacs", "CHL").get(f"/api/v1/patients/{YVONNE_ID}/studies/")
    event = AuditEvent.objects.latest("seq")
    assert (event.outcome, event.reason_code, event.actor_username) == (
        "deny",
        "ROLE_NOT_ALLOWED",
        "chl-pacs",
    )
