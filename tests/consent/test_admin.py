"""The Django admin for institutions, practitioners and affiliations answers."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/admin/consent/institution/",
        "/admin/consent/institution/add/",
        "/admin/consent/practitioner/",
        "/admin/consent/affiliation/",
        "/admin/consent/patient/",
    ],
)
def test_the_admin_pages_answer(cast, admin_user, client, url: str) -> None:
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_an_institution_page_shows_its_ae_titles(cast, admin_user, client) -> None:
    from consent.models import Institution

    client.force_login(admin_user)
    chl = Institution.objects.get(code="CHL")
    assert b"CHL_PACS" in client.get(f"/admin/consent/institution/{chl.pk}/change/").content


def test_the_patient_page_shows_no_patient_data_and_edits_nothing(cast, admin_user, client) -> None:
    client.force_login(admin_user)
    page = client.get(f"/admin/consent/patient/{cast.xavier.pk}/change/").content.decode()
    assert cast.xavier.national_id in page
    assert "Xavier" not in page
    assert "CHEM-X1" not in page
    assert client.get("/admin/consent/patient/add/").status_code == 403
