"""WADO-RS frames as the client accepts them: the stored bitstream, or decoded uncompressed."""

import logging

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate, get_frame

from audit.models import AuditEvent
from tests.conftest import client_for

from .conftest import dicom_copy, hide, ingest, multipart_parts, pydicom_file, share_with_alice

EXPLICIT_LE = "1.2.840.10008.1.2.1"
UNCOMPRESSED = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'
DECODED_PART = f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"

# Every compressed file of pydicom's test data that the gateway stores and pydicom decodes:
# JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000 and RLE; single and multi-frame.
COMPRESSED = [
    "693_J2KI.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "JPEG2000.dcm",
    "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm",
    "JPGExtended.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_jpeg_no_color_transform_2.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",
    "SC_rgb_dcmtk_+eb+cy+n2.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_dcmtk_+eb+cy+s4.dcm",
    "SC_rgb_gdcm_KY.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jls_lossy_sample.dcm",
    "SC_rgb_jpeg_app14_dcmd.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "examples_jpeg2k.dcm",
    "examples_ybr_color.dcm",
    "rtdose_rle.dcm",
    "rtdose_rle_1frame.dcm",
]


def _frames(result, frames: str = "1", accept: str | None = None, user=("alice", "CHL")):
    headers = {"HTTP_ACCEPT": accept} if accept is not None else {}
    return client_for(*user).get(
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}/frames/{frames}",
        **headers,
    )


def _stored(cast, tmp_path, name: str, **attributes):
    share_with_alice(cast)
    source = dicom_copy(tmp_path, name, patient_id="CHEM-X1", **attributes)
    return source, ingest(source)


def _pixels(source, number: int) -> bytes:
    """pydicom's own pixel_array of the frame, as little-endian bytes."""
    ds = dcmread(source)
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames") or 1) > 1:
        pixels = pixels[number - 1]
    return pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()


def _frame_length(source) -> int:
    ds = dcmread(source, stop_before_pixels=True)
    return ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8


@pytest.mark.parametrize("name", COMPRESSED)
def test_a_compressed_frame_asked_uncompressed_is_pydicoms_own_pixels(cast, tmp_path, name):
    source, result = _stored(cast, tmp_path, name)
    count = int(dcmread(source, stop_before_pixels=True).get("NumberOfFrames") or 1)
    numbers = [count, 1] if count > 1 else [1]  # the last first: order and index both
    response = _frames(result, ",".join(map(str, numbers)), UNCOMPRESSED)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(
        f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE};'
    )
    parts = multipart_parts(response)
    assert [part_type for part_type, _ in parts] == [DECODED_PART] * len(numbers)
    for (_, data), number in zip(parts, numbers, strict=True):
        assert len(data) == _frame_length(source)
        assert data == _pixels(source, number)


def test_octet_stream_without_a_transfer_syntax_is_explicit_vr_little_endian(cast, tmp_path):
    """PS3.18 8.7.3.3: no transfer-syntax parameter means Explicit VR Little Endian; the
    gateway decodes a lossy original too rather than answer a type the client did not ask."""
    source, result = _stored(cast, tmp_path, "SC_rgb_jpeg_dcmtk.dcm")
    for accept in (
        'multipart/related; type="application/octet-stream"',
        "application/octet-stream",
    ):
        ((part_type, data),) = multipart_parts(_frames(result, accept=accept))
        assert (part_type, data) == (DECODED_PART, _pixels(source, 1)), accept


