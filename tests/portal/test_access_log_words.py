"""The patient's access log in the patient's words; the DPO keeps the precise label and code."""

import pytest
from django.utils.html import escape

from audit.actions import PATIENT_WORDS, Action, describe, describe_for_patient
from audit.events import Event
from audit.services import append
from tests.conftest import XAVIER_ID

pytestmark = pytest.mark.django_db

# What a practitioner's viewer does to a study, as the patient reads it.
OPENED = [
    (Action.PATIENT_STUDIES_LIST, "Looked at the list of your studies"),
    (Action.STUDY_METADATA, "Opened the details of a study"),
    (Action.STUDY_RENDER, "Opened images of a study"),
    (Action.STUDY_RETRIEVE, "Downloaded images of a study"),
]


def opened_by_alice() -> None:
    for action, _words in OPENED:
        append(
            Event(
                action=action,
                outcome="permit",
                basis="CONSENT",
                actor_role="practitioner",
                actor_username="alice",
                actor_display="Dr Alice Arend",
                acting_institution="CHL",
                patient=XAVIER_ID,
            )
        )


@pytest.mark.parametrize("action", list(Action))
def test_every_action_has_patient_words_of_its_own(action):
    assert action in PATIENT_WORDS
    words = describe_for_patient(action)
    assert words[0].isupper()
    assert not words.endswith(".")
    assert action.value not in words  # never the code itself


def test_an_unknown_code_is_still_shown_as_it_is():
    assert describe_for_patient("study.teleport") == "study.teleport"


def test_the_patient_reads_what_was_opened_in_plain_words(portal_as, cast):
    opened_by_alice()
    content = portal_as("xavier").get("/me/access-log/").content.decode()
    for action, words in OPENED:
        assert f"<td>{words}</td>" in content
        assert f"<td>{escape(describe(action))}</td>" not in content
        assert action.value not in content


def test_the_dpo_keeps_the_precise_label_and_the_code(portal_as, cast):
    opened_by_alice()
    content = portal_as("dora").get("/dpo/audit/").content.decode()
    for action, words in OPENED:
        assert f"<td>{escape(describe(action))}<div" in content
        assert f">{action.value}</div>" in content
        assert words not in content
