"""What a clinician reads: refusals in plain sentences, controls that say what they act on."""

import re

import pytest

from tests.conftest import XAVIER_ID
from tests.portal.conftest import admit, consent_to_all

pytestmark = pytest.mark.django_db


def text(html: str) -> str:
    """The visible words of the page's main content, tags removed."""
    main = re.search(r"<main\b.*?</main>", html, re.S).group(0)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main))


def test_a_refusal_says_why_in_a_sentence_and_keeps_the_code_as_a_reference(portal_as, cast):
    response = portal_as("alice", "CHL").get(f"/patients/{XAVIER_ID}/")
    assert response.status_code == 403
    html = response.content.decode()
    words = text(html)
    sentence = words.index("You have no active care relationship with the patient.")
    assert words.count("NO_CARE_RELATIONSHIP") == 1
    assert sentence < words.index("Reference for support: NO_CARE_RELATIONSHIP")
    (reference,) = re.findall(r"<p[^>]*>[^<]*Reference for support:.*?</p>", html, re.S)
    assert 'class="small' in reference


def test_a_withheld_hospital_gives_its_code_only_as_a_reference(portal_as, cast, xavier_studies):
    admit(cast.alice, cast.xavier)
    words = text(portal_as("alice", "CHL").get(f"/patients/{XAVIER_ID}/").content.decode())
    assert (
        "CHEM : The patient has not consented to sharing with your hospital."
        " (reference NO_CONSENT )" in words
    )


def test_each_open_button_names_its_study_but_not_the_patient(portal_as, cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    response = portal_as("alice", "CHL").get(f"/patients/{XAVIER_ID}/")
    (study,) = response.context["studies"]
    links = re.findall(r'<a class="btn small" href="[^"]+">(.*?)</a>', response.content.decode())
    names = [re.sub(r"<[^>]+>", "", link) for link in links]
    assert names == [f"Open study of {study.study_date:%-d %b %Y}: CT thorax"]
    assert "Xavier" not in links[0]
    assert '<span class="sr-only"> study of' in links[0]  # the button still reads "Open"
