"""QIDO-RS study results: the stored attributes' text with the computed ones appended."""

import json

import pytest

from studies.dicom_json import study_result_json
from studies.selectors import StudyHit

URL = "http://testserver/dicomweb/studies/1.2.3"


def _hit(attributes: str, modalities: str = "CT\\MR") -> StudyHit:
    return StudyHit(
        study_uid="1.2.3",
        institution_id=1,
        patient_id=None,
        modalities=modalities,
        series_count=2,
        instance_count=5,
        attributes_json=attributes,
    )


COMPUTED = {
    "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
    "00081190": {"vr": "UR", "Value": [URL]},
    "00201206": {"vr": "IS", "Value": [2]},
    "00201208": {"vr": "IS", "Value": [5]},
}
DATE = {"00080020": {"vr": "DA", "Value": ["20240105"]}}


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (json.dumps(DATE), {**DATE, **COMPUTED}),
        ('{"00080020": {"Value": ["20240105"], "vr": "DA"}}', {**DATE, **COMPUTED}),
        ("{}", COMPUTED),
        (" { } ", COMPUTED),
        # A stored attribute that the result computes is replaced, never repeated.
        (json.dumps({**DATE, "00201208": {"vr": "IS", "Value": [99]}}), {**DATE, **COMPUTED}),
    ],
)
def test_it_appends_the_computed_attributes_to_the_stored_ones(stored, expected):
    text = study_result_json(_hit(stored), url=URL)
    assert json.loads(text) == expected
    assert text.count('"00201208"') == 1


def test_it_adds_what_includefield_asks_for_from_the_stored_attributes():
    name = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Test^Xavier"}]}}
    stored = json.dumps({**DATE, **name})
    found = json.loads(study_result_json(_hit(stored), url=URL, includefield=frozenset({"all"})))
    assert found == {**DATE, **name, **COMPUTED}


def test_it_leaves_empty_modalities_out():
    found = json.loads(study_result_json(_hit("{}", modalities=""), url=URL))
    assert found["00080061"] == {"vr": "CS"}