def test_ybr_jpeg_frames_come_decoded_as_rgb(cast, tmp_path):
    """YBR_FULL_422 decodes to RGB (pydicom's pixel_array, what Dataset.decompress stores)."""
    source, result = _stored(cast, tmp_path, "SC_rgb_dcmtk_+eb+cy+np.dcm")
    ds = dcmread(source)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    ((_, data),) = multipart_parts(_frames(result, accept=UNCOMPRESSED))
    ds.decompress()
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.PlanarConfiguration == 0
    assert data == ds.PixelData


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "multipart/related",
        'multipart/related; type="*/*"',  # dicomweb-client without media types
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',  # OHIF
        'multipart/related; type="image/jpeg"',
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50',
    ],
)
def test_clients_that_take_the_bitstream_still_get_it(cast, tmp_path, accept):
    """Compatibility: what each of these was answered before frames were decoded."""
    source, result = _stored(cast, tmp_path, "SC_rgb_jpeg_dcmtk.dcm")
    response = _frames(result, accept=accept)
    stored = "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    ((part_type, data),) = multipart_parts(response)
    assert part_type == stored
    assert data == get_frame(dcmread(source).PixelData, 0, number_of_frames=1)


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", UNCOMPRESSED, 'multipart/related; type="application/octet-stream"'],
)
def test_native_frames_are_served_as_before(cast, tmp_path, accept):
    """The same bytes; their part now names the syntax they are in (PS3.18 8.7.3.3)."""
    source, result = _stored(cast, tmp_path, "CT_small.dcm")
    ((part_type, data),) = multipart_parts(_frames(result, accept=accept))
    assert (part_type, data) == (DECODED_PART, dcmread(source).PixelData)


def test_the_most_preferred_acceptable_form_wins(cast, tmp_path):
    source, result = _stored(cast, tmp_path, "SC_rgb_jpeg_dcmtk.dcm")
    accept = f'multipart/related; type="image/jpeg"; q=0.5, {UNCOMPRESSED}'
    ((part_type, data),) = multipart_parts(_frames(result, accept=accept))
    assert (part_type, data) == (DECODED_PART, _pixels(source, 1))
    # A media type the client refuses (q=0) is not given it through a wildcard either.
    ((part_type, _),) = multipart_parts(_frames(result, accept="image/jpeg;q=0, */*"))
    assert part_type == DECODED_PART


@pytest.mark.parametrize(
    ("name", "accept"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", 'multipart/related; type="image/jp2"'),
        ("SC_rgb_jpeg_dcmtk.dcm", 'multipart/related; type="image/jpeg"; transfer-syntax=1.2.3'),
        (
            "SC_rgb_jpeg_dcmtk.dcm",
            f'multipart/related; type="image/jpeg"; transfer-syntax={EXPLICIT_LE}',
        ),
        ("SC_rgb_jpeg_dcmtk.dcm", "application/dicom"),
        ("CT_small.dcm", 'multipart/related; type="image/jpeg"'),
    ],
)
def test_a_form_that_cannot_be_served_is_406_naming_those_that_can(cast, tmp_path, name, accept):
    _, result = _stored(cast, tmp_path, name)
    response = _frames(result, accept=accept)
    assert response.status_code == 406
    error = response.json()["error"]
    assert error["code"] == "NOT_ACCEPTABLE"
    assert 'type="application/octet-stream"' in error["message"]
    if name != "CT_small.dcm":
        assert 'type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50' in error["message"]
        assert f"transfer-syntax={EXPLICIT_LE}" in error["message"]


def test_a_syntax_that_pydicom_cannot_decode_here_is_406_before_any_byte(
    cast, tmp_path, monkeypatch
):
    from pydicom.pixels.decoders import base

    # As without pylibjpeg's plugins: JPEG-LS has no other decoder in pydicom.
    monkeypatch.setattr(base.Decoder, "is_available", property(lambda self: False))
    _, result = _stored(cast, tmp_path, "MR_small_jpeg_ls_lossless.dcm")
    response = _frames(result, accept=UNCOMPRESSED)
    assert response.status_code == 406
    message = response.json()["error"]["message"]
    assert 'type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80' in message
    assert "octet-stream" not in message


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"])
def test_a_stored_frame_that_does_not_decode_is_406_and_logged_not_a_500(
    cast, tmp_path, caplog, name
):
    """pydicom's own test data that its decoders here refuse: the client did nothing wrong,
    and its bitstream is still there for the asking."""
    _, result = _stored(cast, tmp_path, name, PatientName="Secret^Name")
    with caplog.at_level(logging.ERROR):
        response = _frames(result, accept=UNCOMPRESSED)
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NOT_RENDERABLE"
    assert "cannot be decoded" in caplog.text
    assert "Secret" not in caplog.text
    assert _frames(result, accept=None).status_code == 200


