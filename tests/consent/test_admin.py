"""The Django admin for institutions, practitioners and affiliations answers."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(admin_client_verified):
    return admin_client_verified


def test_the_admin_requires_the_second_factor(cast, admin_user) -> None:
    from django.test import Client

    password_only = Client()
    password_only.force_login(admin_user)
    response = password_only.get("/admin/consent/institution/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


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
    assert client.get(url).status_code == 200


def test_an_institution_page_shows_its_ae_titles(cast, admin_user, client) -> None:
    from consent.models import Institution

    chl = Institution.objects.get(code="CHL")
    assert b"CHL_PACS" in client.get(f"/admin/consent/institution/{chl.pk}/change/").content


def test_the_patient_page_shows_no_patient_data_and_edits_nothing(cast, admin_user, client) -> None:
    page = client.get(f"/admin/consent/patient/{cast.xavier.pk}/change/").content.decode()
    assert cast.xavier.national_id in page
    assert "Xavier" not in page
    assert "CHEM-X1" not in page
    assert client.get("/admin/consent/patient/add/").status_code == 403
