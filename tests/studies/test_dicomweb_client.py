"""dicomweb-client, a real third-party client, against a live server with bearer tokens."""

import datetime
import io

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.utils import timezone
from pydicom import dcmread
from pydicom.uid import generate_uid

from consent.models import CareRelationship
from consent.services.tokens import token_issue

from .conftest import dicom_copy

pytestmark = pytest.mark.django_db(transaction=True)


def _client(live_server, username: str, institution: str | None) -> DICOMwebClient:
    session = requests.Session()
    token = token_issue(username=username, institution_code=institution, days=1)
    session.headers["Authorization"] = f"Bearer {token}"
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)


def _alice_admits_yvonne(cast) -> None:
    """Alice (CHL) has an admission with Yvonne, a CHL patient: she reads her CHL studies."""
    CareRelationship.objects.create(
        practitioner=cast.alice,
        patient=cast.yvonne,
        kind="admission",
        asserted_by="test",
        end=timezone.now() + datetime.timedelta(days=30),
    )


def test_dicomweb_client_stores_searches_and_retrieves(live_server, cast, tmp_path):
    _alice_admits_yvonne(cast)
    study_uid = generate_uid()
    datasets = [
        dcmread(dicom_copy(tmp_path, name, patient_id="CHL-Y1", study_uid=study_uid))
        for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm")
    ]
    pacs = _client(live_server, "chl-pacs", "CHL")
    response = pacs.store_instances(datasets=datasets)
    assert len(response.ReferencedSOPSequence) == 3

    alice = _client(live_server, "alice", "CHL")
    found = alice.search_for_studies(search_filters={"PatientID": "CHL-Y1"})
    assert [s["0020000D"]["Value"][0] for s in found] == [study_uid]
    series = alice.search_for_series(study_uid)
    assert len(series) == 3
    instances = alice.search_for_instances(study_uid)
    assert len(instances) == 3

    retrieved = alice.retrieve_study(study_uid)
    assert sorted(d.SOPInstanceUID for d in retrieved) == sorted(d.SOPInstanceUID for d in datasets)
    by_uid = {d.SOPInstanceUID: d for d in datasets}
    for dataset in retrieved:
        assert dataset == by_uid[dataset.SOPInstanceUID]

    rle = datasets[2]
    metadata = alice.retrieve_instance_metadata(
        study_uid, rle.SeriesInstanceUID, rle.SOPInstanceUID
    )
    assert metadata["00080018"]["Value"] == [rle.SOPInstanceUID]
    ct = datasets[0]
    (frame,) = alice.retrieve_instance_frames(
        study_uid, ct.SeriesInstanceUID, ct.SOPInstanceUID, frame_numbers=[1]
    )
    assert frame == ct.PixelData
    rendered = alice.retrieve_instance_rendered(
        study_uid, ct.SeriesInstanceUID, ct.SOPInstanceUID, media_types=("image/png",)
    )
    assert rendered.startswith(b"\x89PNG")


def test_dicomweb_client_gets_compressed_frames_uncompressed_when_it_asks(
    live_server, cast, tmp_path
):
    """A viewer without codecs: dicomweb-client asking for Explicit VR Little Endian octets
    gets pydicom's decoded pixels of a 30-frame YBR JPEG, not the JPEG bitstream."""
    _alice_admits_yvonne(cast)
    source = dicom_copy(tmp_path, "examples_ybr_color.dcm", patient_id="CHL-Y1")
    dataset = dcmread(source)
    _client(live_server, "chl-pacs", "CHL").store_instances(datasets=[dataset])
    frames = _client(live_server, "alice", "CHL").retrieve_instance_frames(
        dataset.StudyInstanceUID,
        dataset.SeriesInstanceUID,
        dataset.SOPInstanceUID,
        frame_numbers=[30, 2],
        media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
    )
    pixels = dcmread(source).pixel_array
    assert frames == [pixels[29].tobytes(), pixels[1].tobytes()]


def test_dicomweb_client_gets_nothing_of_a_study_it_may_not_see(live_server, cast, tmp_path):
    dataset = dcmread(dicom_copy(tmp_path, patient_id="CHL-Y1"))
    _client(live_server, "chl-pacs", "CHL").store_instances(datasets=[dataset])
    charlie = _client(live_server, "charlie", "HRS")
    assert charlie.search_for_studies() == []
    with pytest.raises(requests.HTTPError) as raised:
        charlie.retrieve_study(dataset.StudyInstanceUID)
    assert raised.value.response.status_code == 403


