"""Native frames of big-endian objects come little endian, whatever their words' width."""

import os
import tracemalloc

from pydicom import dcmread

from tests.conftest import client_for

from .conftest import dicom_copy, ingest, multipart_parts, share_with_alice


def _frames(result, frames: str = "1"):
    return client_for("alice", "CHL").get(
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}/frames/{frames}"
    )


def test_8_bit_pixels_in_ow_come_in_pixel_order(cast, tmp_path):
    """PS3.5 7.3: OW holds 16-bit words, so big-endian 8-bit pixels are stored pairwise
    swapped; pydicom's pixel_array (what /rendered shows) turns them round, and /frames
    must too (a review found them served as stored, the last pixel lost to the padding)."""
    share_with_alice(cast)
    source = dicom_copy(tmp_path, "SC_rgb_small_odd_big_endian.dcm", patient_id="CHEM-X1")
    original = dcmread(source)
    assert (original["PixelData"].VR, original.BitsAllocated) == ("OW", 8)
    result = ingest(source)
    [(_, data)] = multipart_parts(_frames(result))
    assert data == original.pixel_array.tobytes()


def test_frames_of_an_odd_size_starting_inside_a_word_come_whole(cast, tmp_path):
    """Three 27-byte frames in OW: the second starts in the middle of a 16-bit word."""
    share_with_alice(cast)
    source = dicom_copy(tmp_path, "SC_rgb_small_odd_big_endian.dcm", patient_id="CHEM-X1")
    ds = dcmread(source)
    ds.NumberOfFrames = 3
    ds.PixelData = os.urandom(81) + b"\x00"
    ds.save_as(source)
    expected = dcmread(source).pixel_array
    result = ingest(source)
    parts = multipart_parts(_frames(result, "2,3,1"))
    assert [data for _, data in parts] == [expected[n].tobytes() for n in (1, 2, 0)]


def _peak_while_serving(result) -> int:
    response = _frames(result)
    assert response.status_code == 200
    tracemalloc.start()
    try:
        for _ in response.streaming_content:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_turning_a_frame_round_holds_it_no_more_than_once(cast, tmp_path):
    """An 8 MiB 16-bit frame is held once to be served, as a little-endian one is, not three
    times over (the frame read, a copy in the other byte order, its bytes)."""
    share_with_alice(cast)
    side = 2048
    pixels = os.urandom(side * side * 2)
    peaks = {}
    for name in ("CT_small.dcm", "MR_small_bigendian.dcm"):
        source = dicom_copy(
            tmp_path, name, patient_id="CHEM-X1", Rows=side, Columns=side, PixelData=pixels
        )
        peaks[name] = _peak_while_serving(ingest(source)) / len(pixels)
    assert peaks["CT_small.dcm"] < 1.5, peaks
    assert peaks["MR_small_bigendian.dcm"] < 1.5, peaks
