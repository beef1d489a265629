"""A compressed frame decoded to the bytes Explicit VR Little Endian would store (pydicom)."""

from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from studies.dicom_render import decode_frame


def can_decode(transfer_syntax_uid: str) -> bool:
    """Whether one of pydicom's decoders installed here reads frames of this syntax."""
    try:
        return get_decoder(UID(transfer_syntax_uid)).is_available
    except NotImplementedError:  # no decoder in pydicom for it at all (MPEG, say)
        return False


def decoded_frame(source: Path | BinaryIO, *, index: int) -> bytes:
    """One frame (0-based ``index``), read and decoded alone, as uncompressed bytes.

    The layout is an uncompressed frame's: rows, columns, then samples interleaved (Planar
    Configuration 0), each sample BitsAllocated wide, little endian. Colour is what
    pydicom's ``pixel_array`` gives, and ``Dataset.decompress`` stores: YBR_FULL and
    YBR_FULL_422 converted to RGB; JPEG 2000's YBR_ICT and YBR_RCT as RGB, the decoder
    having reversed the component transform. CannotRender when the frame does not decode.
    """
    pixels = decode_frame(source, index=index, ds_out=Dataset())
    # PS3.18 8.7.3.3.1: uncompressed bulk data is little endian, whatever this host is.
    return np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
