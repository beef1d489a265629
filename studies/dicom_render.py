"""Rendering one frame as JPEG or PNG (pydicom's pixel handlers, pylibjpeg plugins, Pillow)."""

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from anim_gateway.errors import ApplicationError
from studies.dicom import InvalidDicom, reraise_reader_failure

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}


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
) -> bytes:
    """One frame (0-based ``index``) as an 8-bit image, read from a file or a stored object
    (read, seek and tell) as far as that frame, no further.

    The window is the caller's (center, width), else the dataset's, else the frame's range.
    """
    ds = Dataset()
    try:
        arr = pixel_array(
            str(source) if isinstance(source, Path) else source, index=index, ds_out=ds
        )
    except ApplicationError:
        raise  # already told apart (the storage failing under the read, say)
    except Exception as exc:  # decoders raise many types on corrupt or unsupported data
        reraise_reader_failure(source)
        raise CannotRender(f"The frame cannot be decoded: {type(exc).__name__}: {exc}") from exc
    # pydicom catches some read errors (walking fragments, say) and decodes what it had:
    # a frame read while the storage failed is refused, never rendered from partial bytes.
    reraise_reader_failure(source)
    try:
        image = _to_image(arr, ds, window=window)
    except Exception as exc:  # a palette or LUT the dataset names but does not hold whole
        raise CannotRender(
            f"The frame's lookup tables cannot be applied: {type(exc).__name__}: {exc}"
        ) from exc
    if max_size:
        image.thumbnail((max_size, max_size))
    if viewport:
        image = _fit(image, viewport)
    out = io.BytesIO()
    image.save(out, format=FORMATS[media_type], quality=quality)
    return out.getvalue()


def _fit(image: Image.Image, viewport: tuple[int, int]) -> Image.Image:
    """The whole image scaled, up or down, to fit the viewport with its aspect ratio kept."""
    scale = min(viewport[0] / image.width, viewport[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _to_image(arr: np.ndarray, ds: Dataset, *, window: tuple[float, float] | None) -> Image.Image:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        return Image.fromarray(_scale(apply_color_lut(arr, ds)), "RGB")
    if arr.ndim == 3:
        # pydicom converts YBR to RGB by default; anything else with samples is shown as RGB.
        return Image.fromarray(_scale(arr[..., :3]), "RGB")
    grey = _window(arr, ds, window=window)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey, "L")


def _window(arr: np.ndarray, ds: Dataset, *, window: tuple[float, float] | None) -> np.ndarray:
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if window is None and ("WindowCenter" in ds or "VOILUTSequence" in ds):
        try:
            return _scale(apply_voi_lut(values, ds, index=0))
        except Exception:  # noqa: S110 a malformed VOI falls back to the frame's own range
            pass
    if window is not None:
        center, width = window
        low, high = center - width / 2, center + width / 2
        return _scale(np.clip(values, low, high), low=low, high=high)
    return _scale(values)


def _scale(arr: np.ndarray, *, low: float | None = None, high: float | None = None) -> np.ndarray:
    arr = arr.astype(np.float64)
    low = float(arr.min()) if low is None else low
    high = float(arr.max()) if high is None else high
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    return ((arr - low) * (255.0 / (high - low))).clip(0, 255).astype(np.uint8)
