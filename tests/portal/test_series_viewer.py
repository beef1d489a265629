"""The practitioner's series viewer: one image at a time, each gated and audited."""

import io

import pytest
from PIL import Image

from audit.models import AuditEvent
from tests.conftest import XAVIER_ID, YVONNE_ID
from tests.portal.conftest import admit, consent_to_all, ingest_copy

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(portal_as, cast, xavier_studies):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    return portal_as("alice")


def viewer_url(study: str, series: str, query: str = "") -> str:
    return f"/patients/{XAVIER_ID}/studies/{study}/series/{series}/{query}"


def test_it_shows_the_first_image_by_instance_number(alice, xavier_ct_series):
    study, series, sops = xavier_ct_series
    response = alice.get(viewer_url(study, series))
    assert response.status_code == 200
    assert response.context["total"] == 3
    assert response.context["images"] == [[sop, 1] for sop in sops]
    src = response.context["src"]
    assert src.startswith(
        f"/dicomweb/studies/{study}/series/{series}/instances/{sops[0]}/frames/1/rendered?"
    )
    assert b"Image 1 of 3" in response.content
    image = alice.get(src)  # the portal session is enough, and the image is gated
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"
    assert max(Image.open(io.BytesIO(image.content)).size) == 1024
    assert AuditEvent.objects.filter(
        action="study.render", actor_username="alice", study_uid=study
    ).exists()


def test_opening_the_viewer_is_audited_as_reading_the_study(alice, xavier_ct_series):
    study, series, _ = xavier_ct_series
    alice.get(viewer_url(study, series))
    event = AuditEvent.objects.filter(action="study.metadata", study_uid=study).latest("seq")
    assert event.outcome == "permit"
    assert event.detail["view"] == "portal-series"


def test_it_links_each_series_from_the_study_page(alice, xavier_ct_series):
    study, series, _ = xavier_ct_series
    page = alice.get(f"/patients/{XAVIER_ID}/studies/{study}/")
    assert viewer_url(study, series).encode() in page.content


@pytest.mark.parametrize(
    ("asked", "shown"), [("2", 2), ("3", 3), ("99", 3), ("0", 1), ("-4", 1), ("two", 1)]
)
def test_an_image_number_out_of_range_shows_the_nearest(alice, xavier_ct_series, asked, shown):
    study, series, sops = xavier_ct_series
    response = alice.get(viewer_url(study, series, f"?image={asked}"))
    assert response.status_code == 200
    assert response.context["position"] == shown
    assert f"/instances/{sops[shown - 1]}/frames/1/rendered" in response.context["src"]


def test_it_counts_every_frame_of_a_multiframe_instance(alice, tmp_path, xavier_studies):
    # An ultrasound loop of 30 frames.
    result = ingest_copy(tmp_path, "examples_ybr_color.dcm", "CHEM", PatientID="CHEM-X1")
    response = alice.get(viewer_url(result.study_uid, result.series_uid, "?image=7"))
    assert response.context["total"] == 30
    assert f"/instances/{result.sop_instance_uid}/frames/7/rendered" in response.context["src"]
    assert alice.get(response.context["src"]).status_code == 200


def test_the_study_page_counts_images_as_the_viewer_does(alice, tmp_path, xavier_studies):
    result = ingest_copy(tmp_path, "examples_ybr_color.dcm", "CHEM", PatientID="CHEM-X1")
    page = alice.get(f"/patients/{XAVIER_ID}/studies/{result.study_uid}/")
    [(_series, _preview, images)] = page.context["series"]
    assert images == page.context["images"] == 30
    assert b"30 images" in page.content


def test_a_series_without_images_gets_no_open_button(alice, tmp_path, xavier_ct_series):
    # A structured report filed in the CT's study: nothing for the viewer to show.
    study, ct_series, _ = xavier_ct_series
    report = ingest_copy(
        tmp_path, "test-SR.dcm", "CHEM", PatientID="CHEM-X1", StudyInstanceUID=study
    )
    page = alice.get(f"/patients/{XAVIER_ID}/studies/{study}/")
    rows = {
        series.series_uid: (preview, images) for series, preview, images in page.context["series"]
    }
    assert rows[report.series_uid] == ("", 0)
    assert rows[ct_series][1] == 3
    assert viewer_url(study, report.series_uid).encode() not in page.content
    assert viewer_url(study, ct_series).encode() in page.content
    assert b"no images" in page.content


