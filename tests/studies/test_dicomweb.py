"""DICOMweb: QIDO-RS, WADO-RS and STOW-RS through the gate, with the DRF error shape."""

import datetime
import io
import json
import secrets
from pathlib import Path

import pytest
from django.core.files import File
from django.utils import timezone
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.uid import generate_uid

from audit.models import AuditEvent
from studies import storage
from studies.models import Instance, Study
from tests.conftest import XAVIER_ID, client_for

from .conftest import (
    dicom_copy,
    hide,
    ingest,
    multipart_parts,
    pydicom_file,
    pydicom_files,
    share_with_alice,
)

# PS3.18 8.3.4.4.1's warning on a search page that more results follow.
MORE = (
    '299 anim-gateway "The number of results exceeded the maximum supported by the server.'
    ' Additional results can be requested."'
)


@pytest.fixture
def xavier_studies(cast, tmp_path):
    """Two CHEM studies of Xavier (the MR one hidden by him) and a CHL study of Yvonne."""
    shown = ingest(
        dicom_copy(tmp_path, patient_id="CHEM-X1", AccessionNumber="ACC1", StudyDate="20240105")
    )
    hidden = ingest(
        dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1", StudyDate="20240210")
    )
    jpeg = ingest(
        dicom_copy(
            tmp_path,
            "SC_rgb_jpeg_dcmtk.dcm",
            patient_id="CHEM-X1",
            study_uid=shown.study_uid,
        )
    )
    other = ingest(dicom_copy(tmp_path, patient_id="CHL-Y1", StudyDate="20240301"), "CHL")
    hide(cast.xavier, hidden.study_uid)
    return {"shown": shown, "hidden": hidden, "jpeg": jpeg, "other": other}


@pytest.fixture
def alice(cast, xavier_studies):
    share_with_alice(cast)
    return client_for("alice", "CHL")


def _path(result, suffix: str = "") -> str:
    return (
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}{suffix}"
    )


# --- QIDO-RS -------------------------------------------------------------------------------


def test_it_finds_the_shared_study_but_not_the_hidden_one(alice, xavier_studies):
    response = alice.get("/dicomweb/studies", {"PatientID": "CHEM-X1"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    found = json.loads(response.content)
    assert [s["0020000D"]["Value"][0] for s in found] == [xavier_studies["shown"].study_uid]
    study = found[0]
    assert study["00080050"]["Value"] == ["ACC1"]
    assert study["00201208"]["Value"] == [2]
    assert sorted(study["00080061"]["Value"]) == ["CT", "OT"]
    assert study["00081190"]["Value"][0].endswith(
        f"/dicomweb/studies/{study['0020000D']['Value'][0]}"
    )


def test_the_result_urls_follow_the_script_prefix_of_each_request(alice, xavier_studies):
    """Behind a proxy that mounts the gateway under a path: the reversed base is cached per
    prefix, never shared between them."""
    from django.urls import set_script_prefix

    uid = xavier_studies["shown"].study_uid
    try:
        for prefix in ("", "/pacs", ""):
            # What the WSGI handler does with SCRIPT_NAME (the test client does not).
            set_script_prefix(prefix + "/")
            found = json.loads(alice.get("/dicomweb/studies").content)
            url = found[0]["00081190"]["Value"][0]
            assert url == f"http://testserver{prefix}/dicomweb/studies/{uid}"
    finally:
        set_script_prefix("/")


def test_it_audits_one_search_event_per_query(alice, xavier_studies):
    alice.get("/dicomweb/studies", {"StudyDate": "20240101-20241231"})
    event = AuditEvent.objects.filter(action="study.search").get()
    assert (event.outcome, event.actor_username, event.acting_institution) == (
        "permit",
        "alice",
        "CHL",
    )
    assert event.detail["keys"] == ["StudyDate"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"StudyDate": "20240101-20240131"}, 1),
        ({"StudyDate": "20240201-"}, 0),
        ({"StudyDate": "-20231231"}, 0),
        ({"00080050": "ACC1"}, 1),
        ({"AccessionNumber": "ACC*"}, 1),
        ({"ModalitiesInStudy": "CT"}, 1),
        ({"ModalitiesInStudy": "MR"}, 0),
        ({"PatientID": "CHEM-X1", "limit": "1", "offset": "1"}, 0),
    ],
)
def test_it_matches_on_the_qido_keys(alice, xavier_studies, params, expected):
    response = alice.get("/dicomweb/studies", params)
    assert len(json.loads(response.content)) == expected


def test_it_pages_with_limit_and_offset(cast, tmp_path):
    share_with_alice(cast)
    for day in range(1, 6):
        ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate=f"2024010{day}"))
    alice = client_for("alice", "CHL")
    responses = [alice.get("/dicomweb/studies", {"limit": 2, "offset": o}) for o in (0, 2, 4)]
    pages = [json.loads(r.content) for r in responses]
    dates = [s["00080020"]["Value"][0] for page in pages for s in page]
    assert dates == ["20240105", "20240104", "20240103", "20240102", "20240101"]
    # PS3.18 8.3.4.4.1's warning while more results follow, none on the last page.
    assert [r.get("Warning") for r in responses] == [MORE, MORE, None]


def test_a_hidden_study_leaves_no_gap_in_a_page(alice, xavier_studies):
    # The hidden MR study is Xavier's newest: were it left out by the gate alone, the first
    # page of one would come out empty and reveal it.
    responses = [alice.get("/dicomweb/studies", {"limit": 1, "offset": o}) for o in (0, 1)]
    pages = [json.loads(r.content) for r in responses]
    assert [[s["0020000D"]["Value"][0] for s in page] for page in pages] == [
        [xavier_studies["shown"].study_uid],
        [],
    ]
    # Nor does the first page announce that more follow: the hidden study is not in scope.
    assert [r.get("Warning") for r in responses] == [None, None]


def test_a_hidden_study_is_still_found_at_the_institution_that_made_it(cast, xavier_studies):
    import datetime

    from django.utils import timezone

    from consent.models import CareRelationship

    # Rule 5 hides a study from the other institutions only: Bob works at CHEM, where the
    # hidden MR study was made.
    CareRelationship.objects.create(
        practitioner=cast.bob,
        patient=cast.xavier,
        kind="admission",
        asserted_by="test",
        end=timezone.now() + datetime.timedelta(days=30),
    )
    found = json.loads(client_for("bob", "CHEM").get("/dicomweb/studies").content)
    uids = {s["0020000D"]["Value"][0] for s in found}
    assert uids == {xavier_studies["shown"].study_uid, xavier_studies["hidden"].study_uid}


def test_a_page_counts_only_the_studies_the_caller_may_see(cast, tmp_path):
    """Alice cares for Xavier, who has not consented: his CHL study (her institution) is
    listed, his newer CHEM study is withheld and takes no place on a page."""
    import datetime

    from django.utils import timezone

    from consent.models import CareRelationship

    CareRelationship.objects.create(
        practitioner=cast.alice,
        patient=cast.xavier,
        kind="admission",
        asserted_by="test",
        end=timezone.now() + datetime.timedelta(days=30),
    )
    ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240301"))
    local = ingest(
        dicom_copy(tmp_path, patient_id="CHEM-X1", issuer="CHEM", StudyDate="20240101"), "CHL"
    )
    alice = client_for("alice", "CHL")
    responses = [alice.get("/dicomweb/studies", {"limit": 1, "offset": o}) for o in (0, 1)]
    pages = [json.loads(r.content or b"[]") for r in responses]
    assert [[s["0020000D"]["Value"][0] for s in page] for page in pages] == [[local.study_uid], []]
    assert [r.get("Warning") for r in responses] == [None, None]
    details = [e.detail for e in AuditEvent.objects.filter(action="study.search").order_by("pk")]
    assert [(d["studies"], d["permitted"], d["decided"]) for d in details] == [(1, 1, 2), (0, 0, 2)]
    assert details[0]["withheld"] == [["CHEM", "NO_CONSENT"]]


