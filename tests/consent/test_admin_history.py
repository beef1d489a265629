"""The admin shows consents, care links, exclusions, hidden studies and emergencies, read-only."""

import pytest

from .conftest import care, consent_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model", ["consent", "carerelationship", "exclusion", "studyvisibility", "emergencyaccess"]
)
def test_the_history_pages_answer_and_cannot_add(cast, admin_client_verified, model):
    client = admin_client_verified
    consent_for(cast.xavier)
    care(cast.alice, cast.xavier)
    assert client.get(f"/admin/consent/{model}/").status_code == 200
    assert client.get(f"/admin/consent/{model}/add/").status_code == 403