def test_ct_offers_window_presets_that_reach_the_rendering(alice, xavier_ct_series):
    study, series, _ = xavier_ct_series
    response = alice.get(viewer_url(study, series, "?window=lung"))
    assert "window=-600,1500" in response.context["src"]
    assert b'aria-current="true">Lung<' in response.content
    assert alice.get(response.context["src"]).status_code == 200
    unknown = alice.get(viewer_url(study, series, "?window=nonsense"))
    assert "window=" not in unknown.context["src"]


def test_other_modalities_get_no_ct_presets(alice, tmp_path, xavier_studies):
    result = ingest_copy(tmp_path, "examples_ybr_color.dcm", "CHEM", PatientID="CHEM-X1")
    response = alice.get(viewer_url(result.study_uid, result.series_uid, "?window=lung"))
    assert response.context["windows"] == {}
    assert "window=" not in response.context["src"]


def test_a_series_of_a_hidden_study_looks_like_an_unknown_one(alice, xavier_studies):
    hidden = xavier_studies["mr"]
    response = alice.get(viewer_url(hidden.study_uid, hidden.series_uid))
    unknown = alice.get(viewer_url("1.2.3.4", hidden.series_uid))
    assert response.status_code == unknown.status_code == 404


def test_a_series_of_another_study_is_not_found(alice, xavier_ct_series, xavier_studies):
    study, _, _ = xavier_ct_series
    other = xavier_studies["ct"]
    assert alice.get(viewer_url(study, other.series_uid)).status_code == 404
    assert alice.get(viewer_url(study, "not-a-uid")).status_code == 404


def test_it_does_not_open_a_series_under_another_patients_id(alice, xavier_ct_series):
    study, series, _ = xavier_ct_series
    url = f"/patients/{YVONNE_ID}/studies/{study}/series/{series}/"
    assert alice.get(url).status_code == 404


def test_without_consent_the_viewer_is_refused_with_the_reason(portal_as, cast, xavier_ct_series):
    admit(cast.alice, cast.xavier)  # no consent for CHL
    study, series, _ = xavier_ct_series
    response = portal_as("alice").get(viewer_url(study, series))
    assert response.status_code == 403
    assert b"No consent" in response.content
    assert not AuditEvent.objects.filter(action="study.render", study_uid=study).exists()
    denied = AuditEvent.objects.filter(action="study.metadata", study_uid=study).latest("seq")
    assert denied.outcome == "deny"


def test_the_dpo_gets_no_viewer(portal_as, cast, xavier_ct_series):
    study, series, _ = xavier_ct_series
    response = portal_as("dora").get(viewer_url(study, series))
    assert response.status_code == 403


def test_an_image_whose_copy_failed_its_fixity_check_is_not_shown(alice, xavier_ct_series):
    """The viewer asks DICOMweb for each image: a copy altered since it was stored is
    refused there as a lost one, and the refusal audited. The study page's preview, of the
    series' middle image, shows another good image of the series instead."""
    from studies import storage
    from studies.models import Instance
    from studies.tasks import fixity_check

    study, series, sops = xavier_ct_series
    middle = Instance.objects.get(sop_instance_uid=sops[1])
    path = storage.object_local_path(key=middle.storage_key)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # bit rot
    assert fixity_check(instance_ids=list(Instance.objects.values_list("pk", flat=True))) == [
        sops[1]
    ]
    first = alice.get(viewer_url(study, series)).context["src"]
    second = alice.get(viewer_url(study, series, "?image=2")).context["src"]
    assert alice.get(first).status_code == 200
    assert alice.get(second).status_code == 500
    page = alice.get(f"/patients/{XAVIER_ID}/studies/{study}/")
    [(_series, preview, _images)] = page.context["series"]
    assert alice.get(preview).status_code == 200  # the middle image passed over
    refusals = AuditEvent.objects.filter(action="study.fixity_failed", actor_username="alice")
    assert [e.detail["sop_instance_uids"] for e in refusals.order_by("seq")] == [[sops[1]]]