def test_a_search_costs_a_fixed_number_of_queries(cast, tmp_path, django_assert_num_queries):
    from django.db import connection

    share_with_alice(cast)
    for day in range(1, 8):
        ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate=f"2024010{day}"))
    alice = client_for("alice", "CHL")
    alice.get("/dicomweb/studies", {"limit": 2})
    # Token; care relationships and emergency accesses (the scope: two statements on
    # SQLite); the page; the gate: the fact query (with the institution codes and the
    # patient's national ID), the audit append (a savepoint around it; on SQLite its head
    # read, insert and update are counted too). On PostgreSQL the scope and the page are
    # read inside the gate's fact query: token, fact query, savepoint and its release. The
    # rows before an offset are decided in the same statement, as the page's are.
    expected = 4 if connection.vendor == "postgresql" else 10
    for params in ({"limit": 2}, {"limit": 5, "offset": 2}, {"PatientID": "CHEM-X1"}):
        with django_assert_num_queries(expected):
            found = json.loads(alice.get("/dicomweb/studies", params).content)
        assert found


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "x"}, "limit"), ({"limit": "0"}, "limit"), ({"StudyDate": "2024"}, "StudyDate")],
)
def test_it_refuses_a_malformed_query_naming_the_parameter(alice, params, field):
    response = alice.get("/dicomweb/studies", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID"
    assert response.json()["error"]["message"].startswith(field)


def test_it_lists_series_and_instances_of_a_study(alice, xavier_studies):
    shown = xavier_studies["shown"]
    series = json.loads(alice.get(f"/dicomweb/studies/{shown.study_uid}/series").content)
    assert len(series) == 2
    instances = json.loads(alice.get(f"/dicomweb/studies/{shown.study_uid}/instances").content)
    assert {i["00080018"]["Value"][0] for i in instances} == {
        shown.sop_instance_uid,
        xavier_studies["jpeg"].sop_instance_uid,
    }
    in_series = alice.get(
        f"/dicomweb/studies/{shown.study_uid}/series/{shown.series_uid}/instances",
        {"includefield": "all"},
    )
    (instance,) = json.loads(in_series.content)
    assert instance["00100020"]["Value"] == ["CHEM-X1"]


def test_a_study_instance_search_returns_the_series_attributes_too(alice, xavier_studies):
    """PS3.18 10.6.3.3.3: a study's instances carry their series' attributes (Table
    10.6.3-4), and each instance its Instance Availability (Table 10.6.3-5)."""
    shown = xavier_studies["shown"]
    instances = json.loads(alice.get(f"/dicomweb/studies/{shown.study_uid}/instances").content)
    by_uid = {i["00080018"]["Value"][0]: i for i in instances}
    ct = by_uid[shown.sop_instance_uid]
    assert ct["00080060"]["Value"] == ["CT"]  # Modality
    assert ct["00201209"]["Value"] == [1]  # Number of Series Related Instances
    assert by_uid[xavier_studies["jpeg"].sop_instance_uid]["00080060"]["Value"] == ["OT"]
    assert ct["00080056"]["Value"] == ["ONLINE"]
    Instance.objects.filter(sop_instance_uid=shown.sop_instance_uid).update(fixity_ok=False)
    in_series = f"/dicomweb/studies/{shown.study_uid}/series/{shown.series_uid}/instances"
    (lost,) = json.loads(alice.get(in_series).content)
    assert lost["00080056"]["Value"] == ["UNAVAILABLE"]
    assert "00201209" not in lost  # a series' instances: the series is the caller's own


def test_series_and_instance_searches_page_and_warn_while_more_follow(three_instances):
    one = three_instances[1]
    alice = client_for("alice", "CHL")
    instances = f"/dicomweb/studies/{one.study_uid}/series/{one.series_uid}/instances"
    responses = [alice.get(instances, {"limit": 2, "offset": o}) for o in (0, 2)]
    assert [_numbers(json.loads(r.content)) for r in responses] == [[1, 2], [3]]
    assert [r.get("Warning") for r in responses] == [MORE, None]
    series = alice.get(f"/dicomweb/studies/{one.study_uid}/series", {"limit": 1})
    assert len(json.loads(series.content)) == 1
    assert "Warning" not in series  # the study's one series


FUZZY = (
    '299 anim-gateway "The fuzzymatching parameter is not supported.'
    ' Only literal matching has been performed."'
)


@pytest.mark.parametrize(
    "path",
    [
        "/dicomweb/studies",
        "/dicomweb/studies/{study}/series",
        "/dicomweb/studies/{study}/instances",
    ],
)
def test_a_search_asking_for_fuzzy_matching_is_warned_it_was_literal(alice, xavier_studies, path):
    """PS3.18 8.3.4.2: an origin server without fuzzy matching says so in a Warning."""
    path = path.format(study=xavier_studies["shown"].study_uid)
    response = alice.get(path, {"fuzzymatching": "true"})
    assert response.status_code == 200
    assert response["Warning"] == FUZZY
    assert "Warning" not in alice.get(path, {"fuzzymatching": "false"})


def test_the_warnings_of_a_search_come_in_one_header(alice, xavier_studies):
    study = xavier_studies["shown"].study_uid  # two instances: a page of one has more after it
    response = alice.get(
        f"/dicomweb/studies/{study}/instances",
        {"limit": 1, "fuzzymatching": "true", "multiplevaluematching": "true"},
    )
    assert response["Warning"] == ", ".join(
        [
            FUZZY,
            '299 anim-gateway "The multiplevaluematching parameter is not supported.'
            ' Multiple Value Matching has not been performed."',
            MORE,
        ]
    )


def test_bob_without_care_relationship_finds_nothing_of_another_hospital(cast, xavier_studies):
    share_with_alice(cast)
    response = client_for("charlie", "HRS").get("/dicomweb/studies")
    assert json.loads(response.content) == []


def test_an_unreconciled_study_is_visible_to_its_own_institution_only(cast, tmp_path):
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-UNKNOWN"))
    assert Study.objects.get().patient is None
    bob = client_for("bob", "CHEM")
    assert len(json.loads(bob.get("/dicomweb/studies").content)) == 1
    assert bob.get(f"/dicomweb/studies/{result.study_uid}/metadata").status_code == 200
    alice = client_for("alice", "CHL")
    assert json.loads(alice.get("/dicomweb/studies").content) == []
    assert alice.get(f"/dicomweb/studies/{result.study_uid}/metadata").status_code == 403


# --- WADO-RS -------------------------------------------------------------------------------


def test_it_serves_the_stored_bytes_of_a_study(alice, xavier_studies, tmp_path):
    shown = xavier_studies["shown"]
    response = alice.get(f"/dicomweb/studies/{shown.study_uid}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith('multipart/related; type="application/dicom"')
    parts = multipart_parts(response)
    # Each part says the transfer syntax it is stored in (the CT's, then the JPEG's).
    assert [t for t, _ in parts] == [
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50",
    ]
    stored = {
        i.sop_instance_uid: b"".join(storage.object_chunks(key=i.storage_key))
        for i in Instance.objects.filter(study__study_uid=shown.study_uid)
    }
    assert sorted(body for _, body in parts) == sorted(stored.values())
    event = AuditEvent.objects.filter(action="study.retrieve").get()
    assert (event.outcome, event.basis, event.study_uid) == ("permit", "CONSENT", shown.study_uid)


def test_it_serves_one_series_and_one_instance(alice, xavier_studies):
    shown = xavier_studies["shown"]
    series = alice.get(f"/dicomweb/studies/{shown.study_uid}/series/{shown.series_uid}")
    assert len(multipart_parts(series)) == 1
    (part,) = multipart_parts(alice.get(_path(shown)))
    assert dcmread(io.BytesIO(part[1])).SOPInstanceUID == shown.sop_instance_uid


def test_it_serves_metadata_without_opening_the_files(alice, xavier_studies, private_storage):
    shown = xavier_studies["shown"]
    for path in private_storage.rglob("*.dcm"):
        path.unlink()
    response = alice.get(f"/dicomweb/studies/{shown.study_uid}/metadata")
    assert response.status_code == 200
    items = json.loads(b"".join(response.streaming_content))
    assert len(items) == 2
    # Pixel Data is referenced (PS3.18 F.2.6), never inline.
    assert all("InlineBinary" not in item.get("7FE00010", {}) for item in items)
    one = json.loads(alice.get(_path(shown, "/metadata")).getvalue())
    assert one[0]["00080018"]["Value"] == [shown.sop_instance_uid]


@pytest.fixture
def three_instances(cast, tmp_path):
    """One CHEM study of Xavier, one series of three instances stored out of order."""
    share_with_alice(cast)
    study_uid, series_uid = generate_uid(), generate_uid()
    results = {
        number: ingest(
            dicom_copy(
                tmp_path,
                patient_id="CHEM-X1",
                study_uid=study_uid,
                series_uid=series_uid,
                InstanceNumber=number,
            )
        )
        for number in (3, 1, 2)
    }
    return results


def _numbers(items: list[dict]) -> list[int]:
    return [item["00200013"]["Value"][0] for item in items]


@pytest.mark.parametrize("chunk", [200, 2, 1])
def test_metadata_comes_in_display_order_whatever_the_chunk(three_instances, chunk, monkeypatch):
    from studies import lookups

    monkeypatch.setattr(lookups, "METADATA_CHUNK", chunk)
    one = three_instances[1]
    alice = client_for("alice", "CHL")
    for path in (
        f"/dicomweb/studies/{one.study_uid}/metadata",
        f"/dicomweb/studies/{one.study_uid}/series/{one.series_uid}/metadata",
    ):
        response = alice.get(path)
        assert response.status_code == 200
        pieces = list(response.streaming_content)
        assert _numbers(json.loads(b"".join(pieces))) == [1, 2, 3]
        # In one piece with its length when it fits in one chunk, streamed otherwise.
        assert (len(pieces) == 1) == (chunk >= 3)
        assert response.has_header("Content-Length") == (chunk >= 3)


def test_a_small_instance_is_served_in_one_piece_with_its_length(alice, xavier_studies):
    shown = xavier_studies["shown"]
    stored = Instance.objects.get(sop_instance_uid=shown.sop_instance_uid)
    expected = b"".join(storage.object_chunks(key=stored.storage_key))
    for accept in ("application/dicom", 'multipart/related; type="application/dicom"'):
        response = alice.get(_path(shown), HTTP_ACCEPT=accept)
        pieces = list(response.streaming_content)
        assert len(pieces) == 1
        assert response["Content-Length"] == str(len(pieces[0]))
        assert expected in pieces[0]


def test_a_larger_instance_is_streamed(alice, xavier_studies, monkeypatch):
    from studies import lookups

    monkeypatch.setattr(lookups, "SMALL_OBJECT", 100)
    monkeypatch.setattr(storage, "CHUNK_SIZE", 1000)
    shown = xavier_studies["shown"]
    stored = Instance.objects.get(sop_instance_uid=shown.sop_instance_uid)
    expected = b"".join(storage.object_chunks(key=stored.storage_key))
    response = alice.get(_path(shown), HTTP_ACCEPT="application/dicom")
    pieces = list(response.streaming_content)
    assert len(pieces) > 1
    assert not response.has_header("Content-Length")
    assert b"".join(pieces) == expected
    ((_, data),) = multipart_parts(alice.get(_path(shown)))
    assert data == expected


@pytest.mark.parametrize(
    ("suffix", "accept", "small"),
    [
        # A whole instance, held in memory or streamed (its size decides).
        ("", "application/dicom", True),
        ("", "application/dicom", False),
        ("", 'multipart/related; type="application/dicom"', True),
        ("", 'multipart/related; type="application/dicom"', False),
        ("/frames/1", "*/*", True),
        ("/rendered", "image/png", True),
    ],
)
def test_a_lost_object_is_an_error_that_says_so_not_a_cut_stream(
    alice, xavier_studies, monkeypatch, small, suffix, accept
):
    from studies import lookups

    if not small:
        monkeypatch.setattr(lookups, "SMALL_OBJECT", 100)  # streamed
    shown = xavier_studies["shown"]
    storage.object_delete(
        key=Instance.objects.get(sop_instance_uid=shown.sop_instance_uid).storage_key
    )
    response = alice.get(_path(shown, suffix), HTTP_ACCEPT=accept)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "OBJECT_UNAVAILABLE"


def test_a_study_with_a_lost_instance_comes_as_partial_content_that_says_so(alice, xavier_studies):
    shown, jpeg = xavier_studies["shown"], xavier_studies["jpeg"]
    kept = Instance.objects.get(sop_instance_uid=shown.sop_instance_uid)
    storage.object_delete(
        key=Instance.objects.get(sop_instance_uid=jpeg.sop_instance_uid).storage_key
    )
    response = alice.get(f"/dicomweb/studies/{shown.study_uid}")
    assert response.status_code == 206
    assert '"B000: 1 of 2 instances cannot be read' in response["Warning"]
    assert response["Cache-Control"] == "no-store"
    ((_, data),) = multipart_parts(response)
    assert data == b"".join(storage.object_chunks(key=kept.storage_key))


def test_a_study_whose_instances_are_all_lost_is_an_error_not_an_empty_answer(
    alice, xavier_studies
):
    study_uid = xavier_studies["shown"].study_uid
    for instance in Instance.objects.filter(study__study_uid=study_uid):
        storage.object_delete(key=instance.storage_key)
    response = alice.get(f"/dicomweb/studies/{study_uid}")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "OBJECT_UNAVAILABLE"
    assert error["message"].startswith("The stored copies of these instances cannot be read")


def test_an_object_that_fails_once_open_is_unavailable_not_a_generic_error(
    alice, xavier_studies, monkeypatch, caplog
):
    from botocore.exceptions import EndpointConnectionError

    # S3 opens an object lazily: its failures come at the first read, as botocore's own
    # exceptions (not OSError).
    class CutOffStream(io.BytesIO):
        def read(self, *args):
            raise EndpointConnectionError(endpoint_url="https://s3.example/bucket")

    monkeypatch.setattr(storage, "object_open", lambda key: File(CutOffStream(), name=key))
    shown = xavier_studies["shown"]
    response = alice.get(_path(shown), HTTP_ACCEPT="application/dicom")
    assert response.status_code == 503  # the storage is down, not the object lost
    assert response.json()["error"]["code"] == "OBJECT_UNAVAILABLE"
    assert "EndpointConnectionError" in caplog.text
    assert "s3.example" not in caplog.text


def test_it_serves_a_native_frame(alice, xavier_studies):
    shown = xavier_studies["shown"]
    ((part_type, data),) = multipart_parts(alice.get(_path(shown, "/frames/1")))
    assert part_type == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert data == dcmread(pydicom_file("CT_small.dcm")).PixelData


def test_it_serves_a_compressed_frame_as_its_bitstream(alice, xavier_studies):
    jpeg = xavier_studies["jpeg"]
    response = alice.get(_path(jpeg, "/frames/1"))
    # RFC 2387 3.1: the type parameter is a bare media type; the syntax is a parameter apart.
    assert response["Content-Type"].startswith(
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50; boundary='
    )
    ((part_type, data),) = multipart_parts(response)
    assert part_type == "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    original = dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert data == get_frame(original.PixelData, 0, number_of_frames=1)


@pytest.mark.parametrize("name", ["shown", "jpeg"])  # native, and walked through fragments
def test_a_storage_failing_under_a_frame_is_logged_as_the_storage_and_ends_the_part(
    alice, xavier_studies, monkeypatch, caplog, name
):
    """S3 opens lazily: the object opens, then its reads fail while the answer streams."""
    from botocore.exceptions import EndpointConnectionError

    class CutOffStream(io.BytesIO):
        def read(self, *args):
            raise EndpointConnectionError(endpoint_url="https://s3.example/bucket")

    monkeypatch.setattr(storage, "object_open", lambda key: File(CutOffStream(), name=key))
    response = alice.get(_path(xavier_studies[name], "/frames/1"))
    assert response.status_code == 200  # the answer had started
    ((_, data),) = multipart_parts(response)
    assert data == b""
    assert "cannot be read: EndpointConnectionError" in caplog.text
    assert "s3.example" not in caplog.text


def test_it_refuses_a_frame_out_of_range(alice, xavier_studies):
    response = alice.get(_path(xavier_studies["shown"], "/frames/2"))
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("frames:")


@pytest.mark.parametrize(
    ("accept", "magic"),
    [("image/jpeg", b"\xff\xd8"), ("image/png", b"\x89PNG"), ("*/*", b"\xff\xd8")],
)
def test_it_renders_a_frame(alice, xavier_studies, accept, magic):
    response = alice.get(_path(xavier_studies["shown"], "/rendered"), HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response.content.startswith(magic)
    assert AuditEvent.objects.filter(action="study.render", outcome="permit").count() == 1


def test_it_renders_with_a_window_and_a_compressed_frame(alice, xavier_studies):
    response = alice.get(_path(xavier_studies["shown"], "/rendered"), {"window": "40,400"})
    assert response.content.startswith(b"\xff\xd8")
    response = alice.get(_path(xavier_studies["jpeg"], "/frames/1/rendered"))
    assert response.content.startswith(b"\xff\xd8")


@pytest.mark.parametrize(
    ("viewport", "size"), [("32,32", (32, 32)), ("64,16", (16, 16)), ("300,600", (300, 300))]
)
def test_a_rendering_fits_the_viewport_asked_for(alice, xavier_studies, viewport, size):
    """PS3.18 8.3.5.1.3: the whole image, scaled to fit vw,vh, its aspect ratio kept (the
    CT is 128 x 128)."""
    from PIL import Image

    path = _path(xavier_studies["shown"], "/rendered")
    response = alice.get(path, {"viewport": viewport})
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == size


def test_a_lower_quality_asked_for_gives_a_smaller_jpeg(alice, xavier_studies):
    path = _path(xavier_studies["shown"], "/rendered")
    low, high = (len(alice.get(path, {"quality": q}).content) for q in (5, 95))
    assert low < high


@pytest.mark.parametrize(
    "params",
    [
        {"viewport": "32"},
        {"viewport": "0,32"},
        {"viewport": "32,32,0,0,10,10"},
        {"viewport": "99999,32"},
        {"quality": "0"},
        {"quality": "high"},
    ],
)
def test_it_refuses_a_malformed_viewport_or_quality(alice, xavier_studies, params):
    response = alice.get(_path(xavier_studies["shown"], "/rendered"), params)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(next(iter(params)) + ":")


def _lut_item(descriptor: list[int], data: list[int]):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = descriptor
    item.add_new(0x00283006, "US", data)  # LUTData
    item.ModalityLUTType = "HU"
    return item


@pytest.mark.parametrize(
    "attributes",
    [
        {"PhotometricInterpretation": "PALETTE COLOR"},  # and no palette to apply
        {"ModalityLUTSequence": [_lut_item([4096, 0, 16], [1, 2, 3])]},  # a short table
        {"ModalityLUTSequence": [_lut_item([4096, 0, 99], [1] * 4096)]},  # 99 bits
    ],
    ids=["palette without table", "short modality LUT", "99-bit modality LUT"],
)
def test_a_frame_whose_lookup_tables_do_not_apply_is_not_renderable_not_a_500(
    cast, tmp_path, attributes
):
    from pydicom.sequence import Sequence

    values = {k: Sequence(v) if isinstance(v, list) else v for k, v in attributes.items()}
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", **values))
    assert result.status == "stored"
    share_with_alice(cast)
    client = client_for("alice", "CHL")
    client.raise_request_exception = False
    response = client.get(_path(result, "/rendered"), HTTP_ACCEPT="image/png")
    assert response.status_code == 406
    error = response.json()["error"]
    assert error["code"] == "NOT_RENDERABLE"
    assert error["message"].startswith("The frame's lookup tables cannot be applied")


def test_it_refuses_an_unrenderable_media_type(alice, xavier_studies):
    response = alice.get(_path(xavier_studies["shown"], "/rendered"), HTTP_ACCEPT="image/gif")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"


# --- the gate on every endpoint ------------------------------------------------------------

ENDPOINTS = [
    "/dicomweb/studies/{study}",
    "/dicomweb/studies/{study}/metadata",
    "/dicomweb/studies/{study}/series",
    "/dicomweb/studies/{study}/instances",
    "/dicomweb/studies/{study}/series/{series}",
    "/dicomweb/studies/{study}/series/{series}/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1/rendered",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered?viewport=64,64&quality=80",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulkdata/0-1",
]


def _fill(template: str, result) -> str:
    return template.format(
        study=result.study_uid, series=result.series_uid, sop=result.sop_instance_uid
    )


# Each endpoint as any client asks, and those with a DICOM JSON form asked for it (PS3.18
# 10.4.4: their metadata).
HIDDEN_CASES = (
    [(t, "*/*") for t in ENDPOINTS]
    + [
        (t, "application/dicom+json")
        for t in ENDPOINTS
        if "/frames/" not in t and "/rendered" not in t and "/bulkdata/" not in t
    ]
    # ... and those with an XML form, asked for that (PS3.18 10.4.4; searches too).
    + [
        (t, 'multipart/related; type="application/dicom+xml"')
        for t in ENDPOINTS
        if t.endswith(("/metadata", "/series", "/instances"))
    ]
)


@pytest.mark.parametrize(("template", "accept"), HIDDEN_CASES)
def test_a_hidden_study_looks_exactly_like_an_unknown_one(alice, xavier_studies, template, accept):
    hidden = alice.get(_fill(template, xavier_studies["hidden"]), HTTP_ACCEPT=accept)
    unknown_uid = generate_uid()
    unknown = alice.get(
        _fill(
            template,
            type(
                "R",
                (),
                {
                    "study_uid": unknown_uid,
                    "series_uid": generate_uid(),
                    "sop_instance_uid": generate_uid(),
                },
            ),
        ),
        HTTP_ACCEPT=accept,
    )
    assert hidden.status_code == unknown.status_code == 404
    assert (
        hidden.json()
        == unknown.json()
        == {"error": {"code": "NOT_FOUND", "message": "No such study."}}
    )
    reasons = set(AuditEvent.objects.filter(outcome="deny").values_list("reason_code", flat=True))
    assert reasons == {"STUDY_HIDDEN", "NOT_FOUND"}


def test_a_hidden_study_is_never_found(alice, xavier_studies):
    hidden = xavier_studies["hidden"]
    for params in ({}, {"StudyInstanceUID": hidden.study_uid}, {"PatientID": "CHEM-X1"}):
        found = json.loads(alice.get("/dicomweb/studies", params).content)
        assert hidden.study_uid not in json.dumps(found)


@pytest.mark.parametrize("suffix", ["", "/metadata", "/frames/1"])
def test_an_instance_of_another_study_is_not_in_this_one(alice, xavier_studies, suffix):
    """The instance is looked up with its study in one query; under a permitted study's URL
    an instance of the hidden study answers like an instance that does not exist."""
    shown, hidden = xavier_studies["shown"], xavier_studies["hidden"]
    study = f"/dicomweb/studies/{shown.study_uid}"
    before = AuditEvent.objects.count()
    moved = alice.get(
        f"{study}/series/{hidden.series_uid}/instances/{hidden.sop_instance_uid}{suffix}"
    )
    missing = alice.get(f"{study}/series/{generate_uid()}/instances/{generate_uid()}{suffix}")
    assert moved.status_code == missing.status_code == 404
    assert moved.json() == missing.json()
    assert missing.json()["error"]["message"] == "No such instance in this series."
    # Each request decided (and audited) on the study of its URL alone.
    events = AuditEvent.objects.order_by("seq")[before:].values_list("outcome", "study_uid")
    assert list(events) == [("permit", shown.study_uid)] * 2


def test_an_instance_costs_a_fixed_number_of_queries(
    alice, xavier_studies, django_assert_num_queries
):
    from django.db import connection

    path = _path(xavier_studies["shown"])
    alice.get(path, HTTP_ACCEPT="application/dicom")
    # Token; the instance with its study, patient and series; the gate's facts; the audit
    # append (a savepoint around it; on SQLite its head read, insert and update too). On
    # PostgreSQL, WADO-RS finds the instance inside the gate's fact query.
    postgresql = connection.vendor == "postgresql"
    for suffix, accept, expected in (
        ("", "application/dicom", 4 if postgresql else 8),
        ("", "*/*", 4 if postgresql else 8),
        ("/metadata", "*/*", 5 if postgresql else 8),
    ):
        with django_assert_num_queries(expected):
            response = alice.get(path + suffix, HTTP_ACCEPT=accept)
            b"".join(response.streaming_content)
        assert response.status_code == 200


def test_a_study_costs_a_fixed_number_of_queries(alice, xavier_studies, django_assert_num_queries):
    from django.db import connection

    study = f"/dicomweb/studies/{xavier_studies['shown'].study_uid}"
    alice.get(study + "/metadata")
    # Token; the study with its patient; the gate's facts; the audit append (a savepoint
    # around it; on SQLite its head read, insert and update too); the instances' keys or
    # headers. On PostgreSQL the study is found inside the gate's fact query.
    expected = 5 if connection.vendor == "postgresql" else 9
    for suffix in ("/metadata", ""):
        with django_assert_num_queries(expected):
            response = alice.get(study + suffix, HTTP_ACCEPT="*/*")
            b"".join(response.streaming_content)
        assert response.status_code == 200


@pytest.mark.parametrize("template", ENDPOINTS)
def test_without_consent_every_endpoint_refuses(cast, xavier_studies, template):
    share_with_alice(cast)
    from consent.models import Consent

    Consent.objects.all().delete()
    response = client_for("alice", "CHL").get(_fill(template, xavier_studies["shown"]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "NO_CONSENT"


@pytest.mark.parametrize("template", ENDPOINTS)
def test_without_care_relationship_every_endpoint_refuses(cast, xavier_studies, template):
    response = client_for("bob", "CHEM").get(_fill(template, xavier_studies["shown"]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "NO_CARE_RELATIONSHIP"


def test_the_patient_opens_their_own_study(cast, xavier_studies):
    xavier = client_for("xavier")
    shown = xavier_studies["shown"]
    assert xavier.get(f"/dicomweb/studies/{shown.study_uid}").status_code == 200
    found = json.loads(xavier.get("/dicomweb/studies").content)
    assert len(found) == 2  # the hidden one too: he hid it from others, not from himself
    other = xavier_studies["other"]
    # Someone else's study is not there for him (the audit row keeps NOT_OWN_RECORD).
    assert xavier.get(f"/dicomweb/studies/{other.study_uid}/metadata").status_code == 404
    assert AuditEvent.objects.order_by("-seq").first().reason_code == "NOT_OWN_RECORD"


def test_it_requires_authentication(db):
    from rest_framework.test import APIClient

    response = APIClient().get("/dicomweb/studies")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


# --- STOW-RS -------------------------------------------------------------------------------


def stow_body(contents: list[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = secrets.token_hex(8)
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + data + b"\r\n"
        for data in contents
    )
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def stow(client, contents: list[bytes], path: str = "/dicomweb/studies", **kwargs):
    body, content_type = stow_body(contents, **kwargs)
    return client.generic("POST", path, body, content_type=content_type)


def test_a_hospital_system_stores_a_study(cast, tmp_path):
    uid = generate_uid()
    files = [dicom_copy(tmp_path, patient_id="CHL-Y1", study_uid=uid).read_bytes() for _ in "ab"]
    response = stow(client_for("chl-pacs", "CHL"), files)
    assert response.status_code == 200
    body = json.loads(response.content)
    referenced = body["00081199"]["Value"]
    assert len(referenced) == 2
    assert "00081198" not in body
    assert referenced[0]["00081190"]["Value"][0].startswith("http://testserver/dicomweb/studies/")
    study = Study.objects.get()
    assert (study.institution.code, study.patient, study.instance_count) == ("CHL", cast.yvonne, 2)


def test_it_answers_202_with_the_reason_of_each_failure(cast, tmp_path):
    good = dicom_copy(tmp_path).read_bytes()
    response = stow(client_for("chl-pacs", "CHL"), [good, b"not dicom"])
    assert response.status_code == 202
    body = json.loads(response.content)
    (failed,) = body["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert failed["00091001"]["Value"][0].startswith("Not a DICOM")
    assert len(body["00081199"]["Value"]) == 1


def test_it_answers_409_when_nothing_was_stored(cast, tmp_path):
    path = dicom_copy(tmp_path)
    ingest(path, "CHL")
    changed = dcmread(path)
    changed.StudyDescription = "Other content, same UID"
    buffer = io.BytesIO()
    changed.save_as(buffer)
    response = stow(client_for("chl-pacs", "CHL"), [buffer.getvalue()])
    assert response.status_code == 409
    (failed,) = json.loads(response.content)["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0x0111]
    assert failed["00081155"]["Value"] == [changed.SOPInstanceUID]


def test_the_same_instance_twice_is_a_success(cast, tmp_path):
    data = dicom_copy(tmp_path).read_bytes()
    client = client_for("chl-pacs", "CHL")
    assert stow(client, [data]).status_code == 200
    assert stow(client, [data]).status_code == 200
    assert Instance.objects.count() == 1


def test_it_stores_to_the_study_named_in_the_url(cast, tmp_path):
    """PS3.18 10.5.1: the Store transaction's resource is /studies or /studies/{study}."""
    uid = generate_uid()
    data = dicom_copy(tmp_path, patient_id="CHL-Y1", study_uid=uid).read_bytes()
    response = stow(client_for("chl-pacs", "CHL"), [data], f"/dicomweb/studies/{uid}")
    assert response.status_code == 200
    assert len(json.loads(response.content)["00081199"]["Value"]) == 1
    assert Study.objects.get().study_uid == uid


def test_an_instance_of_another_study_than_the_urls_is_refused(cast, tmp_path):
    uid = generate_uid()
    ours = dicom_copy(tmp_path, patient_id="CHL-Y1", study_uid=uid).read_bytes()
    other = dicom_copy(tmp_path, patient_id="CHL-Y1")
    client = client_for("chl-pacs", "CHL")
    response = stow(client, [ours, other.read_bytes()], f"/dicomweb/studies/{uid}")
    assert response.status_code == 202
    body = json.loads(response.content)
    (failed,) = body["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [dcmread(other).SOPInstanceUID]
    assert failed["00081197"]["Value"] == [0xA900]
    assert [s.study_uid for s in Study.objects.all()] == [uid]
    response = stow(client, [other.read_bytes()], f"/dicomweb/studies/{uid}")
    assert response.status_code == 409


def test_a_store_to_a_url_without_a_valid_study_uid_is_refused(cast, tmp_path):
    data = dicom_copy(tmp_path).read_bytes()
    response = stow(client_for("chl-pacs", "CHL"), [data], "/dicomweb/studies/1.2.x")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("study:")
    assert not Instance.objects.exists()


def test_the_response_holds_the_retrieve_url_of_the_study(cast, tmp_path):
    """PS3.18 Table I.1-1: Retrieve URL (0008,1190) is type 2, present even when empty."""
    uid = generate_uid()
    client = client_for("chl-pacs", "CHL")
    response = stow(client, [dicom_copy(tmp_path, study_uid=uid).read_bytes()])
    assert json.loads(response.content)["00081190"] == {
        "vr": "UR",
        "Value": [f"http://testserver/dicomweb/studies/{uid}"],
    }
    two = [dicom_copy(tmp_path).read_bytes() for _ in "ab"]
    assert json.loads(stow(client, two).content)["00081190"] == {"vr": "UR"}
    assert json.loads(stow(client, [b"not dicom"]).content)["00081190"] == {"vr": "UR"}


@pytest.mark.parametrize(
    "template",
    [
        "multipart/related; type=application/dicom; boundary={b}",  # type unquoted
        'multipart/related; type="application/dicom"; boundary="{b}"',  # boundary quoted
        'Multipart/Related; Type="Application/DICOM"; start="<part1@x>"; boundary={b}',
        "multipart/related; boundary={b}",  # no type: application/dicom is the root's
    ],
)
def test_it_takes_the_content_type_variations_of_stow_clients(cast, tmp_path, template):
    """RFC 2387 and PS3.18 10.5.1: parameters quoted or not, in any case, with a start."""
    boundary = secrets.token_hex(8)
    data = dicom_copy(tmp_path).read_bytes()
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n"
            "Content-ID: <part1@x>\r\nContent-Location: file:///a.dcm\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    client = client_for("chl-pacs", "CHL")
    response = client.generic(
        "POST", "/dicomweb/studies", body, content_type=template.format(b=boundary)
    )
    assert response.status_code == 200
    assert Instance.objects.count() == 1


def test_it_refuses_a_body_over_the_maximum_before_reading_it(cast, settings, tmp_path):
    settings.STOW_MAX_BYTES = 1000
    response = stow(client_for("chl-pacs", "CHL"), [dicom_copy(tmp_path).read_bytes()])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "TOO_LARGE"
    assert not Instance.objects.exists()


def test_it_refuses_another_media_type(cast, tmp_path):
    client = client_for("chl-pacs", "CHL")
    response = client.generic("POST", "/dicomweb/studies", b"{}", content_type="application/json")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_it_refuses_a_malformed_body(cast):
    client = client_for("chl-pacs", "CHL")
    response = client.generic(
        "POST",
        "/dicomweb/studies",
        b"--abc\r\nContent-Type: application/dicom\r\n\r\nno end",
        content_type='multipart/related; type="application/dicom"; boundary=abc',
    )
    assert response.status_code == 400
    assert "closing boundary" in response.json()["error"]["message"]


def test_a_practitioner_stores_for_the_institution_of_the_token(cast, tmp_path):
    response = stow(client_for("alice", "CHL"), [dicom_copy(tmp_path).read_bytes()])
    assert response.status_code == 200
    assert Study.objects.get().institution.code == "CHL"


@pytest.mark.parametrize("path", ["/dicomweb/studies", "/dicomweb/studies/1.2.826.0.1.3"])
@pytest.mark.parametrize("who", ["dora", "xavier"])
def test_a_token_of_no_institution_may_not_store_and_the_refusal_is_audited(
    cast, tmp_path, who, path
):
    """A DPO's or a patient's token is refused by the gate's rule, as every other refusal:
    its reason code, and a deny in the audit log (the review found it refused unaudited)."""
    response = stow(client_for(who), [dicom_copy(tmp_path).read_bytes()], path=path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ROLE_NOT_ALLOWED"
    event = AuditEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.reason_code) == (
        "study.store",
        "deny",
        "ROLE_NOT_ALLOWED",
    )
    assert not Study.objects.exists()


def test_a_system_may_not_add_to_another_hospitals_study(cast, tmp_path):
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"), "CHEM")
    extra = dicom_copy(tmp_path, study_uid=result.study_uid, patient_id="CHEM-X1")
    response = stow(client_for("chl-pacs", "CHL"), [extra.read_bytes()])
    assert response.status_code == 409
    (failed,) = json.loads(response.content)["00081198"]["Value"]
    assert failed["00091001"]["Value"][0] == "These UIDs cannot be stored for your institution."


@pytest.mark.parametrize("name", pydicom_files(), ids=lambda p: Path(p).name)
def test_every_pydicom_file_survives_a_stow_and_wado_round_trip(cast, name):
    """Stored and served back equal, or refused with a reason; the server never fails."""
    response = stow(client_for("chl-pacs", "CHL"), [Path(name).read_bytes()])
    assert response.status_code in (200, 409)
    body = json.loads(response.content)
    if response.status_code == 409:
        (failed,) = body["00081198"]["Value"]
        assert failed["00091001"]["Value"][0]
        assert not Instance.objects.exists()
        return
    (ref,) = body["00081199"]["Value"]
    # Unreconciled at CHL: Alice (CHL) sees them as her institution's own studies.
    served = client_for("alice", "CHL").get(ref["00081190"]["Value"][0])
    assert served.status_code == 200
    ((_, data),) = multipart_parts(served)
    assert dcmread(io.BytesIO(data)) == dcmread(name)
    assert data[128:] == Path(name).read_bytes()[128:]


def test_one_instance_can_be_fetched_bare(alice, xavier_studies):
    shown = xavier_studies["shown"]
    response = alice.get(_path(shown), HTTP_ACCEPT="application/dicom")
    assert response["Content-Type"] == "application/dicom"
    data = b"".join(response.streaming_content)
    assert dcmread(io.BytesIO(data)).SOPInstanceUID == shown.sop_instance_uid


def test_it_refuses_an_unservable_accept(alice, xavier_studies):
    response = alice.get(_path(xavier_studies["shown"]), HTTP_ACCEPT="application/json")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/dicom+xml"',  # held "multipart/related"
        'multipart/related; type="application/dicom"; q=0',  # q=0: not acceptable
        "application/dicom;q=0, multipart/related;q=0",
        "application/dicom;q=0, multipart/related;q=0, */*",  # refused under a wildcard too
    ],
)
def test_an_instance_is_not_served_in_a_form_the_client_refuses(alice, xavier_studies, accept):
    """RFC 9110 12.5.1 and PS3.18 8.7.8: media ranges, not substrings; q=0 refuses."""
    response = alice.get(_path(xavier_studies["shown"]), HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize("suffix", ["", "/series/{series}", "/series/{series}/instances/{sop}"])
def test_an_instance_resource_asked_for_as_dicom_json_is_its_metadata(
    alice, xavier_studies, suffix
):
    """PS3.18 10.4.4: application/dicom+json is a media type of the instance resources, their
    metadata; it went out as DICOM labelled application/dicom ("application/dicom" held as
    a substring of the Accept header)."""
    shown = xavier_studies["shown"]
    path = f"/dicomweb/studies/{shown.study_uid}" + suffix.format(
        series=shown.series_uid, sop=shown.sop_instance_uid
    )
    response = alice.get(path, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    found = json.loads(b"".join(response.streaming_content))
    assert found == json.loads(b"".join(alice.get(path + "/metadata").streaming_content))
    event = AuditEvent.objects.filter(action="study.metadata").latest("seq")
    assert event.outcome == "permit"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (
            'multipart/related; type="application/dicom";q=0.5, application/dicom',
            "application/dicom",
        ),
        (
            'application/dicom;q=0.2, multipart/related; type="application/dicom"',
            "multipart/related",
        ),
        ("multipart/related; type=application/dicom; transfer-syntax=*", "multipart/related"),
        ("multipart/related;q=0, */*", "application/dicom"),
    ],
)
def test_an_instance_comes_in_the_form_the_client_prefers(
    alice, xavier_studies, accept, content_type
):
    response = alice.get(_path(xavier_studies["shown"]), HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == content_type


@pytest.mark.parametrize(
    ("accept", "magic"),
    [
        ("image/png;q=0.5, image/jpeg", b"\xff\xd8"),
        ("image/jpeg;q=0.4, image/png;q=0.9", b"\x89PNG"),
        ("image/jpeg;q=0, */*", b"\x89PNG"),
        ("image/*;q=0, image/png", b"\x89PNG"),  # the more specific range wins
    ],
)
def test_a_rendering_comes_in_the_format_the_client_prefers(alice, xavier_studies, accept, magic):
    response = alice.get(_path(xavier_studies["shown"], "/rendered"), HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response.content.startswith(magic)


def test_a_rendering_refused_under_a_wildcard_is_not_acceptable(alice, xavier_studies):
    response = alice.get(
        _path(xavier_studies["shown"], "/rendered"), HTTP_ACCEPT="image/*;q=0, */*"
    )
    assert response.status_code == 406


@pytest.mark.parametrize(
    "path",
    [
        "/dicomweb/studies",
        "/dicomweb/studies/{study}/series",
        "/dicomweb/studies/{study}/metadata",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata",
    ],
)
def test_results_and_metadata_come_as_xml_to_a_client_wanting_xml_only(alice, xavier_studies, path):
    """PS3.18 10.4.4: the XML form of metadata is required (offered for searches too); it
    was refused with 406."""
    shown = xavier_studies["shown"]
    path = path.format(study=shown.study_uid, series=shown.series_uid, sop=shown.sop_instance_uid)
    xml = 'multipart/related; type="application/dicom+xml"'
    response = alice.get(path, HTTP_ACCEPT=xml)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(f"{xml}; boundary=")
    assert {t for t, _ in multipart_parts(response)} == {"application/dicom+xml"}
    accepted = alice.get(path, HTTP_ACCEPT=f"{xml};q=0.5, application/dicom+json")
    assert accepted["Content-Type"] == "application/dicom+json"


def test_paging_stays_right_when_the_gate_drops_most_candidates(cast, tmp_path):
    share_with_alice(cast)
    for day in range(1, 31):
        newer = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate=f"202401{day:02d}"))
        hide(cast.xavier, newer.study_uid)
    older = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20230101"))
    found = json.loads(client_for("alice", "CHL").get("/dicomweb/studies", {"limit": 1}).content)
    assert [s["0020000D"]["Value"][0] for s in found] == [older.study_uid]


WEIRD_PATHS = [
    "/dicomweb/studies/" + "9" * 5000,
    "/dicomweb/studies/1.2.3/series/..%2F..%2Fetc/instances/x/frames/1",
    "/dicomweb/studies/%00/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/0",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1,a",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/99999999999999999999",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered?window=a,b",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered?window=1,-5",
    "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/2/rendered",
    "/dicomweb/studies?limit=-1",
    "/dicomweb/studies?offset=x",
    "/dicomweb/studies?StudyDate=20241301",
    "/dicomweb/studies?PatientID=%5B%28*",
    "/dicomweb/studies?includefield=%00",
]


@pytest.mark.parametrize("template", WEIRD_PATHS)
def test_client_input_never_causes_a_500(alice, xavier_studies, template):
    response = alice.get(_fill(template, xavier_studies["shown"]))
    assert 200 <= response.status_code < 500
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", 'multipart/related; type="application/dicom"; boundary=x'),
        (b"--x--", 'multipart/related; type="application/dicom"'),
        (b"--x\r\n\r\n\r\n--x--", 'multipart/related; type="application/dicom"; boundary=x'),
        (b"\xff" * 100, 'multipart/related; type="application/dicom"; boundary=' + "b" * 80),
        (b"x", "multipart/related; type=application/dicom+json; boundary=x"),
    ],
)
def test_a_malformed_stow_never_causes_a_500(cast, body, content_type):
    client = client_for("chl-pacs", "CHL")
    response = client.generic("POST", "/dicomweb/studies", body, content_type=content_type)
    assert 400 <= response.status_code < 500
    if response["Content-Type"].startswith("application/json"):
        assert set(response.json()["error"]) == {"code", "message"}


def test_wado_streams_in_bounded_chunks(cast, tmp_path, monkeypatch):
    import numpy as np

    from studies import spool

    share_with_alice(cast)
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    frames = np.zeros((200, ds.Rows, ds.Columns), dtype=np.uint16)  # 128x128: 6.25 MiB
    ds.NumberOfFrames = 200
    ds.PixelData = frames.tobytes()
    path = tmp_path / "multiframe.dcm"
    ds.save_as(path)
    result = ingest(path)
    monkeypatch.setattr(spool, "CHUNK_SIZE", 64 * 1024)
    monkeypatch.setattr(storage, "CHUNK_SIZE", 64 * 1024)
    response = client_for("alice", "CHL").get(f"/dicomweb/studies/{result.study_uid}")
    assert response.streaming
    sizes = [len(chunk) for chunk in response.streaming_content]
    assert sum(sizes) > 5 * 1024 * 1024
    assert max(sizes) <= 64 * 1024


@pytest.mark.parametrize(
    "params",
    [{"PatientID": "\x00"}, {"AccessionNumber": "a\x00"}, {"StudyInstanceUID": "1.2.x"}],
)
def test_a_query_value_dicom_cannot_hold_is_a_400(alice, params):
    response = alice.get("/dicomweb/studies", params)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(next(iter(params)))


@pytest.mark.parametrize(("username", "institution"), [("dora", None), ("chl-pacs", "CHL")])
def test_only_practitioners_and_patients_search_studies(cast, username, institution):
    response = client_for(username, institution).get("/dicomweb/studies")
    assert response.status_code == 403
    event = AuditEvent.objects.order_by("-seq").first()
    assert (event.action, event.outcome, event.reason_code) == (
        "study.search",
        "deny",
        "ROLE_NOT_ALLOWED",
    )


def test_a_search_without_any_patient_in_scope_finds_nothing(cast, xavier_studies):
    from studies import access, qido
    from tests.consent.conftest import actor

    # At his hospital, without a care relationship: not even its own studies of Xavier can
    # match, and the search is still decided and audited.
    bob = actor(cast.bob.user, "CHEM")
    assert access.studies_search(bob, query=qido.Query()).hits == []
    assert AuditEvent.objects.filter(action="study.search").count() == 1


def test_a_search_without_an_acting_institution_is_refused_and_audited(cast, xavier_studies):
    from consent.actors import Actor
    from consent.gate import AccessDenied
    from consent.models import Role
    from studies import access, qido

    # Affiliated nowhere it acts (DESIGN.md check 1): refused as any request of theirs is.
    bob = Actor(role=Role.PRACTITIONER, practitioner=cast.bob, username="bob")
    with pytest.raises(AccessDenied) as refused:
        access.studies_search(bob, query=qido.Query())
    assert refused.value.code == "NOT_AFFILIATED"
    events = AuditEvent.objects.filter(action="study.search")
    assert list(events.values_list("outcome", "reason_code")) == [("deny", "NOT_AFFILIATED")]


def test_several_frames_come_in_the_order_asked_from_one_read_of_the_object(
    cast, tmp_path, monkeypatch
):
    import numpy as np

    share_with_alice(cast)
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    frames = np.arange(4 * ds.Rows * ds.Columns, dtype=np.uint16).reshape(4, ds.Rows, -1)
    ds.NumberOfFrames = 4
    ds.PixelData = frames.tobytes()
    path = tmp_path / "four-frames.dcm"
    ds.save_as(path)
    result = ingest(path)
    opened = []
    object_open = storage.object_open
    monkeypatch.setattr(
        storage, "object_open", lambda key: opened.append(key) or object_open(key=key)
    )
    response = client_for("alice", "CHL").get(
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}/frames/3,1"
    )
    parts = multipart_parts(response)
    assert [data for _, data in parts] == [frames[2].tobytes(), frames[0].tobytes()]
    assert len(opened) == 2, "opened once to check it is there, once for all its frames"


@pytest.mark.parametrize(
    ("name", "frames"), [("MR_small_bigendian.dcm", [1]), ("rtdose_expb.dcm", [3, 1])]
)
def test_the_frames_of_a_big_endian_instance_are_served_little_endian(cast, tmp_path, name, frames):
    """PS3.18 8.7.3.3.1: uncompressed bulk data is little endian. 16-bit MR and 32-bit dose
    words used to be served in the stored big-endian order (the contract review's finding)."""
    share_with_alice(cast)
    source = dicom_copy(tmp_path, name, patient_id="CHEM-X1")
    result = ingest(source)
    response = client_for("alice", "CHL").get(
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}/frames/{','.join(map(str, frames))}"
    )
    original = dcmread(source)
    pixels = original.pixel_array.reshape(int(original.get("NumberOfFrames") or 1), -1)
    little = pixels.astype(pixels.dtype.newbyteorder("<"))
    assert [data for _, data in multipart_parts(response)] == [
        little[n - 1].tobytes() for n in frames
    ]


@pytest.mark.parametrize(("username", "institution"), [("dora", None), ("chl-pacs", "CHL")])
def test_a_role_that_never_sees_images_cannot_tell_a_study_from_an_unknown_one(
    cast, tmp_path, username, institution
):
    # A study of the system's own institution included: hospital systems store, not read.
    own = ingest(dicom_copy(tmp_path, patient_id="CHL-X1"), "CHL")
    client, unknown = client_for(username, institution), generate_uid()
    instance = f"/series/{own.series_uid}/instances/{own.sop_instance_uid}"
    suffixes = ["/metadata", "", f"{instance}/rendered", f"{instance}/frames/1"]
    if username == "dora":
        suffixes.append("/series")  # hospital systems list their own studies' series
    for suffix in suffixes:
        answers = [
            client.get(f"/dicomweb/studies/{uid}{suffix}") for uid in (own.study_uid, unknown)
        ]
        assert [a.status_code for a in answers] == [403, 403], suffix
        assert answers[0].json() == answers[1].json()
        assert answers[0].json()["error"]["code"] == "ROLE_NOT_ALLOWED"


def test_the_dpo_cannot_tell_a_registered_national_id_from_an_unknown_one(cast):
    from consent import national_id

    dora, unknown = client_for("dora"), national_id.make(datetime.date(1970, 1, 1), 9)
    answers = [dora.get(f"/api/v1/patients/{nid}/studies/") for nid in (XAVIER_ID, unknown)]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()


def test_a_profession_that_may_only_list_studies_reads_no_header_through_includefield(
    cast, tmp_path
):
    from consent.models import CareRelationship, Practitioner

    cast._practitioner("nina", "Nina Nilles", "nurse", ["CHL"])
    nina = Practitioner.objects.get(user__username="nina")
    CareRelationship.objects.create(
        practitioner=nina,
        patient=cast.yvonne,
        kind="admission",
        asserted_by="test",
        end=timezone.now() + datetime.timedelta(days=30),
    )
    y = ingest(dicom_copy(tmp_path, patient_id="CHL-Y1"), "CHL")
    client, url = client_for("nina", "CHL"), f"/dicomweb/studies/{y.study_uid}/instances"
    assert client.get(url).status_code == 200  # listing the study's instances
    for fields in ("all", "PatientName", "00180050"):
        refused = client.get(url, {"includefield": fields})
        assert refused.status_code == 403, fields
        assert refused.json()["error"]["code"] == "PROFESSION_NOT_ALLOWED"
    assert client.get(f"/dicomweb/studies/{y.study_uid}/metadata").status_code == 403
