"""A transfer-syntax named in Accept (PS3.18 8.7.3.5, 8.7.8) is served only as stored: the
most preferred syntax the stored copy has wins, else 406 naming the stored syntaxes; each
part says its syntax."""

import pytest
from pydicom import dcmread

from tests.conftest import client_for

from .conftest import dicom_copy, ingest, multipart_parts, share_with_alice

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG = "1.2.840.10008.1.2.4.50"
BIG_ENDIAN = "1.2.840.10008.1.2.2"


def _dicom(syntax: str, q: str = "") -> str:
    return f'multipart/related; type="application/dicom"; transfer-syntax={syntax}' + (
        f"; q={q}" if q else ""
    )


@pytest.fixture
def alice(cast):
    share_with_alice(cast)
    return client_for("alice", "CHL")


@pytest.fixture
def study(alice, tmp_path) -> dict:
    """Xavier's study of one CT (Explicit VR Little Endian) and one JPEG baseline image."""
    ct_source = dicom_copy(tmp_path, patient_id="CHEM-X1")
    ct = ingest(ct_source)
    jpeg_source = dicom_copy(
        tmp_path, "SC_rgb_jpeg_dcmtk.dcm", patient_id="CHEM-X1", study_uid=ct.study_uid
    )
    jpeg = ingest(jpeg_source)
    return {"ct": (ct_source, ct), "jpeg": (jpeg_source, jpeg)}


def _path(result, suffix: str = "") -> str:
    return (
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}{suffix}"
    )


def _stored_bytes(source) -> bytes:
    return source.read_bytes()


@pytest.mark.parametrize("accept", [_dicom(JPEG), _dicom("*"), None, "*/*"])
def test_an_instance_asked_in_its_stored_syntax_is_served_and_labelled(alice, study, accept):
    source, jpeg = study["jpeg"]
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = alice.get(_path(jpeg), **headers)
    assert response.status_code == 200
    ((part_type, data),) = multipart_parts(response)
    assert part_type == f"application/dicom; transfer-syntax={JPEG}"
    assert dcmread(source).SOPInstanceUID == jpeg.sop_instance_uid
    assert data[132:] == _stored_bytes(source)[132:]


@pytest.mark.parametrize(
    "accept",
    [
        _dicom(EXPLICIT_LE),
        f"application/dicom; transfer-syntax={EXPLICIT_LE}",
        f"{_dicom(EXPLICIT_LE)}, {_dicom(BIG_ENDIAN, '0.5')}",
        f"{_dicom(JPEG, '0')}, */*",  # refused by name, under a wildcard too
    ],
)
def test_an_instance_asked_in_another_syntax_is_406_naming_the_stored_one(alice, study, accept):
    _, jpeg = study["jpeg"]
    response = alice.get(_path(jpeg), HTTP_ACCEPT=accept)
    assert response.status_code == 406
    error = response.json()["error"]
    assert error["code"] == "NOT_ACCEPTABLE"
    assert JPEG in error["message"]


def test_the_clients_next_choice_is_tried_by_q(alice, study):
    _, jpeg = study["jpeg"]
    accept = f"{_dicom(EXPLICIT_LE)}, {_dicom(JPEG, '0.5')}"
    ((part_type, _),) = multipart_parts(alice.get(_path(jpeg), HTTP_ACCEPT=accept))
    assert part_type == f"application/dicom; transfer-syntax={JPEG}"
    # The bare form, named second with its syntax, is chosen over a multipart that is not.
    accept = f"{_dicom(EXPLICIT_LE)}, application/dicom; transfer-syntax={JPEG}; q=0.3"
    response = alice.get(_path(jpeg), HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom"


def test_a_bare_instance_in_its_stored_syntax_is_served(alice, study):
    _, ct = study["ct"]
    response = alice.get(_path(ct), HTTP_ACCEPT=f"application/dicom; transfer-syntax={EXPLICIT_LE}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom"


def test_a_study_is_served_when_every_stored_syntax_is_accepted(alice, study):
    _, ct = study["ct"]
    accept = f"{_dicom(EXPLICIT_LE)}, {_dicom(JPEG, '0.8')}"
    response = alice.get(f"/dicomweb/studies/{ct.study_uid}", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    labels = sorted(part_type for part_type, _ in multipart_parts(response))
    assert labels == sorted(f"application/dicom; transfer-syntax={s}" for s in (EXPLICIT_LE, JPEG))


def test_a_study_with_an_instance_in_a_syntax_not_accepted_is_406_naming_it(alice, study):
    _, ct = study["ct"]
    response = alice.get(f"/dicomweb/studies/{ct.study_uid}", HTTP_ACCEPT=_dicom(EXPLICIT_LE))
    assert response.status_code == 406
    message = response.json()["error"]["message"]
    assert JPEG in message
    assert "transfer-syntax=*" in message


def test_a_series_is_judged_on_its_own_instances(alice, study):
    _, ct = study["ct"]
    path = f"/dicomweb/studies/{ct.study_uid}/series/{ct.series_uid}"
    response = alice.get(path, HTTP_ACCEPT=_dicom(EXPLICIT_LE))
    ((part_type, _),) = multipart_parts(response)
    assert part_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}"


def test_native_frames_say_their_transfer_syntax(alice, study):
    _, ct = study["ct"]
    response = alice.get(_path(ct, "/frames/1"))
    ((part_type, _),) = multipart_parts(response)
    assert part_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"


def test_frames_refused_name_the_stored_syntax(alice, tmp_path):
    result = ingest(dicom_copy(tmp_path, "MR_small_bigendian.dcm", patient_id="CHEM-X1"))
    response = alice.get(_path(result, "/frames/1"), HTTP_ACCEPT="image/jpeg")
    assert response.status_code == 406
    assert f"stored in transfer syntax {BIG_ENDIAN}" in response.json()["error"]["message"]
