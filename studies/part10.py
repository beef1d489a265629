"""A Part 10 file's encoded elements walked in one pass: the structure check, the count of its
elements (DICOM_MAX_HEADER_ELEMENTS) and of its Pixel Data fragments (DICOM_MAX_PIXEL_FRAGMENTS),
and the header read without pydicom's parser when the file is plain. Every file is walked
before pydicom parses anything of its data set."""

import contextlib
import logging
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from studies.header_json import (
    ITEM,
    ITEM_END,
    LONG_LENGTH,
    MAX_SEQUENCE_DEPTH,
    SEQUENCE_END,
    SHORT_LENGTH,
    TAG_LENGTH,
    UNDEFINED_LENGTH,
    dictionary_vr_of,
)

logger = logging.getLogger(__name__)

PREAMBLE_LENGTH = 128
_DATA_START = PREAMBLE_LENGTH + 4  # after the preamble and "DICM"

# Explicit VRs whose length takes 32 bits, as the walk reads them from the file: bytes.
_LONG_VRS = {vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32}
# The VRs pydicom knows, as they are encoded: any other is left to pydicom.
_KNOWN_VRS = {vr.encode("ascii") for vr in VR}
_PIXEL_DATA = 0x7FE00010
# pydicom's stop_before_pixels stops at the first of these (Float, Double Float, Pixel Data).
_PIXEL_TAGS = {0x7FE00008, 0x7FE00009, _PIXEL_DATA}
# Explicit VRs whose value of defined length pydicom may read as a sequence: SQ, and UN
# (of a tag its dictionary calls a sequence, PS3.5 6.2.2).
_NESTING_VRS = {b"SQ", b"UN"}
_ITEM_BYTES = {True: struct.pack("<HH", 0xFFFE, 0xE000), False: struct.pack(">HH", 0xFFFE, 0xE000)}


class InvalidDicom(Exception):
    """The file is not a DICOM object the gateway can store; the message says why."""


class OverLimit(InvalidDicom):
    """The object passes one of the limits of what the gateway reads: refused as soon as the
    walk's count passes it; ``reason_code`` names the limit in the audit log."""

    reason_code = ""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class TooManyElements(OverLimit):
    """The data set holds more elements than the gateway reads (DICOM_MAX_HEADER_ELEMENTS):
    refused as soon as the count passes it, before the elements are parsed or encoded."""

    reason_code = "TOO_MANY_ELEMENTS"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The data set holds more than {limit} data elements, the most this gateway reads.",
            limit,
        )


class TooManyFragments(OverLimit):
    """Encapsulated Pixel Data of more fragments than the gateway reads
    (DICOM_MAX_PIXEL_FRAGMENTS): each costs the walk a step, and every later read of a frame
    (pydicom's get_frame) a step and an object, so a file of millions of tiny fragments is
    refused as soon as the count passes it. The Basic Offset Table is not a fragment."""

    reason_code = "TOO_MANY_FRAGMENTS"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The encapsulated Pixel Data holds more than {limit} fragments, the most this "
            "gateway reads.",
            limit,
        )


# No limit: a count never reaches it.
UNLIMITED = 2**63
# The fewest bytes an element or an item takes (a tag and a length, no value), in every
# encoding: a span of n bytes holds at most n // 8 of them.
_SMALLEST = 8


class _Unusual(Exception):
    """Something the quick read leaves to pydicom (which decides, as it always has)."""


_TAG = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}  # by little endian


