"""WADO-RS thumbnails (PS3.18 10.4.1.1.4): each level, its representative image, the gate."""

import datetime
import io

import pytest
from django.utils import timezone
from PIL import Image
from pydicom.uid import generate_uid

from audit.models import AuditEvent
from consent.models import CareRelationship
from tests.conftest import client_for

from .conftest import dicom_copy, hide, ingest, share_with_alice

JPEG, PNG = b"\xff\xd8", b"\x89PNG"


@pytest.fixture
def study(cast, tmp_path) -> dict:
    """Xavier's CHEM study: series 1 without an image (an RT Plan), series 2 of three CTs
    stored out of their instance-number order and each with its own window (so that each
    renders differently), series 3 a JPEG 2000 image 256 wide and 1024 high, series 4 a two-frame
    RLE image."""
    uid = generate_uid()

    def stored(name: str, series_uid: str, number: int, **attributes):
        path = dicom_copy(
            tmp_path,
            name,
            patient_id="CHEM-X1",
            study_uid=uid,
            series_uid=series_uid,
            SeriesNumber=number,
            **attributes,
        )
        result = ingest(path)
        assert result.status == "stored", result.reason
        return result

    plan, cts, j2k, rle = (generate_uid() for _ in range(4))
    found = {"plan": stored("rtplan.dcm", plan, 1)}
    for instance_number in (3, 1, 2):
        found[f"ct{instance_number}"] = stored(
            "CT_small.dcm",
            cts,
            2,
            InstanceNumber=instance_number,
            WindowCenter=100 * instance_number,
            WindowWidth=400,
        )
    found["j2k"] = stored("JPEG2000.dcm", j2k, 3)
    found["rle"] = stored("SC_rgb_rle_2frame.dcm", rle, 4)
    return found


@pytest.fixture
def alice(cast, study):
    share_with_alice(cast)
    return client_for("alice", "CHL")


def _study(result) -> str:
    return f"/dicomweb/studies/{result.study_uid}"


def _series(result) -> str:
    return f"{_study(result)}/series/{result.series_uid}"


def _instance(result) -> str:
    return f"{_series(result)}/instances/{result.sop_instance_uid}"


def _size(response) -> tuple[int, int]:
    return Image.open(io.BytesIO(response.content)).size


def test_a_study_thumbnail_is_the_middle_image_of_its_first_series_with_images(alice, study):
    response = alice.get(f"{_study(study['ct1'])}/thumbnail")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response.content.startswith(JPEG)
    by_number = {n: alice.get(f"{_instance(study[f'ct{n}'])}/thumbnail").content for n in (1, 2, 3)}
    assert len(set(by_number.values())) == 3  # the three windows give three images
    assert response.content == by_number[2]


def test_a_series_thumbnail_is_its_middle_image(alice, study):
    response = alice.get(f"{_series(study['ct1'])}/thumbnail", HTTP_ACCEPT="image/png")
    assert response.content.startswith(PNG)
    middle = alice.get(f"{_instance(study['ct2'])}/thumbnail", HTTP_ACCEPT="image/png")
    assert response.content == middle.content


def test_a_compressed_image_is_shrunk_to_fit_the_default_thumbnail(alice, study):
    """JPEG 2000, 256 x 1024: within 128 x 128, its aspect ratio kept."""
    response = alice.get(f"{_series(study['j2k'])}/thumbnail")
    assert response.status_code == 200
    assert _size(response) == (32, 128)
    assert _size(alice.get(f"{_instance(study['j2k'])}/thumbnail")) == (32, 128)


def test_a_small_image_is_not_enlarged_without_a_viewport(alice, study):
    """The RLE image is 100 x 100: the default only shrinks."""
    assert _size(alice.get(f"{_instance(study['rle'])}/thumbnail")) == (100, 100)


@pytest.mark.parametrize(("viewport", "size"), [("32,32", (32, 32)), ("200,400", (200, 200))])
def test_a_thumbnail_fits_the_viewport_asked_for(alice, study, viewport, size):
    response = alice.get(f"{_series(study['ct1'])}/thumbnail", {"viewport": viewport})
    assert response.status_code == 200
    assert _size(response) == size


def test_a_frame_thumbnail_shows_the_frame_named(alice, study):
    base = _instance(study["rle"])
    first, second = (alice.get(f"{base}/frames/{n}/thumbnail").content for n in (1, 2))
    assert first.startswith(JPEG)
    assert second.startswith(JPEG)
    assert first != second
    assert alice.get(f"{base}/thumbnail").content == first


@pytest.mark.parametrize(
    ("accept", "magic"),
    [("image/png", PNG), ("image/*", JPEG), ("*/*", JPEG), ("image/png;q=0.5, image/jpeg", JPEG)],
)
def test_it_answers_in_the_media_type_preferred(alice, study, accept, magic):
    response = alice.get(f"{_study(study['ct1'])}/thumbnail", HTTP_ACCEPT=accept)
    assert response.content.startswith(magic)