def test_dicomweb_client_gets_the_readable_instances_of_a_study_with_a_lost_one(
    live_server, cast, tmp_path
):
    from studies import storage
    from studies.models import Instance

    _alice_admits_yvonne(cast)
    study_uid = generate_uid()
    # The lost one first: a stream cut after a readable one would look complete.
    lost, kept = (
        dcmread(dicom_copy(tmp_path, name, patient_id="CHL-Y1", study_uid=study_uid))
        for name in ("CT_small.dcm", "MR_small.dcm")
    )
    _client(live_server, "chl-pacs", "CHL").store_instances(datasets=[lost, kept])
    storage.object_delete(
        key=Instance.objects.get(sop_instance_uid=lost.SOPInstanceUID).storage_key
    )
    (retrieved,) = _client(live_server, "alice", "CHL").retrieve_study(study_uid)
    assert retrieved == kept


def test_dicomweb_client_stores_to_a_study_url_and_sees_an_outsider_refused(
    live_server, cast, tmp_path
):
    """store_instances(study_instance_uid=...) posts to /studies/{study} (PS3.18 10.5.1)."""
    study_uid = generate_uid()
    ours = dcmread(dicom_copy(tmp_path, patient_id="CHL-Y1", study_uid=study_uid))
    other = dcmread(dicom_copy(tmp_path, patient_id="CHL-Y1"))
    pacs = _client(live_server, "chl-pacs", "CHL")
    response = pacs.store_instances(datasets=[ours, other], study_instance_uid=study_uid)
    assert [i.ReferencedSOPInstanceUID for i in response.ReferencedSOPSequence] == [
        ours.SOPInstanceUID
    ]
    (failed,) = response.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
        other.SOPInstanceUID,
        0xA900,
    )
    assert response.RetrieveURL.endswith(f"/dicomweb/studies/{study_uid}")


def test_dicomweb_client_retrieves_the_bulk_data_metadata_references(live_server, cast, tmp_path):
    _alice_admits_yvonne(cast)
    path = dicom_copy(tmp_path, "waveform_ecg.dcm", patient_id="CHL-Y1")
    dataset = dcmread(path)
    _client(live_server, "chl-pacs", "CHL").store_instances(datasets=[dataset])
    alice = _client(live_server, "alice", "CHL")
    metadata = alice.retrieve_instance_metadata(
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID
    )
    items = metadata["54000100"]["Value"]
    assert len(items) == len(dataset.WaveformSequence) == 2
    for item, original in zip(items, dataset.WaveformSequence, strict=True):
        uri = item["54001010"]["BulkDataURI"]
        # dicomweb-client sends its Host header without the port (a workaround of its own
        # for requests): the server's absolute URL names the host as the client gave it.
        path = uri.removeprefix("http://localhost")
        assert path.startswith(f"/dicomweb/studies/{dataset.StudyInstanceUID}/series/")
        assert alice.retrieve_bulkdata(live_server.url + path) == [original.WaveformData]


def test_dicomweb_client_fetches_the_thumbnail_urls_it_builds(live_server, cast, tmp_path):
    """dicomweb-client 0.61 has no thumbnail method, but its URI class builds the four
    thumbnail resources' URLs (URISuffix.THUMBNAIL); a session with Alice's token fetches
    them."""
    from dicomweb_client.uri import URI, URISuffix
    from PIL import Image

    _alice_admits_yvonne(cast)
    dataset = dcmread(dicom_copy(tmp_path, "JPEG2000.dcm", patient_id="CHL-Y1"))
    _client(live_server, "chl-pacs", "CHL").store_instances(datasets=[dataset])
    session = requests.Session()
    token = token_issue(username="alice", institution_code="CHL", days=1)
    session.headers["Authorization"] = f"Bearer {token}"
    uids = (dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)
    base = f"{live_server.url}/dicomweb"
    for depth, frames in ((1, None), (2, None), (3, None), (3, [1])):
        uri = URI(base, *uids[:depth], frames=frames, suffix=URISuffix.THUMBNAIL)
        response = session.get(str(uri), headers={"Accept": "image/png"})
        assert response.status_code == 200, str(uri)
        assert response.headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (32, 128)
