"""Rendering and frames through a stored object's reader: a read that fails is the
storage's error, whatever pydicom makes of it, never a frame made of partial bytes."""

import warnings

import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_frames

from studies.dicom_render import CannotRender, render_frame
from studies.storage import ObjectUnavailable, Reader

from .conftest import pydicom_file


class _FailingAt:
    """A file whose ``n``-th read fails as a storage read does; the others read on."""

    def __init__(self, fp, n: int) -> None:
        self.fp, self.n, self.reads = fp, n, 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads == self.n:
            raise OSError("the storage went away")
        return self.fp.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fp.seek(offset, whence)

    def tell(self) -> int:
        return self.fp.tell()


@pytest.fixture
def fragmented(tmp_path):
    """A JPEG frame in 8 fragments with no offset table: pydicom walks them, catching the
    errors of its reads (pydicom.encaps.generate_fragments)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame], fragments_per_frame=8, has_bot=False)
    path = tmp_path / "fragmented.dcm"
    ds.save_as(path)
    return path


def test_a_read_failing_anywhere_is_the_storage_error(fragmented):
    with fragmented.open("rb") as fp:
        counting = _FailingAt(fp, 0)
        render_frame(Reader(counting, key="k"), index=0, media_type="image/png")
    outcomes = set()
    for n in range(1, counting.reads + 1):
        with fragmented.open("rb") as fp:
            try:
                render_frame(Reader(_FailingAt(fp, n), key="k"), index=0, media_type="image/png")
                outcomes.add(f"rendered despite read {n} failing")
            except ObjectUnavailable:
                outcomes.add("storage error")
            except CannotRender:
                outcomes.add(f"not renderable after read {n} failed")
    assert outcomes == {"storage error"}


def test_a_frame_read_failing_anywhere_is_the_storage_error(fragmented):
    from pydicom.uid import JPEGBaseline8Bit

    from studies.dicom import read_frame, read_header

    header = read_header(fragmented)
    frame = {"transfer_syntax_uid": JPEGBaseline8Bit, "index": 0, "number_of_frames": 1}
    frame |= {"offset": header.pixel_data_offset, "frame_size": 0}
    with fragmented.open("rb") as fp:
        counting = _FailingAt(fp, 0)
        whole = read_frame(Reader(counting, key="k"), **frame)
    outcomes = set()
    for n in range(1, counting.reads + 1):
        with fragmented.open("rb") as fp:
            try:
                got = read_frame(Reader(_FailingAt(fp, n), key="k"), **frame)
                outcomes.add("the frame" if got == whole else f"other bytes after read {n}")
            except ObjectUnavailable:
                outcomes.add("storage error")
    assert "storage error" in outcomes
    assert outcomes <= {"storage error", "the frame"}