def test_the_accept_query_parameter_takes_the_place_of_the_header(alice, study):
    response = alice.get(f"{_study(study['ct1'])}/thumbnail", {"accept": "image/png"})
    assert response.content.startswith(PNG)


def test_it_refuses_a_media_type_it_cannot_produce(alice, study):
    response = alice.get(f"{_study(study['ct1'])}/thumbnail", HTTP_ACCEPT="image/gif")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"
    assert not AuditEvent.objects.filter(action="study.render").exists()


@pytest.mark.parametrize("viewport", ["32", "0,32", "a,b", "32,32,0,0,10,10", "99999,32"])
def test_it_refuses_a_malformed_viewport(alice, study, viewport):
    response = alice.get(f"{_study(study['ct1'])}/thumbnail", {"viewport": viewport})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("viewport:")


def test_it_audits_each_thumbnail_as_a_rendering(alice, study):
    alice.get(f"{_study(study['ct1'])}/thumbnail")
    alice.get(f"{_instance(study['rle'])}/frames/2/thumbnail")
    events = AuditEvent.objects.filter(action="study.render").order_by("seq")
    assert [(e.outcome, e.actor_username, e.study_uid) for e in events] == [
        ("permit", "alice", study["ct1"].study_uid)
    ] * 2


def test_a_study_or_series_without_an_image_has_no_thumbnail(alice, study):
    series = alice.get(f"{_series(study['plan'])}/thumbnail")
    assert series.status_code == 404
    assert series.json()["error"]["message"] == "This series holds no image to show."
    instance = alice.get(f"{_instance(study['plan'])}/thumbnail")
    assert instance.status_code == 404


def test_a_study_of_no_image_at_all_has_no_thumbnail(cast, tmp_path):
    only_plan = ingest(dicom_copy(tmp_path, "rtplan.dcm", patient_id="CHEM-X1"))
    share_with_alice(cast)
    response = client_for("alice", "CHL").get(f"{_study(only_plan)}/thumbnail")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "This study holds no image to show."


# --- the gate at every level ---------------------------------------------------------------

LEVELS = {
    "study": lambda r: f"{_study(r)}/thumbnail",
    "series": lambda r: f"{_series(r)}/thumbnail",
    "instance": lambda r: f"{_instance(r)}/thumbnail",
    "frame": lambda r: f"{_instance(r)}/frames/1/thumbnail",
}


@pytest.mark.parametrize("level", LEVELS)
def test_it_refuses_a_practitioner_without_the_patients_consent(cast, study, level):
    """Alice cares for Xavier but he gave no consent to share his CHEM images with CHL."""
    CareRelationship.objects.create(
        practitioner=cast.alice,
        patient=cast.xavier,
        kind="admission",
        asserted_by="test",
        end=timezone.now() + datetime.timedelta(days=30),
    )
    response = client_for("alice", "CHL").get(LEVELS[level](study["ct2"]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "NO_CONSENT"
    event = AuditEvent.objects.get(action="study.render")
    assert (event.outcome, event.reason_code) == ("deny", "NO_CONSENT")


class _Unknown:
    study_uid = generate_uid()
    series_uid = generate_uid()
    sop_instance_uid = generate_uid()


@pytest.mark.parametrize("level", LEVELS)
def test_a_hidden_study_looks_exactly_like_an_unknown_one(alice, cast, study, level):
    hide(cast.xavier, study["ct2"].study_uid)
    hidden = alice.get(LEVELS[level](study["ct2"]))
    unknown = alice.get(LEVELS[level](_Unknown))
    assert hidden.status_code == unknown.status_code == 404
    assert (
        hidden.json()
        == unknown.json()
        == {"error": {"code": "NOT_FOUND", "message": "No such study."}}
    )
    events = AuditEvent.objects.filter(action="study.render").order_by("seq")
    assert [(e.outcome, e.reason_code) for e in events] == [
        ("deny", "STUDY_HIDDEN"),
        ("deny", "NOT_FOUND"),
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            lambda r: f"{_study(r)}/series/{generate_uid()}/thumbnail",
            "No such series in this study.",
        ),
        (
            lambda r: f"{_series(r)}/instances/{generate_uid()}/thumbnail",
            "No such instance in this series.",
        ),
        (lambda r: f"{_study(r)}/series/not-a-uid/thumbnail", "No such series in this study."),
    ],
    ids=["unknown series", "unknown instance", "malformed series UID"],
)
def test_an_unknown_series_or_instance_of_a_permitted_study_is_404(alice, study, path, message):
    response = alice.get(path(study["ct2"]))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == message


def test_a_frame_out_of_range_is_refused(alice, study):
    response = alice.get(f"{_instance(study['rle'])}/frames/3/thumbnail")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "frames: frame numbers go from 1 to 2."
