"""Native frames of a big-endian object, served little endian (PS3.18 8.7.3.3.1)."""

from collections.abc import Iterator
from typing import BinaryIO

import numpy

from studies.dicom import InvalidDicom

# Words are turned round this many bytes at a time: a frame is held once, as a little-endian
# one is, plus one piece in each byte order (a multiple of every word width).
PIECE = 1 << 20

_PIXEL_DATA_TAG = b"\x7f\xe0\x00\x10"


def swapped_word(fp: BinaryIO, *, offset: int, bits_allocated: int) -> int:
    """The width in bytes of the stored words, 0 when the bytes need no turning round.

    16- and 32-bit pixels are words of their own width. 8-bit pixels are bytes in OB, but
    OW holds them in 16-bit words, each pair stored the other way round (PS3.5 7.3): the
    value representation is read from the element's header, just before its value."""
    if bits_allocated in (16, 32):
        return bits_allocated // 8
    if bits_allocated != 8:
        return 0
    fp.seek(offset - 12)  # tag (4), VR (2), reserved (2), length (4)
    header = fp.read(12)
    if header[:4] != _PIXEL_DATA_TAG or header[4:6] not in (b"OB", b"OW"):
        raise InvalidDicom("The stored Pixel Data element's header is not where it was indexed.")
    return 2 if header[4:6] == b"OW" else 0


def little_endian_frame(
    fp: BinaryIO, *, offset: int, index: int, frame_size: int, word: int
) -> Iterator[bytes]:
    """Frame ``index`` (0-based) of the Pixel Data value at ``offset``, its words turned
    round, in pieces. A frame may start or end inside a word (8-bit pixels in OW, an odd
    frame size): the whole words around it are read and turned, then cut to the frame."""
    start = index * frame_size
    head = start % word
    span = head + frame_size
    span += -span % word  # the Pixel Data value has an even length: the last word is there
    fp.seek(offset + start - head)
    window = fp.read(span)
    if len(window) != span:
        raise InvalidDicom("The frame lies beyond the stored Pixel Data.")
    view = memoryview(window)
    end = head + frame_size
    for at in range(0, span, PIECE):
        piece = numpy.frombuffer(view[at : at + PIECE], dtype=f">u{word}")
        turned = piece.astype(f"<u{word}").tobytes()
        yield turned[max(head - at, 0) : max(end - at, 0)]