def test_a_later_frame_that_does_not_decode_ends_its_part_and_is_logged(cast, tmp_path, caplog):
    good = get_frame(dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm")).PixelData, 0)
    _, result = _stored(
        cast,
        tmp_path,
        "SC_rgb_jpeg_dcmtk.dcm",
        NumberOfFrames=2,
        PixelData=encapsulate([good, b"\xff\xd8\xff\xdb" + bytes(64)]),
    )
    with caplog.at_level(logging.ERROR):
        parts = multipart_parts(_frames(result, "1,2", UNCOMPRESSED))
    expected = dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm")).pixel_array.tobytes()
    assert [data for _, data in parts] == [expected, b""]
    assert "Frame 2 of instance" in caplog.text


def test_nothing_is_decoded_for_a_hidden_study_or_a_practitioner_without_access(
    cast, tmp_path, monkeypatch
):
    from studies.api import frames

    def refuse(*args, **kwargs):
        raise AssertionError("decoded before the gate said yes")

    monkeypatch.setattr(frames, "decoded_frame", refuse)
    _, result = _stored(cast, tmp_path, "SC_rgb_jpeg_dcmtk.dcm")
    assert _frames(result, accept=UNCOMPRESSED, user=("bob", "CHEM")).status_code == 403
    hide(cast.xavier, result.study_uid)
    response = _frames(result, accept=UNCOMPRESSED)
    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="study.retrieve", outcome="deny").count() == 2


def test_decoding_asks_the_gate_once_and_audits_the_retrieval(cast, tmp_path):
    _, result = _stored(cast, tmp_path, "examples_ybr_color.dcm")
    response = _frames(result, "3,2,1", UNCOMPRESSED)
    assert [part_type for part_type, _ in multipart_parts(response)] == [DECODED_PART] * 3
    events = AuditEvent.objects.filter(action="study.retrieve")
    assert [(e.outcome, e.study_uid) for e in events] == [("permit", result.study_uid)]


def test_a_decoded_frame_is_little_endian_whatever_the_bits(cast, tmp_path):
    source, result = _stored(cast, tmp_path, "SC_rgb_rle_32bit_2frame.dcm")
    ((_, data),) = multipart_parts(_frames(result, "2", UNCOMPRESSED))
    pixels = np.frombuffer(data, dtype="<u4")
    assert np.array_equal(pixels, dcmread(source).pixel_array[1].ravel())


@pytest.mark.parametrize(
    "wanted",
    [
        'multipart/related; type="image/jpeg"; q=0, */*',
        'multipart/related; type="image/jpeg"; q=0, multipart/related; type="*/*"',
    ],
)
def test_a_part_type_refused_in_the_multipart_form_is_not_served(cast, tmp_path, wanted):
    # Review: q=0 on multipart/related's type was read as refusing multipart/related only.
    _, result = _stored(cast, tmp_path, "SC_rgb_jpeg_dcmtk.dcm")
    response = _frames(result, accept=wanted)
    assert response.status_code == 200
    ((part_type, _),) = multipart_parts(response)
    assert part_type.startswith("application/octet-stream")  # decoded, not the JPEG refused


def test_big_endian_asked_by_name_is_refused_not_answered_little_endian(cast, tmp_path):
    _, result = _stored(cast, tmp_path, "MR_small_bigendian.dcm")
    wanted = (
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.2'
    )
    response = _frames(result, accept=wanted)
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"
