"""A form's error is said once, next to its own field, and the field is described by it."""

import re

import pytest

from audit.models import AuditEvent
from consent.models import CareRelationship, Exclusion
from tests.conftest import XAVIER_ID

pytestmark = pytest.mark.django_db


def element(html: str, element_id: str) -> str:
    """The opening tag of the element with this id."""
    return re.search(rf'<[^>]*\bid="{re.escape(element_id)}"[^>]*>', html).group(0)


def text_of(html: str, element_id: str) -> str:
    """The text inside the element with this id (an error list)."""
    found = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>(.*?)</\1>', html, re.S)
    return re.sub(r"<[^>]+>", "", found.group(2)).strip()


def described_by(html: str, element_id: str) -> list[str]:
    tag = element(html, element_id)
    found = re.search(r'aria-describedby="([^"]+)"', tag)
    return found.group(1).split() if found else []


def test_choosing_no_hospital_is_said_on_the_hospitals_fieldset(portal_as, cast):
    response = portal_as("xavier").post("/me/consents/", {"scope": "some"})
    html = response.content.decode()
    assert described_by(html, "pick-institutions") == ["id_institutions_error"]
    assert text_of(html, "id_institutions_error") == "Choose at least one hospital."
    assert html.count("Choose at least one hospital.") == 1
    # Inside the fieldset, after its legend: read before the boxes.
    fieldset = re.search(r'<fieldset id="pick-institutions".*?</fieldset>', html, re.S).group(0)
    assert fieldset.index('id="id_institutions_error"') < fieldset.index('type="checkbox"')
    assert 'aria-invalid="true"' in element(html, "id_institutions_0")


@pytest.mark.parametrize(
    ("url", "form", "other"),
    [("/me/doctors/declare/", "declare", "block"), ("/me/doctors/block/", "block", "declare")],
)
@pytest.mark.parametrize("chosen", ["", "nobody"])
def test_a_missing_practitioner_is_said_on_the_field_that_needs_it(
    portal_as, cast, url, form, other, chosen
):
    response = portal_as("xavier").post(url, {"practitioner": chosen})
    assert response.status_code == 400
    html = response.content.decode()
    field = f"{form}-practitioner"
    assert 'aria-invalid="true"' in element(html, field)
    assert described_by(html, field) == [f"{field}_error"]
    assert text_of(html, f"{field}_error") == "Choose a practitioner from the list."
    assert html.count("Choose a practitioner from the list.") == 1  # not also a message on top
    assert "aria-invalid" not in element(html, f"{other}-practitioner")
    assert not Exclusion.objects.exists()
    assert not CareRelationship.objects.exists()
    # The page shown is audited as the page was: the patient's record was read.
    assert AuditEvent.objects.filter(action="record.view", patient=XAVIER_ID).exists()


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("123", "The national identifier must have 13 digits."),
        ("1980051700154", "The 12th digit (Luhn check digit) does not match."),
        ("", "Enter the patient&#x27;s national identifier."),
    ],
)
def test_a_wrong_national_identifier_is_said_once_on_its_field(portal_as, cast, typed, error):
    html = portal_as("alice", "CHL").get("/patients/", {"national_id": typed}).content.decode()
    assert described_by(html, "id_national_id") == [
        "id_national_id_helptext",
        "id_national_id_error",
    ]
    assert text_of(html, "id_national_id_error") == error
    assert text_of(html, "id_national_id_helptext").startswith("The 13-digit")
    assert html.count(error) == 1
    assert "Not a valid national identifier" not in html
