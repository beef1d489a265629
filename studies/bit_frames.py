"""Frames of 1-bit pixel data, cut out of their bit-packed Pixel Data a piece at a time."""

from collections.abc import Iterator
from typing import BinaryIO

import numpy

from studies.dicom import InvalidDicom

# Bytes of a frame served at a time (one more is read): the frame is never held whole.
PIECE = 1 << 20


def frame_bytes(
    fp: BinaryIO, *, offset: int, index: int, frame_bits: int, length: int | None = None
) -> Iterator[bytes]:
    """Frame ``index`` (0-based) of the 1-bit Pixel Data value at ``offset`` (``length``
    bytes long, when known), its first pixel in the lowest bit of its first byte.

    PS3.5 8.1.1: frames of Bits Allocated 1 follow each other bit after bit, a frame may
    start and end inside a byte; each pixel's bit is filled from the lowest. Only the bytes
    covering the frame are read; the bits past its last pixel are zero, as pydicom's
    ``pack_bits`` leaves them.
    """
    start = index * frame_bits
    shift, first = start % 8, start // 8
    covering = (shift + frame_bits + 7) // 8
    if length is not None and first + covering > length:
        raise InvalidDicom("The frame lies beyond the stored Pixel Data.")
    size = (frame_bits + 7) // 8
    for at in range(0, size, PIECE):
        count = min(PIECE, size - at)
        # A byte out is made of the top of one byte in and the bottom of the next.
        wanted = min(count + 1, covering - at) if shift else count
        fp.seek(offset + first + at)
        window = fp.read(wanted)
        if len(window) != wanted:
            raise InvalidDicom("The frame lies beyond the stored Pixel Data.")
        piece = _shifted(window, shift=shift, count=count)
        if at + count == size:
            piece = _last_bits_only(piece, frame_bits=frame_bits)
        yield piece


def _shifted(window: bytes, *, shift: int, count: int) -> bytes:
    """``count`` bytes whose bits start ``shift`` bits into ``window``."""
    if not shift:
        return window[:count]
    words = numpy.frombuffer(window, dtype=numpy.uint8).astype(numpy.uint16)
    high = numpy.zeros(count, dtype=numpy.uint16)
    following = words[1 : count + 1]
    high[: len(following)] = following << (8 - shift)
    return ((words[:count] >> shift) | high).astype(numpy.uint8).tobytes()


def _last_bits_only(piece: bytes, *, frame_bits: int) -> bytes:
    """The last byte with the bits past the frame cleared (they are the next frame's)."""
    used = frame_bits % 8
    if not used or not piece:
        return piece
    return piece[:-1] + bytes([piece[-1] & ((1 << used) - 1)])
