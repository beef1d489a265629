"""Response headers of every kind of response: patient data is never kept by a browser's cache."""

import pytest

from tests.conftest import XAVIER_ID
from tests.portal.conftest import admit, consent_to_all

pytestmark = pytest.mark.django_db

KINDS = {
    "portal page": "/patients/{patient}/",
    "REST JSON": "/api/v1/patients/{patient}/studies/",
    "REST browsable HTML": "/api/v1/patients/{patient}/studies/?format=api",
    "QIDO-RS": "/dicomweb/studies?PatientID=CHEM-X1",
    "WADO-RS metadata": "/dicomweb/studies/{study}/metadata",
    "WADO-RS instances": "/dicomweb/studies/{study}",
    "WADO-RS frames": "{instance}/frames/1",
    "rendered JPEG": "{instance}/rendered",
    "rendered PNG": "{instance}/rendered?accept=image/png",
    "DICOMweb error": "/dicomweb/studies/1.2.3/metadata",
    "REST error": "/api/v1/patients/0000000000000/studies/",
    "unknown URL": "/no/such/page/",
}


@pytest.fixture
def alice(cast, xavier_studies, portal_as):
    """Dr Alice, logged in to the portal, allowed to see Xavier's shared CT."""
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    return portal_as("alice")


def _get(client, studies: dict, kind: str):
    ct = studies["ct"]
    study = f"/dicomweb/studies/{ct.study_uid}"
    instance = f"{study}/series/{ct.series_uid}/instances/{ct.sop_instance_uid}"
    url = KINDS[kind].format(patient=XAVIER_ID, study=ct.study_uid, instance=instance)
    response = client.get(url)
    assert response.status_code < 500, kind
    return response


@pytest.mark.parametrize("kind", KINDS)
def test_it_keeps_no_response_in_the_browsers_cache(alice, xavier_studies, kind):
    # A shared hospital workstation: the next user must not find a patient's images or pages
    # in the browser's cache (Back button, disk cache).
    response = _get(alice, xavier_studies, kind)
    assert "no-store" in response.get("Cache-Control", ""), response.get("Cache-Control")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_stylesheet_stays_cacheable(client, db):
    response = client.get("/static/portal.css")
    assert "no-store" not in response.get("Cache-Control", "")
