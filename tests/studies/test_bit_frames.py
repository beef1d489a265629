"""Frames of 1-bit images (Bits Allocated 1): bit-packed with no padding between frames (PS3.5
8.1.1), each served from its own first pixel, as pydicom's pack_bits packs that frame."""

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import pack_bits

from studies import bit_frames
from tests.conftest import client_for

from .conftest import dicom_copy, ingest, multipart_parts, share_with_alice

# Three frames of 5 x 7 pixels: 35 bits each, so that the second and third frames start
# inside a byte (at bits 35 and 70) and end inside one.
ROWS, COLUMNS = 5, 7
CORNERS = [(143, 244), (250, 76), (365, 151)]  # on the liver's edge: both values


def _frames(result, frames: str, **headers):
    return client_for("alice", "CHL").get(
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}/frames/{frames}",
        **headers,
    )


@pytest.fixture
def multi_frame(cast, tmp_path):
    """A three-frame 1-bit instance cut from pydicom's liver segmentation (1-bit, one
    frame), packed by pydicom; and pydicom's own reading of each of its frames."""
    share_with_alice(cast)
    source = dicom_copy(tmp_path, "liver_1frame.dcm", patient_id="CHEM-X1")
    liver = dcmread(source).pixel_array
    cut = np.stack([liver[r : r + ROWS, c : c + COLUMNS] for r, c in CORNERS])
    assert all(0 < f.sum() < f.size for f in cut)  # both values: a shifted bit shows
    ds = dcmread(source)
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, len(CORNERS)
    ds.PixelData = pack_bits(cut)
    ds.save_as(source)
    expected = dcmread(source).pixel_array
    assert (expected == cut).all()
    result = ingest(source)
    assert result.status == "stored", result.reason
    return result, expected


@pytest.mark.parametrize("number", [1, 2, 3])
def test_each_frame_of_a_multi_frame_1_bit_instance_is_its_own_bits(multi_frame, number):
    result, expected = multi_frame
    response = _frames(result, str(number))
    assert response.status_code == 200
    ((_, data),) = multipart_parts(response)
    assert data == pack_bits(expected[number - 1], pad=False)


def test_several_1_bit_frames_come_in_the_order_asked(multi_frame):
    result, expected = multi_frame
    parts = multipart_parts(_frames(result, "3,1,2"))
    assert [data for _, data in parts] == [pack_bits(expected[n], pad=False) for n in (2, 0, 1)]


@pytest.mark.parametrize("name", ["liver_1frame.dcm", "liver_expb_1frame.dcm"])
def test_a_whole_1_bit_frame_is_served_little_and_big_endian_alike(cast, tmp_path, name):
    share_with_alice(cast)
    source = dicom_copy(tmp_path, name, patient_id="CHEM-X1")
    result = ingest(source)
    ((_, data),) = multipart_parts(_frames(result, "1"))
    assert data == pack_bits(dcmread(source).pixel_array, pad=False)


def test_a_1_bit_frame_asked_uncompressed_by_name_is_served(multi_frame):
    result, expected = multi_frame
    accept = (
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
    )
    ((_, data),) = multipart_parts(_frames(result, "2", HTTP_ACCEPT=accept))
    assert data == pack_bits(expected[1], pad=False)


class _Recorder(io.BytesIO):
    """A stored object that records the byte ranges read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.ranges: list[tuple[int, int]] = []

    def read(self, size: int = -1) -> bytes:
        start = self.tell()
        data = super().read(size)
        self.ranges.append((start, start + len(data)))
        return data


@pytest.mark.parametrize("piece", [1, 2, 3, 1 << 20])
def test_only_the_bytes_covering_the_frame_are_read_a_piece_at_a_time(piece, monkeypatch):
    """Frame 3 of 21 x 21 1-bit frames after a 10-byte header: bits 882 to 1322, in the
    bytes 110 to 165 of the value, 120 to 175 of the object; served the same whatever the
    size of the pieces read."""
    monkeypatch.setattr(bit_frames, "PIECE", piece)
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 2, size=(4, 21, 21), dtype=np.uint8)
    stored = _Recorder(b"h" * 10 + pack_bits(pixels))
    served = b"".join(bit_frames.frame_bytes(stored, offset=10, index=2, frame_bits=441))
    assert served == pack_bits(pixels[2], pad=False)
    assert min(start for start, _ in stored.ranges) == 120
    assert max(end for _, end in stored.ranges) == 176
    assert all(end - start <= piece + 1 for start, end in stored.ranges)


def test_a_frame_beyond_the_stored_pixel_data_is_refused():
    from studies.dicom import InvalidDicom

    stored = io.BytesIO(b"\x00" * 32)
    with pytest.raises(InvalidDicom):  # frame 4 ends at bit 140: past the 12-byte value
        b"".join(bit_frames.frame_bytes(stored, offset=0, index=3, frame_bits=35, length=12))
