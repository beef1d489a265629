"""Rendering a large frame: reduced to the pixels its rendering needs before its lookup tables
and window are computed (in float64, 8 bytes a pixel), so that what a rendering holds beyond
the decoded frame is bounded by its output, not by the frame (up to STOW_MAX_BYTES)."""

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from studies.dicom_render import render_frame

MiB = 1024 * 1024


def _ct(path: Path, frames: np.ndarray, **attributes) -> Path:
    """An uncompressed 16-bit MONOCHROME2 instance of ``frames`` (frames, rows, columns)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = frames.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    """4000 x 4000, 32 MB of pixels, with a rescale and a window as a CT has."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 4000, (1, 4000, 4000), dtype=np.uint16)
    path = tmp_path_factory.mktemp("render") / "large.dcm"
    return _ct(
        path, frame, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400
    )


def _size(image: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(image)).size


def _peak_bytes(render) -> tuple[bytes, int]:
    tracemalloc.start()
    try:
        image = render()
        return image, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_frame_is_reduced_before_its_lookup_tables_and_window(large):
    frame_bytes = 4000 * 4000 * 2
    with large.open("rb") as fp:
        image, peak = _peak_bytes(lambda: render_frame(fp, index=0, viewport=(256, 256)))
    assert _size(image) == (256, 256)
    # The decoded frame, and no float64 array of its size (8 bytes a pixel: 4 times the
    # frame's bytes): before, the rendering held about 17 times the frame at its peak.
    assert peak < frame_bytes + 16 * MiB


@pytest.mark.parametrize(("max_pixels", "size"), [(1_000_000, (1000, 1000)), (10**8, (4000, 4000))])
def test_a_frame_is_rendered_within_render_max_pixels(settings, large, max_pixels, size):
    settings.RENDER_MAX_PIXELS = max_pixels
    with large.open("rb") as fp:
        image, peak = _peak_bytes(lambda: render_frame(fp, index=0, media_type="image/png"))
    assert _size(image) == size
    if size == (1000, 1000):  # the lookup tables and window on a million pixels
        assert peak < 4000 * 4000 * 2 + 32 * MiB


def test_a_reduced_frame_keeps_the_contrast_of_the_whole_frame(settings, tmp_path):
    """Averaging narrows a frame's range (its extremes are single pixels here): the reduced
    rendering is scaled over the whole frame's range, as the frame itself is."""
    frame = np.full((1, 64, 64), 1000)
    frame[0, 0, 0], frame[0, 63, 63] = 0, 4000
    path = _ct(tmp_path / "extremes.dcm", frame)
    whole = render_frame(path, index=0, media_type="image/png")
    settings.RENDER_MAX_PIXELS = 16 * 16
    reduced = render_frame(path, index=0, media_type="image/png")
    assert _size(whole) == (64, 64)
    assert _size(reduced) == (16, 16)
    grey = np.asarray(Image.open(io.BytesIO(whole)))[32, 32]
    assert grey == 63  # 1000 of 0-4000
    assert np.asarray(Image.open(io.BytesIO(reduced)))[8, 8] == grey


def test_a_small_frame_is_rendered_from_all_its_pixels(tmp_path):
    """No reduction below twice the viewport: each side of the frame is kept whole."""
    frame = np.zeros((1, 200, 100))
    frame[0, :, ::2] = 4000  # one-pixel stripes that a reduction would average away
    path = _ct(tmp_path / "stripes.dcm", frame)
    image = render_frame(path, index=0, media_type="image/png", viewport=(100, 200))
    assert set(np.unique(np.asarray(Image.open(io.BytesIO(image))))) == {0, 255}


class _CountingReads:
    def __init__(self, fp) -> None:
        self.fp, self.read_bytes = fp, 0

    def read(self, size: int = -1) -> bytes:
        data = self.fp.read(size)
        self.read_bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fp.seek(offset, whence)

    def tell(self) -> int:
        return self.fp.tell()


def test_only_the_frame_rendered_is_read_and_decoded(tmp_path):
    frames = np.stack([np.full((1000, 1000), n * 100) for n in range(8)])  # 2 MB a frame
    path = _ct(tmp_path / "multiframe.dcm", frames)
    with path.open("rb") as fp:
        counting = _CountingReads(fp)
        image, peak = _peak_bytes(
            lambda: render_frame(counting, index=5, media_type="image/png", viewport=(100, 100))
        )
    assert counting.read_bytes < 2_000_000 + 64 * 1024  # the frame and the header
    assert peak < 2_000_000 + 8 * MiB  # not the 16 MB of all eight
    assert set(np.unique(np.asarray(Image.open(io.BytesIO(image))))) == {0}  # a flat frame