class Walker:
    """A length-only pass over the encoded elements (PS3.5 7.1), stepping over values.

    Offsets into the mapped file and precompiled structs: a Python call per element, no
    read, seek or tell (the walk of a file object cost a sixth of read_header). With
    ``collect``, the top-level elements before the pixel data are kept as pydicom's reader
    would yield them (raw), in ``meta`` and ``elements``.
    """

    def __init__(
        self,
        data: bytes | mmap.mmap,
        size: int,
        *,
        collect: bool = False,
        limit: int = UNLIMITED,
        fragment_limit: int = UNLIMITED,
    ) -> None:
        self.data = data
        self.size = size
        self.pos = 0
        self.pixel: tuple[int, int] | None = None
        self.collecting = collect
        self.meta: dict[BaseTag, RawDataElement] = {}
        self.elements: dict[BaseTag, RawDataElement] = {}
        self._into = self.meta
        # The elements and sequence items walked, at any depth (not the fragments of
        # encapsulated pixel data), refused past ``limit``; and the bytes of the values the
        # walk steps over that may hold more (a sequence or an item of defined length, UN,
        # an implicit VR value), counted only when they could pass it (check_count).
        self.limit = limit
        self.count = 0
        self.meta_count = 0
        self.unseen = 0
        # The fragments of encapsulated pixel data walked (not their offset tables), refused
        # past ``fragment_limit``.
        self.fragment_limit = fragment_limit
        self.fragments = 0

    def _truncated(self) -> InvalidDicom:
        return InvalidDicom(f"Truncated: the file ends inside an element at byte {self.size}.")

    def walk_meta(self) -> None:
        # The file meta group is always explicit VR little endian (PS3.10 7.1).
        while self.pos + 2 <= self.size and self.data[self.pos : self.pos + 2] == b"\x02\x00":
            self._element(implicit=False, little=True, depth=0)
        self._into = self.elements
        self.meta_count = self.count

    def check_count(self, start: int, *, implicit: bool, little: bool) -> None:
        """After a walk of the data set from ``start``: when the values it stepped over are
        large enough to hold what would pass the limit, count their elements too (a rare
        case: an enhanced multi-frame header, a large private value); TooManyElements when
        the whole count passes it."""
        if self.count + self.unseen // _SMALLEST <= self.limit:
            return
        counter = _Counter(
            self.data,
            self.size,
            limit=self.limit,
            counted=self.meta_count,
            fragment_limit=self.fragment_limit,
        )
        counter.dataset(start, None, implicit=implicit, little=little, depth=0)

    def walk(self, *, implicit: bool, little: bool, depth: int, nested: bool = False) -> None:
        """Elements up to the end of the file, or of the item when nested."""
        while self.pos < self.size:
            tag = self._element(implicit=implicit, little=little, depth=depth)
            if tag == ITEM_END and nested:
                return
            if tag == ITEM_END:
                raise InvalidDicom("Malformed: an item delimiter outside any sequence.")
        if nested:
            raise InvalidDicom("Truncated: the file ends inside a sequence item.")

    def _element(self, *, implicit: bool, little: bool, depth: int) -> int:
        # Each part of the header is checked against the file's end before it is read; the
        # checks are written out rather than a method call each.
        data, size, pos = self.data, self.size, self.pos
        if pos + 4 > size:
            raise self._truncated()
        group, elem = _TAG[little].unpack_from(data, pos)
        tag = group << 16 | elem
        if group == 0xFFFE:
            if pos + 8 > size:
                raise self._truncated()
            self.pos = pos + 8  # the item delimiter's length, ignored
            if tag == ITEM_END:
                return tag
            raise InvalidDicom(f"Malformed: unexpected item tag {tag:08X} in a dataset.")
        self.count += 1
        if self.count > self.limit:
            raise TooManyElements(self.limit)
        vr = b""
        if implicit:
            start = pos + 8
            if start > size:
                raise self._truncated()
            (length,) = LONG_LENGTH[little].unpack_from(data, pos + 4)
        else:
            if pos + 6 > size:
                raise self._truncated()
            vr = data[pos + 4 : pos + 6]
            if not (vr.isalpha() and vr.isupper()):
                raise InvalidDicom(
                    "Malformed: the dataset is not encoded in its declared transfer syntax "
                    "(explicit VR expected)."
                )
            long = vr in _LONG_VRS
            start = pos + 12 if long else pos + 8
            if start > size:
                raise self._truncated()
            if long:  # two reserved bytes, then the 32-bit length
                (length,) = LONG_LENGTH[little].unpack_from(data, pos + 8)
                if vr in _NESTING_VRS and length != UNDEFINED_LENGTH:
                    self.unseen += length
            else:
                (length,) = SHORT_LENGTH[little].unpack_from(data, pos + 6)
        self.pos = start
        if length == UNDEFINED_LENGTH:
            # UN of undefined length holds implicit VR little endian items (PS3.5 6.2.2).
            inner_implicit = implicit or vr == b"UN"
            self._sequence(
                implicit=inner_implicit,
                little=little or vr == b"UN",
                depth=depth + 1,
                items=tag not in _PIXEL_TAGS,
            )
        else:
            if start + length > self.size:
                raise InvalidDicom(
                    f"Truncated: element ({group:04X},{elem:04X}) declares {length} bytes, "
                    f"the file holds {self.size - start}."
                )
            self.pos = start + length
            if implicit and tag not in _PIXEL_TAGS:
                self.unseen += length  # its VR, and so whether it is a sequence, unknown
        if depth == 0:
            if tag == _PIXEL_DATA:
                self.pixel = (start, self.pos - start)
            if self.collecting:
                self._collect(tag, vr, length, start, implicit=implicit, little=little)
        return tag

    def _collect(
        self, tag: int, vr: bytes, length: int, start: int, *, implicit: bool, little: bool
    ) -> None:
        """Keep a top-level element as pydicom's reader yields it (filereader's
        data_element_generator); anything it would read otherwise is _Unusual."""
        if tag in _PIXEL_TAGS:
            self.collecting = False  # pydicom stops before the pixel data
            return
        if tag >> 16 in (0x0000, 0x0002) and self._into is self.elements:
            raise _Unusual  # a command set, or file meta elements inside the dataset
        if not implicit and vr not in _KNOWN_VRS:
            raise _Unusual
        name = None if implicit else vr.decode("ascii")
        if length == UNDEFINED_LENGTH:
            # pydicom parses a sequence of undefined length at once; its bytes (without the
            # delimiter) are the same sequence with a defined length, parsed when asked.
            if (dictionary_vr_of(tag) if implicit else name) != "SQ" or self._into is self.meta:
                raise _Unusual
            value = self.data[start : self.pos - 8]
            element = RawDataElement(BaseTag(tag), "SQ", len(value), value, start, implicit, little)
        else:
            value = self.data[start : self.pos] if length else empty_value_for_VR(name, raw=True)
            element = RawDataElement(BaseTag(tag), name, length, value, start, implicit, little)
        self._into[element.tag] = element  # a tag twice: the last one, as pydicom keeps

    def _sequence(self, *, implicit: bool, little: bool, depth: int, items: bool) -> None:
        """Items up to the sequence delimiter; counted as elements unless they are the
        offset table and fragments of encapsulated pixel data (``items`` false), which no
        header holds: the fragments are counted against their own limit."""
        if depth > MAX_SEQUENCE_DEPTH:
            raise InvalidDicom("Malformed: sequences nested too deeply.")
        offset_table = not items  # the first item of encapsulated pixel data (PS3.5 A.4)
        while True:
            if self.pos + 8 > self.size:
                raise self._truncated()
            group, elem, length = TAG_LENGTH[little].unpack_from(self.data, self.pos)
            self.pos += 8
            tag = group << 16 | elem
            if tag == SEQUENCE_END:
                return
            if tag != ITEM:
                raise InvalidDicom(f"Malformed: expected a sequence item, found tag {tag:08X}.")
            if items:
                self.count += 1
                if self.count > self.limit:
                    raise TooManyElements(self.limit)
            elif offset_table:
                offset_table = False
            else:
                self.fragments += 1
                if self.fragments > self.fragment_limit:
                    raise TooManyFragments(self.fragment_limit)
            if length == UNDEFINED_LENGTH:
                self.walk(implicit=implicit, little=little, depth=depth, nested=True)
            elif self.pos + length > self.size:
                raise InvalidDicom("Truncated: the file ends inside a sequence item.")
            else:
                self.pos += length
                if items:
                    self.unseen += length


