"""?accept= (PS3.18 8.3.3.1) takes the place of the Accept header on every WADO-RS resource:
retrieve, frames and bulk data, as on searches, metadata and renderings."""

import json

import pytest
from pydicom import dcmread
from pydicom.encaps import get_frame

from tests.conftest import client_for

from .conftest import dicom_copy, ingest, multipart_parts, share_with_alice

EXPLICIT_LE = "1.2.840.10008.1.2.1"
DICOM_JSON = "application/dicom+json"


@pytest.fixture
def alice(cast):
    share_with_alice(cast)
    return client_for("alice", "CHL")


@pytest.fixture
def ct(alice, tmp_path):
    return ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))


@pytest.fixture
def jpeg(alice, tmp_path):
    source = dicom_copy(tmp_path, "SC_rgb_jpeg_dcmtk.dcm", patient_id="CHEM-X1")
    return source, ingest(source)


def _path(result, suffix: str = "") -> str:
    return (
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}{suffix}"
    )


@pytest.mark.parametrize(
    "query", ["accept=application%2Fdicom%2Bjson", "accept=application/dicom+json"]
)
def test_the_query_parameter_overrides_the_header_on_an_instance(alice, ct, query):
    """A '+' written as is in the query stays a '+' (RFC 3986 query), not a form's space."""
    response = alice.get(f"{_path(ct)}?{query}", HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200
    assert response["Content-Type"] == DICOM_JSON
    (item,) = json.loads(b"".join(response.streaming_content))
    assert item["00080018"]["Value"] == [ct.sop_instance_uid]


def test_the_query_parameter_overrides_the_header_on_a_study(alice, ct):
    response = alice.get(
        f"/dicomweb/studies/{ct.study_uid}?accept=application/dicom+json",
        HTTP_ACCEPT='multipart/related; type="application/dicom"',
    )
    assert response["Content-Type"] == DICOM_JSON


def test_a_bare_instance_asked_in_the_query_is_served_bare(alice, ct):
    response = alice.get(f"{_path(ct)}?accept=application/dicom", HTTP_ACCEPT=DICOM_JSON)
    assert response["Content-Type"].startswith("application/dicom")
    assert not response["Content-Type"].startswith(DICOM_JSON)


def test_a_query_parameter_that_cannot_be_served_is_406_whatever_the_header(alice, ct):
    response = alice.get(f"{_path(ct)}?accept=image/png", HTTP_ACCEPT="*/*")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"


def test_the_query_parameter_chooses_the_form_of_frames(alice, jpeg):
    source, result = jpeg
    wanted = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'
    response = alice.get(_path(result, "/frames/1"), {"accept": wanted}, HTTP_ACCEPT="image/jpeg")
    ((part_type, data),) = multipart_parts(response)
    assert part_type == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    assert data == dcmread(source).pixel_array.tobytes()
    # And the other way round: the bitstream asked in the query, the header wanting octets.
    response = alice.get(_path(result, "/frames/1"), {"accept": "image/jpeg"}, HTTP_ACCEPT=wanted)
    ((part_type, data),) = multipart_parts(response)
    assert part_type.startswith("image/jpeg")
    assert data == get_frame(dcmread(source).PixelData, 0, number_of_frames=1)


def test_repeated_query_parameters_are_one_list_in_their_order(alice, jpeg):
    _, result = jpeg
    uncompressed = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    response = alice.get(
        f"{_path(result, '/frames/1')}?accept=image/jp2&accept=image/jpeg",
        HTTP_ACCEPT=uncompressed.replace("*", EXPLICIT_LE),
    )
    ((part_type, _),) = multipart_parts(response)
    assert part_type.startswith("image/jpeg")


def _bulkdata_path(alice, result) -> str:
    response = alice.get(_path(result, "/metadata"))
    (metadata,) = json.loads(b"".join(response.streaming_content))
    return metadata["7FE00010"]["BulkDataURI"].removeprefix("http://testserver")


def test_the_query_parameter_chooses_the_form_of_bulk_data(alice, ct):
    path = _bulkdata_path(alice, ct)
    multipart = 'multipart/related; type="application/octet-stream"'
    response = alice.get(f"{path}?accept=application/octet-stream", HTTP_ACCEPT=multipart)
    assert response["Content-Type"] == "application/octet-stream"
    response = alice.get(path, {"accept": multipart}, HTTP_ACCEPT="application/octet-stream")
    assert response["Content-Type"].startswith(multipart)


@pytest.mark.parametrize("frames", ["1,%202", "1,2", "2,%20%201"])
def test_a_frame_list_may_have_spaces_after_its_commas(alice, tmp_path, frames):
    source = dicom_copy(tmp_path, "SC_rgb_rle_2frame.dcm", patient_id="CHEM-X1")
    result = ingest(source)
    wanted = 'multipart/related; type="image/dicom-rle"'
    response = alice.get(_path(result, f"/frames/{frames}"), HTTP_ACCEPT=wanted)
    assert response.status_code == 200
    assert len(multipart_parts(response)) == 2


@pytest.mark.parametrize("frames", ["1%20,2", "%201", "1,%092", "1%202"])
def test_a_space_elsewhere_in_a_frame_list_is_a_400_saying_where_spaces_go(alice, ct, frames):
    response = alice.get(_path(ct, f"/frames/{frames}"))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("frames: a comma-separated list of frame numbers")
    assert "a space may follow a comma" in message
