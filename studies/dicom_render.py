"""Rendering one frame as JPEG or PNG (pydicom's pixel handlers, pylibjpeg plugins, Pillow).

A frame is reduced to the pixels its rendering needs before anything else is computed on it:
the lookup tables and the window work in float64, 8 bytes a pixel, and a frame may be 2 GiB
(STOW_MAX_BYTES). What a rendering holds beyond the decoded frame is thus bounded by its
output (at most RENDER_MAX_PIXELS), whatever the size of the frame.
"""

import io
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from django.conf import settings
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from anim_gateway.errors import ApplicationError
from studies.dicom import InvalidDicom, reraise_reader_failure

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}

# How much of a frame the block mean sums at once, as float64, whatever the frame's size.
_BAND_BYTES = 8 * 1024 * 1024
# Up to which factor columns are summed by strided adds, faster there than a reduction.
_STRIDED_UP_TO = 16


class _ViewRefused(logging.Filter):
    """pydicom warns when it cannot give the view asked for (view_only, below: bit-packed
    frames, 8-bit OW in big endian) and gives a copy, as without it: nothing to log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unable to return an ndarray that's a view")


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_ViewRefused())


class CannotRender(InvalidDicom):
    """The frame cannot be decoded (unsupported compression, corrupt data)."""


def render_frame(
    source: Path | BinaryIO,
    *,
    index: int,
    media_type: str = "image/jpeg",
    window: tuple[float, float] | None = None,
    max_size: int | None = None,
    viewport: tuple[int, int] | None = None,
    quality: int = 90,
    max_pixels: int | None = None,
) -> bytes:
    """One frame (0-based ``index``) as an 8-bit image, read from a file or a stored object
    (read, seek and tell) as far as that frame, no further.

    The window is the caller's (center, width), else the dataset's, else the frame's range.
    A frame larger than ``max_pixels`` (RENDER_MAX_PIXELS by default) is rendered reduced
    to at most that many pixels, its aspect ratio kept.
    """
    ds = Dataset()
    arr = decode_frame(source, index=index, ds_out=ds)
    frame_size = (arr.shape[1], arr.shape[0])  # (width, height), as Pillow has it
    factor = _reduction_factor(
        frame_size,
        _output_size(frame_size, max_size=max_size, viewport=viewport),
        max_pixels=max_pixels or settings.RENDER_MAX_PIXELS,
    )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    # Averaging narrows the range: the whole frame's is kept for the contrast it gives.
    stored_range = _stored_range(arr) if factor > 1 else None
    arr = _reduce(arr, factor, average=photometric != "PALETTE COLOR")
    try:
        image = _to_image(arr, photometric, ds, window=window, stored_range=stored_range)
    except Exception as exc:  # a palette or LUT the dataset names but does not hold whole
        raise CannotRender(
            f"The frame's lookup tables cannot be applied: {type(exc).__name__}: {exc}"
        ) from exc
    if max_size:
        image.thumbnail((max_size, max_size))
    if viewport:
        image = _fit(image, _fitted_size(frame_size, viewport))
    out = io.BytesIO()
    image.save(out, format=FORMATS[media_type], quality=quality)
    return out.getvalue()


def decode_frame(source: Path | BinaryIO, *, index: int, ds_out: Dataset) -> np.ndarray:
    """The one frame ``index``: pydicom reads that frame's bytes (or fragments), no other.

    view_only: a natively encoded frame comes as a read-only view on the bytes read rather
    than a copy of them (one frame's size less at the peak); nothing here writes into it.
    """
    try:
        arr = pixel_array(
            str(source) if isinstance(source, Path) else source,
            index=index,
            ds_out=ds_out,
            view_only=True,
        )
    except ApplicationError:
        raise  # already told apart (the storage failing under the read, say)
    except Exception as exc:  # decoders raise many types on corrupt or unsupported data
        reraise_reader_failure(source)
        raise CannotRender(f"The frame cannot be decoded: {type(exc).__name__}: {exc}") from exc
    # pydicom catches some read errors (walking fragments, say) and decodes what it had:
    # a frame read while the storage failed is refused, never rendered from partial bytes.
    reraise_reader_failure(source)
    return arr


def _output_size(
    frame_size: tuple[int, int], *, max_size: int | None, viewport: tuple[int, int] | None
) -> tuple[int, int]:
    """About the size of the image sent: the frame's, shrunk to max_size, fitted to the
    viewport (within a pixel of what Pillow makes: it only bounds the reduction)."""
    size = frame_size
    if max_size and max(size) > max_size:
        size = _fitted_size(size, (max_size, max_size))
    return _fitted_size(size, viewport) if viewport else size


def _reduction_factor(
    frame_size: tuple[int, int], output_size: tuple[int, int], *, max_pixels: int
) -> int:
    """The integer factor the frame is reduced by on each side: as much as keeps twice the
    output's pixels on each side (Lanczos then resamples from that, as it did from the
    whole frame), and at least as much as brings the frame within ``max_pixels``."""
    width, height = frame_size
    max_pixels = max(1, max_pixels)  # a setting of 0 or less: one pixel, not a loop forever
    kept = max(1, min(width // (2 * output_size[0]), height // (2 * output_size[1])))
    needed = max(1, math.isqrt(width * height // max_pixels))
    while math.ceil(width / needed) * math.ceil(height / needed) > max_pixels:
        needed += 1
    return max(kept, needed)


def _reduce(arr: np.ndarray, factor: int, *, average: bool) -> np.ndarray:
    """The frame with one pixel for each ``factor`` x ``factor`` block of it: the block's
    mean, else (palette indices, which do not average) its first pixel."""
    if factor == 1:
        return arr
    if not average:
        return np.ascontiguousarray(arr[::factor, ::factor])
    return _block_mean(arr, factor)


def _block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Each block's mean, in the frame's own dtype (rounded for integers: the lookup tables
    index by stored values); the blocks of the last row and column may be smaller.

    Summed in float64 a band of rows at a time (numpy casts a reduction's input as a whole):
    beyond the result, no more than _BAND_BYTES of the frame is ever held as floats."""
    rows, columns = arr.shape[:2]
    sums = np.zeros((-(-rows // factor), -(-columns // factor), *arr.shape[2:]), np.float64)
    band = max(1, _BAND_BYTES // (8 * arr[0].size))  # rows of the frame a band
    for start, stop in _row_bands(rows, factor, band):
        row_sums = _column_block_sums(arr[start:stop], factor)
        whole = (stop - start) // factor  # rows of blocks the band holds whole
        first = start // factor
        if whole:
            shape = (whole, factor, *row_sums.shape[1:])
            sums[first : first + whole] += row_sums[: whole * factor].reshape(shape).sum(axis=1)
        if whole * factor < stop - start:  # part of a block: a large one, or the frame's last
            sums[first + whole] += row_sums[whole * factor :].sum(axis=0)
    sums /= factor * factor
    # The last row and column of blocks may be cut short by the frame's edge.
    sums[-1] *= factor / (rows - (len(sums) - 1) * factor)
    sums[:, -1] *= factor / (columns - (sums.shape[1] - 1) * factor)
    if np.issubdtype(arr.dtype, np.integer):
        np.rint(sums, out=sums)
    return sums.astype(arr.dtype)


def _row_bands(rows: int, factor: int, band: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of at most ``band`` rows each, none across a row of blocks unless it
    holds whole rows of blocks: rows of blocks a band, else a block's rows in bands."""
    step = band // factor * factor
    if step:
        yield from ((start, min(start + step, rows)) for start in range(0, rows, step))
        return
    for block in range(0, rows, factor):
        end = min(block + factor, rows)
        yield from ((start, min(start + band, end)) for start in range(block, end, band))


def _column_block_sums(part: np.ndarray, factor: int) -> np.ndarray:
    """Each row's sums over ``factor`` columns at a time (the last ones maybe fewer)."""
    height, columns = part.shape[:2]
    whole = columns // factor
    sums = np.empty((height, -(-columns // factor), *part.shape[2:]), np.float64)
    blocks = part[:, : whole * factor]
    if factor <= _STRIDED_UP_TO:  # numpy sums a short axis slowly: a few strided adds
        sums[:, :whole] = blocks[:, ::factor]
        for offset in range(1, factor):
            sums[:, :whole] += blocks[:, offset::factor]
    else:
        shape = (height, whole, factor, *part.shape[2:])  # a view: one axis split in two
        sums[:, :whole] = blocks.reshape(shape).sum(axis=2, dtype=np.float64)
    if whole * factor < columns:
        sums[:, whole] = part[:, whole * factor :].sum(axis=1, dtype=np.float64)
    return sums


def _fitted_size(size: tuple[int, int], viewport: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled, up or down, to fit the viewport with its aspect ratio kept."""
    scale = min(viewport[0] / size[0], viewport[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The whole image resampled to ``size`` (the frame's fitted size, not the reduced
    image's, whose sides were rounded up to whole blocks)."""
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _stored_range(frame: np.ndarray) -> tuple[int | float, int | float]:
    """The lowest and highest stored values of the frame's grey or RGB samples (not alpha)."""
    samples = frame[..., :3] if frame.ndim == 3 else frame
    return samples.min(), samples.max()


def _to_image(
    arr: np.ndarray,
    photometric: str,
    ds: Dataset,
    *,
    window: tuple[float, float] | None,
    stored_range: tuple[int | float, int | float] | None,
) -> Image.Image:
    """``stored_range``, when ``arr`` is a reduced frame, is the whole frame's: the image is
    given the contrast of the whole frame's range (not a palette's: its indices are not
    ordered), not that of the reduction's narrower one."""
    if photometric == "PALETTE COLOR":
        return Image.fromarray(_scale(apply_color_lut(arr, ds)), "RGB")
    if arr.ndim == 3:
        # pydicom converts YBR to RGB by default; anything else with samples is shown as RGB.
        low, high = stored_range or (None, None)
        return Image.fromarray(_scale(arr[..., :3], low=low, high=high), "RGB")
    grey = _window(arr, ds, window=window, stored_range=stored_range)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey, "L")


def _window(
    arr: np.ndarray,
    ds: Dataset,
    *,
    window: tuple[float, float] | None,
    stored_range: tuple[int | float, int | float] | None,
) -> np.ndarray:
    """The caller's window, else 0-255 over the range of the values shown (the dataset's
    window or VOI LUT, else the modality values): the range of ``arr``'s, or the one the
    same monotonic lookup tables give ``stored_range``."""
    if window is not None:
        center, width = window
        low, high = center - width / 2, center + width / 2
        values = _modality_values(arr, ds)
        np.clip(values, low, high, out=values)
        return _scale(values, low=low, high=high, in_place=True)
    values = _shown_values(arr, ds)
    ends = values if stored_range is None else _shown_values(np.array(stored_range), ds)
    return _scale(values, low=float(ends.min()), high=float(ends.max()), in_place=True)


def _modality_values(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """The modality LUT's values in float64, as before, and ours to change in place: a
    copy unless the LUT made a new array (``arr`` may be a read-only view on the file)."""
    values = apply_modality_lut(arr, ds)
    return values.astype(np.float64, copy=np.may_share_memory(values, arr))


def _shown_values(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """The values through the modality LUT, then the dataset's window or VOI LUT if it has
    one (a malformed one is passed over: the modality values are shown)."""
    values = _modality_values(arr, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        try:
            return apply_voi_lut(values, ds, index=0)  # a new array: ours to change too
        except Exception:  # noqa: S110 a malformed VOI falls back to the frame's own range
            pass
    return values


def _scale(
    arr: np.ndarray,
    *,
    low: float | None = None,
    high: float | None = None,
    in_place: bool = False,
) -> np.ndarray:
    """``arr`` from [low, high] (its own range by default) to 0-255, computed in float64:
    in ``arr`` itself when it is float64 and ``in_place`` says it is the caller's to spend,
    else in one copy of it."""
    low = float(arr.min()) if low is None else float(low)
    high = float(arr.max()) if high is None else float(high)
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    if in_place and arr.dtype == np.float64:
        values = np.subtract(arr, low, out=arr)
    else:
        values = np.subtract(arr, low, dtype=np.float64)
    values *= 255.0 / (high - low)
    return np.clip(values, 0, 255, out=values).astype(np.uint8)