class _Unparsed(Exception):
    """Bytes the count cannot read as elements, from ``pos``."""

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Counter:
    """The elements and sequence items of a data set, at any depth, counted exactly where
    its bytes can be read, entering every sequence of defined length and every value that
    pydicom may read as one (UN, an implicit VR value the dictionary calls SQ or does not
    know) when it starts with an item. Where the bytes cannot be read as elements, the rest
    of the enclosing value or item counts as many as it could hold (bytes // 8), so that
    the count is never below what pydicom could parse there. TooManyElements once it
    passes ``limit``: never more than ``limit`` elements are looked at; TooManyFragments
    once the fragments of encapsulated pixel data it steps over pass ``fragment_limit``
    (those inside a sequence of defined length, which the walk stepped over unseen)."""

    def __init__(
        self,
        data: bytes | mmap.mmap,
        size: int,
        *,
        limit: int,
        counted: int,
        fragment_limit: int = UNLIMITED,
    ) -> None:
        self.data = data
        self.size = size
        self.limit = limit
        self.count = counted
        self.fragment_limit = fragment_limit
        self.fragments = 0

    def _add(self, number: int) -> None:
        self.count += number
        if self.count > self.limit:
            raise TooManyElements(self.limit)

    def _bound(self, pos: int, end: int) -> int:
        """The bytes from ``pos`` to ``end`` counted as the most elements they hold."""
        self._add(max(0, end - pos) // _SMALLEST)
        return end

    def dataset(
        self, pos: int, end: int | None, *, implicit: bool, little: bool, depth: int
    ) -> int:
        """The elements from ``pos`` to ``end``; with no ``end``, to the item delimiter (or
        to the file's end at depth 0). Returns the offset after them."""
        try:
            return self._elements(pos, end, implicit=implicit, little=little, depth=depth)
        except _Unparsed as unparsed:
            if end is not None:
                return self._bound(unparsed.pos, end)
            if depth == 0:
                return self._bound(unparsed.pos, self.size)
            raise  # the item's end is unknown: the enclosing value's decides

    def _elements(
        self, pos: int, end: int | None, *, implicit: bool, little: bool, depth: int
    ) -> int:
        data = self.data
        stop = self.size if end is None else end
        while pos < stop:
            if pos + 8 > stop:
                raise _Unparsed(pos)
            group, elem = _TAG[little].unpack_from(data, pos)
            tag = group << 16 | elem
            if group == 0xFFFE:
                if tag != ITEM_END:
                    raise _Unparsed(pos)
                if end is None and depth > 0:
                    return pos + 8
                return stop  # a delimiter in an item of defined length: pydicom stops there
            self._add(1)
            vr = None
            if implicit:
                (length,) = LONG_LENGTH[little].unpack_from(data, pos + 4)
                start = pos + 8
            else:
                vr = data[pos + 4 : pos + 6]
                if not (vr.isalpha() and vr.isupper()):
                    raise _Unparsed(pos)
                if vr in _LONG_VRS:
                    if pos + 12 > stop:
                        raise _Unparsed(pos)
                    (length,) = LONG_LENGTH[little].unpack_from(data, pos + 8)
                    start = pos + 12
                else:
                    (length,) = SHORT_LENGTH[little].unpack_from(data, pos + 6)
                    start = pos + 8
            inner_implicit, inner_little = implicit or vr == b"UN", little or vr == b"UN"
            if length == UNDEFINED_LENGTH:
                pos = self._sequence(
                    start,
                    None,
                    implicit=inner_implicit,
                    little=inner_little,
                    depth=depth + 1,
                    items=tag not in _PIXEL_TAGS,
                )
                continue
            pos = start + length
            if pos > stop:
                raise _Unparsed(start)
            if (
                length >= _SMALLEST
                and tag not in _PIXEL_TAGS
                and (vr in _NESTING_VRS or (vr is None and dictionary_vr_of(tag) in (None, "SQ")))
                and data[start : start + 4] == _ITEM_BYTES[inner_little]
            ):
                self._sequence(
                    start,
                    pos,
                    implicit=inner_implicit,
                    little=inner_little,
                    depth=depth + 1,
                    items=True,
                )
        if end is None and depth > 0:
            raise _Unparsed(pos)  # the file ends inside the item
        return pos

    def _sequence(
        self, pos: int, end: int | None, *, implicit: bool, little: bool, depth: int, items: bool
    ) -> int:
        """The items from ``pos`` to ``end`` (or to the sequence delimiter); the fragments of
        encapsulated pixel data (``items`` false) are stepped over, not counted."""
        try:
            return self._items(pos, end, implicit=implicit, little=little, depth=depth, items=items)
        except _Unparsed as unparsed:
            if end is None:
                raise
            return self._bound(unparsed.pos, end)

    def _items(
        self, pos: int, end: int | None, *, implicit: bool, little: bool, depth: int, items: bool
    ) -> int:
        if depth > MAX_SEQUENCE_DEPTH:
            raise _Unparsed(pos)
        stop = self.size if end is None else end
        offset_table = not items  # the first item of encapsulated pixel data
        while end is None or pos < end:
            if pos + 8 > stop:
                raise _Unparsed(pos)
            group, elem, length = TAG_LENGTH[little].unpack_from(self.data, pos)
            tag = group << 16 | elem
            if tag == SEQUENCE_END:
                return pos + 8 if end is None else end
            if tag != ITEM:
                raise _Unparsed(pos)
            pos += 8
            if items:
                self._add(1)
            elif offset_table:
                offset_table = False
            else:
                self.fragments += 1
                if self.fragments > self.fragment_limit:
                    raise TooManyFragments(self.fragment_limit)
            if length == UNDEFINED_LENGTH:
                if not items:
                    raise _Unparsed(pos)  # a fragment has a defined length
                pos = self.dataset(pos, None, implicit=implicit, little=little, depth=depth)
                continue
            if pos + length > stop:
                raise _Unparsed(pos)
            if items:
                self.dataset(pos, pos + length, implicit=implicit, little=little, depth=depth)
            pos += length
        return pos


class Walked(NamedTuple):
    """What a walk before pydicom's parsing found: the Pixel Data's (offset, length)."""

    pixel: tuple[int, int] | None


def check_structure(
    path: Path, *, syntax: UID, limit: int = UNLIMITED, fragment_limit: int = UNLIMITED
) -> tuple[int, int] | None:
    """Walk every element's length against the file size: a truncated file is refused; and
    count its elements: TooManyElements past ``limit``, and its pixel data fragments:
    TooManyFragments past ``fragment_limit``.

    Returns the Pixel Data value's (offset, length) when there is one.
    """
    with _mapped(path) as (data, size):
        return _walk(data, size, syntax=syntax, limit=limit, fragment_limit=fragment_limit)


def check_before_parsing(
    path: Path, *, limit: int, max_inflated: int, scratch: Path, fragment_limit: int = UNLIMITED
) -> Walked | None:
    """What read_header checks of a file read_plain leaves to pydicom, before pydicom parses
    its data set (which costs more per element than anything else, and is what a crafted
    file of many elements makes costly): a known transfer syntax, the structure (every
    length within the file), the element count (TooManyElements past ``limit``) and the
    pixel data fragments' (TooManyFragments past ``fragment_limit``). A
    deflated data set is inflated into a file in ``scratch`` first, refused when it
    inflates beyond ``max_inflated`` bytes.

    None when pydicom refuses the file before its data set anyway (no DICM prefix, file
    meta it cannot read, a deflate stream it cannot inflate): pydicom's message then.
    """
    try:
        meta = read_file_meta_info(path)  # pydicom's own reading of it, as dcmread's
        meta.get("TransferSyntaxUID")  # converted as dcmread converts it, which may fail
    except Exception:
        return None
    syntax = transfer_syntax(meta)
    with _mapped(path) as (data, size):
        if syntax != DeflatedExplicitVRLittleEndian:
            return Walked(
                _walk(data, size, syntax=syntax, limit=limit, fragment_limit=fragment_limit)
            )
        walker = Walker(data, size, limit=limit, fragment_limit=fragment_limit)
        walker.pos = _DATA_START
        walker.walk_meta()
        with tempfile.TemporaryFile(dir=scratch, suffix=".inflated") as out:
            inflated = _inflate(data, walker.pos, size, out, max_inflated=max_inflated)
            if inflated is None:
                return None
            if inflated:
                _walk_inflated(
                    out, inflated, limit=limit, counted=walker.count, fragment_limit=fragment_limit
                )
    return Walked(None)


INFLATE_CHUNK = 1024 * 1024


def _inflate(
    data: bytes | mmap.mmap, start: int, size: int, out: BinaryIO, *, max_inflated: int
) -> int | None:
    """Inflate the deflated data set (PS3.5 A.5) into ``out``, a chunk at a time; its size,
    or None when the stream is corrupt or cut short (pydicom's inflating fails too)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        for offset in range(start, size, INFLATE_CHUNK):
            pending = data[offset : offset + INFLATE_CHUNK]
            while pending and not inflater.eof:
                chunk = inflater.decompress(pending, INFLATE_CHUNK)
                total += len(chunk)
                if total > max_inflated:
                    raise InvalidDicom(
                        f"The deflated data set inflates to more than {max_inflated} bytes."
                    )
                out.write(chunk)
                pending = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error:
        return None
    if not inflater.eof:
        return None
    out.flush()
    return total


def _walk_inflated(
    out: BinaryIO, size: int, *, limit: int, counted: int, fragment_limit: int = UNLIMITED
) -> None:
    with mmap.mmap(out.fileno(), 0, access=mmap.ACCESS_READ) as data:
        walker = Walker(data, size, limit=limit, fragment_limit=fragment_limit)
        walker.count = walker.meta_count = counted
        try:
            walker.walk(implicit=False, little=True, depth=0)
        except OverLimit:
            raise
        except InvalidDicom as exc:
            raise InvalidDicom(f"In the inflated data set: {exc}") from exc
        walker.check_count(0, implicit=False, little=True)


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[tuple[bytes | mmap.mmap, int]]:
    """The file's bytes and size. Mapped, not read: a walk touches only the pages that hold
    element headers, never those of the pixel data it skips (a file too short to hold a
    dataset is read: an empty one cannot be mapped)."""
    with path.open("rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        if size <= _DATA_START:
            yield fp.read(), size
            return
        with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data, size


def _walk(
    data: bytes | mmap.mmap,
    size: int,
    *,
    syntax: UID,
    limit: int = UNLIMITED,
    fragment_limit: int = UNLIMITED,
) -> tuple[int, int] | None:
    walker = Walker(data, size, limit=limit, fragment_limit=fragment_limit)
    walker.pos = _DATA_START
    walker.walk_meta()
    if syntax == DeflatedExplicitVRLittleEndian:
        return None  # a zlib stream: check_before_parsing walks it inflated
    start = walker.pos
    implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    walker.walk(implicit=implicit, little=little, depth=0)
    walker.check_count(start, implicit=implicit, little=little)
    return walker.pixel


def read_plain(
    path: Path, *, limit: int = UNLIMITED, fragment_limit: int = UNLIMITED
) -> tuple[Dataset, UID, tuple[int, int] | None] | None:
    """The header as ``dcmread(path, stop_before_pixels=True)`` reads it, its transfer
    syntax and its Pixel Data's (offset, length), from one walk of the file; None when the
    file is anything but plain (malformed, deflated, a guessed encoding...): pydicom and
    the structure check then read it, and refuse it as they always have.

    pydicom's reader costs a Python call, a read and a tell per element, and parses every
    sequence of undefined length into datasets: read_header took 1.21 and 1.18 ms per
    pydicom test file with it, 0.86 and 0.79 ms with this (bench/README.md).

    TooManyElements as soon as the walk counts more than ``limit`` elements, TooManyFragments
    more than ``fragment_limit`` pixel data fragments (the walk of any other reading would
    count them too): they are never made into a dataset.
    """
    try:
        with _mapped(path) as (data, size):
            if size <= _DATA_START + 8:
                return None
            return _read_plain(data, size, limit=limit, fragment_limit=fragment_limit)
    except OverLimit:
        raise
    except (InvalidDicom, _Unusual):
        return None  # pydicom's reading decides, and names the problem
    except Exception:
        # Safe (pydicom decides), but a surprise worth seeing: a pydicom upgrade, say.
        logger.debug("Quick read of %s declined", path.name, exc_info=True)
        return None


def _read_plain(
    data: bytes | mmap.mmap, size: int, *, limit: int, fragment_limit: int
) -> tuple[Dataset, UID, tuple[int, int] | None] | None:
    if data[PREAMBLE_LENGTH:_DATA_START] != b"DICM":
        return None
    walker = Walker(data, size, collect=True, limit=limit, fragment_limit=fragment_limit)
    walker.pos = _DATA_START
    walker.walk_meta()
    meta = _file_meta(walker.meta)
    syntax = _plain_syntax(meta)
    if syntax is None or walker.pos >= size:
        return None
    implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    if implicit and _looks_explicit(data, walker.pos):
        return None  # pydicom would switch to explicit VR (filereader._is_implicit_vr)
    start = walker.pos
    walker.walk(implicit=implicit, little=little, depth=0)
    walker.check_count(start, implicit=implicit, little=little)
    ds = Dataset(walker.elements)
    ds.set_original_encoding(implicit, little, ds._character_set)
    ds.file_meta = meta
    return ds, syntax, walker.pixel


def _file_meta(elements: dict[BaseTag, RawDataElement]) -> FileMetaDataset:
    meta = FileMetaDataset(elements)
    meta.set_original_encoding(False, True, default_encoding)
    if elements:
        meta[next(iter(meta.elements())).tag]  # pydicom's own check of the encoding
    return meta


def transfer_syntax(meta: FileMetaDataset) -> UID:
    """The file's Transfer Syntax UID, if it is a known and valid one."""
    syntax = meta.get("TransferSyntaxUID")
    if not syntax:
        raise InvalidDicom("The file meta information has no Transfer Syntax UID (0002,0010).")
    syntax = UID(str(syntax))
    if not syntax.is_valid or not syntax.is_transfer_syntax:
        raise InvalidDicom(f"Unknown or invalid Transfer Syntax UID {str(syntax)[:64]!r}.")
    return syntax


def _plain_syntax(meta: FileMetaDataset) -> UID | None:
    """The transfer syntax when pydicom would read the dataset by it as given: a known,
    valid one, not deflated; None otherwise."""
    try:
        syntax = transfer_syntax(meta)
    except InvalidDicom:
        return None
    if syntax == DeflatedExplicitVRLittleEndian or syntax in PrivateTransferSyntaxes:
        return None
    return syntax


def _looks_explicit(data: bytes | mmap.mmap, pos: int) -> bool:
    code = data[pos + 4 : pos + 6]
    return len(code) == 2 and all(0x40 < byte < 0x5B for byte in code)
