"""DICOM JSON (PS3.18 F.2) of a header, plain elements encoded straight from their bytes."""

import contextlib
import functools
import re
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import DS, EXPLICIT_VR_LENGTH_32, IS, PersonName, validate_value

# pydicom's element conversion costs about 30 us an element, most of the ingest of a small
# instance. Elements of these VRs whose bytes are printable ASCII (the same text in every
# DICOM character set) are encoded here as pydicom would; every other element (sequences,
# person names, bulk data, other character sets, odd numbers) goes through pydicom.
_SPLIT_STRIP = {"AS", "CS", "DA", "DT", "TM", "UI"}  # split, trailing padding removed
_TEXT = {"LO", "SH", "UC"}  # split, each value's trailing padding removed
_SINGLE = {"LT", "ST", "UT"}  # one value, trailing padding removed
# Binary VRs whose long values pydicom references as bulk data (not UN: pydicom may read an
# UN element of a known tag as its dictionary VR).
_BULK = {"OB", "OD", "OF", "OL", "OV", "OW"}
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_PRINTABLE = re.compile(rb"[\x20-\x7e]*\x00?")
# LT, ST and UT may also hold TAB, LF, FF and CR (PS3.5 6.2), the same bytes in every
# character set, where pydicom decodes each line the same way.
_TEXT_PRINTABLE = re.compile(rb"[\t\n\f\r\x20-\x7e]*\x00?")
_INT = re.compile(r" *[+-]?\d+ *")
_DECIMAL = re.compile(r" *[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *")

# encode(dataset, tag): pydicom's DICOM JSON of one element, None when it cannot encode it.
Encode = Callable[[Dataset, int], dict | None]
# bulk(vr, offset, length): the DICOM JSON referencing a bulk data value by where its bytes
# lie in the file read (absolute offset and length).
Bulk = Callable[[str, int, int], dict]


def header_json(
    ds: Dataset,
    *,
    encode: Encode,
    bulk_data_threshold: int | None = None,
    bulk: Bulk | None = None,
) -> dict:
    """The DICOM JSON of ``ds``'s top-level elements; ``encode`` encodes an element this
    module leaves to pydicom (dropped when it returns None). With ``bulk_data_threshold``,
    the binary elements pydicom would reference by BulkDataURI (to_json_dict with that
    threshold) are left out, at any depth; or, with ``bulk``, referenced by what it gives
    for their place in the file (``ds`` read from a file, its raw elements' value_tell
    absolute: neither deflated nor read from a buffer)."""
    # pydicom's own rounding of the threshold to bytes of base64 (DataElement.to_json_dict).
    limit = None if bulk_data_threshold is None else bulk_data_threshold // 4 * 3
    return _dataset(ds, _Context(encode=encode, limit=limit, bulk=bulk), base=0, depth=0)


@dataclass(frozen=True)
class _Context:
    encode: Encode
    limit: int | None
    bulk: Bulk | None


def _dataset(ds: Dataset, ctx: _Context, *, base: int, depth: int) -> dict:
    """A dataset's elements, top-level or an item's. An element that neither this module
    nor pydicom can encode is dropped where it lies, in an item as at the top level
    (``to_json_dict(suppress_invalid_tags=True)`` drops the whole top-level sequence around
    it, as it encodes items without that option: a viewer would lose a whole Referenced
    Series Sequence or functional group for one malformed DS deep inside). ``base``: the
    file offset that its raw elements' value_tell counts from (pydicom reads a sequence
    parsed on demand from a buffer of its value alone)."""
    out = {}
    for elem in _elements(ds):
        if _is_bulk(elem, ctx.limit):
            if ctx.bulk is not None:
                where = base + elem.value_tell
                out[f"{elem.tag:08X}"] = ctx.bulk(_bulk_vr(elem), where, len(elem.value))
            continue
        encoded = _element(elem, data=ds, ctx=ctx, base=base, depth=depth)
        if encoded is not None:
            out[f"{elem.tag:08X}"] = encoded
    return out


def _elements(ds: Dataset) -> list:
    """``ds.elements()``, in tag order, without its look-up of each element again
    (read_header 0.802 against 0.770 ms per pydicom test file, bench/README.md): nothing
    here is read with a deferred value for it to load."""
    found = ds._dict
    return [found[tag] for tag in sorted(found)]


def _is_bulk(elem: object, limit: int | None) -> bool:
    """A raw binary element longer than ``limit`` bytes: its base64 would exceed pydicom's
    bulk data threshold. Left out before pydicom converts it, and before a clean-up pass
    over the whole header (read_header) has to remove its reference (a waveform's samples
    made that pass most of an ECG's encoding)."""
    return (
        limit is not None
        and isinstance(elem, RawDataElement)
        and isinstance(elem.value, bytes)
        and len(elem.value) > limit
        and _bulk_vr(elem) in _BULK
    )


def _bulk_vr(elem: RawDataElement) -> str | None:
    """The element's VR; in implicit VR, OW for the "OB or OW" elements (Pixel, Overlay and
    Waveform Data: PS3.5 A.1, 8.3), whose ambiguity otherwise left them to pydicom."""
    return elem.VR or _implicit_binary_vr(elem.tag)


@functools.lru_cache(maxsize=4096)
def _implicit_binary_vr(tag: int) -> str | None:
    if tag >> 16 & 1:
        return None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return "OW" if vr == "OB or OW" else None if " or " in vr else vr


def _element(elem: object, *, data: Dataset, ctx: _Context, base: int, depth: int) -> dict | None:
    raw = elem
    if isinstance(elem, RawDataElement) and _vr(elem) == "SQ":
        # The sequence's value starts here in the file; pydicom parses it from a buffer.
        inner = base + elem.value_tell
        encoded = _sequence_from_bytes(
            elem, limit=ctx.limit, depth=depth + 1, bulk=ctx.bulk, base=inner
        )
        if encoded is not None:
            return encoded
        # Its items are parsed (their elements stay raw) and encoded here, not by pydicom,
        # whose conversion of every nested element cost most of a sequence's encoding.
        converted = _converted_sequence(data, elem.tag)
        if converted is not None:
            elem, base = converted, inner
    if isinstance(elem, RawDataElement):
        encoded = _plain(elem)
    elif elem.VR == "SQ" and isinstance(elem.value, Sequence):
        # A sequence pydicom parsed while reading (undefined length) counts from ``base``.
        encoded = _sequence(elem.value, ctx=ctx, base=base, depth=depth + 1)
    else:
        encoded = _converted(elem.VR, elem.value)
    if encoded is None:
        encoded = ctx.encode(data, elem.tag)
    if encoded is None and isinstance(raw, RawDataElement) and _vr(raw) != "SQ":
        # An UN (or implicit VR) element pydicom reads as a sequence, which it could not
        # encode whole: its items without what is invalid in them, as any sequence's.
        encoded = _items_of(data, raw, ctx=ctx, base=base + raw.value_tell, depth=depth + 1)
    return encoded


def _items_of(
    data: Dataset, elem: RawDataElement, *, ctx: _Context, base: int, depth: int
) -> dict | None:
    """The element as a sequence when pydicom reads it as one (_sequence), else None."""
    converted = _converted_sequence(data, elem.tag)
    if converted is None or converted.VR != "SQ" or not isinstance(converted.value, Sequence):
        return None
    return _sequence(converted.value, ctx=ctx, base=base, depth=depth)


def _vr(elem: RawDataElement) -> str | None:
    return elem.VR or dictionary_vr_of(elem.tag)


def _converted_sequence(data: Dataset, tag: int) -> object | None:
    """The raw sequence ``tag`` of ``data`` parsed as pydicom's to_json_dict parses it
    (strictly), or None when it cannot be (pydicom then decides)."""
    try:
        with _strict_reading():
            return data[tag]
    except Exception:
        return None


# pydicom's reading mode is one setting for the whole process: two threads toggling it at
# once could leave it strict for good (each restoring what the other set). Toggled under a
# lock, every strict section restores the mode it found.
_STRICT_MODE = threading.Lock()


@contextlib.contextmanager
def _strict_reading() -> Iterator[None]:
    with _STRICT_MODE, config.strict_reading():
        yield


# Deeper nesting than this is refused (read_header: "nested too deeply"); real headers nest
# a few levels, a crafted one hundreds.
MAX_SEQUENCE_DEPTH = 32


def _sequence(items: Sequence, *, ctx: _Context, base: int, depth: int) -> dict:
    """A sequence's items, each without the elements that cannot be encoded (_dataset)."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise RecursionError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH}")
    return {"vr": "SQ", "Value": [_dataset(item, ctx, base=base, depth=depth) for item in items]}


def _sequence_from_bytes(
    elem: RawDataElement,
    *,
    limit: int | None,
    depth: int,
    bulk: Bulk | None = None,
    base: int = 0,
) -> dict | None:
    """A raw sequence encoded straight from its bytes, without pydicom building a Dataset per
    item (most of the encoding of a structured report or of an enhanced image's per-frame
    sequences); None when anything in it is left to pydicom (then parsed by pydicom).
    ``base``: the file offset of its value's first byte."""
    if not isinstance(elem.value, bytes):
        return None
    reader = _ItemReader(
        elem.value, implicit=elem.is_implicit_VR, little=elem.is_little_endian, base=base
    )
    reader.bulk = bulk
    try:
        items, _ = reader.items(0, len(elem.value), limit=limit, depth=depth)
    except _LeftToPydicom:
        return None
    return {"vr": "SQ", "Value": items}


class _LeftToPydicom(Exception):
    """Something in a raw sequence this module does not encode itself."""


# The encoding's markers (PS3.5 7.5), read here and by studies.part10's walk.
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
_CHARACTER_SET = 0x00080005
# By byte order (little endian or not), here and in studies.part10: a tag and a 32-bit
# length; a 16-bit and a 32-bit length.
TAG_LENGTH = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}
SHORT_LENGTH = {True: struct.Struct("<H"), False: struct.Struct(">H")}
LONG_LENGTH = {True: struct.Struct("<L"), False: struct.Struct(">L")}


class _ItemReader:
    """Items of a sequence's value (PS3.5 7.5), each element encoded by ``_plain``, nested
    sequences read the same way. Anything else (an undefined length that is not a sequence,
    a VR from the dictionary that is ambiguous or unknown, a length past the end, a stray
    delimiter) is left to pydicom, which reads it as it always has."""

    def __init__(self, data: bytes, *, implicit: bool, little: bool, base: int = 0) -> None:
        self.data = data
        self.base = base  # the file offset of data[0], for bulk data references
        self.bulk: Bulk | None = None
        self.implicit = implicit
        self.little = little
        self.tag_length = TAG_LENGTH[little]
        self.short_length = SHORT_LENGTH[little]
        self.long_length = LONG_LENGTH[little]

    def items(self, pos: int, end: int | None, *, limit: int | None, depth: int) -> tuple:
        """The items from ``pos`` to ``end``, or to the sequence delimiter when ``end`` is
        None; and the offset after them."""
        if depth > MAX_SEQUENCE_DEPTH:
            raise RecursionError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH}")
        items = []
        while end is None or pos < end:
            tag, length, pos = self._header(pos)
            if tag == SEQUENCE_END and end is None and not length:
                return items, pos
            if tag != ITEM:
                raise _LeftToPydicom
            item_end = None if length == UNDEFINED_LENGTH else self._within(pos, length)
            item, pos = self._item(pos, item_end, limit=limit, depth=depth)
            items.append(item)
        if pos != end:
            raise _LeftToPydicom
        return items, pos

    def _item(self, pos: int, end: int | None, *, limit: int | None, depth: int) -> tuple:
        encoded = {}
        while end is None or pos < end:
            tag, vr, length, pos = self._element_header(pos)
            if tag == ITEM_END and end is None:
                return encoded, pos
            key = f"{tag:08X}"
            if tag == _CHARACTER_SET or key in encoded:
                # An item's own character set (pydicom refuses one it cannot use, and the
                # sequence with it), or a tag twice (pydicom keeps the last): pydicom's call.
                raise _LeftToPydicom
            if vr == "SQ":
                value_end = None if length == UNDEFINED_LENGTH else self._within(pos, length)
                items, pos = self.items(pos, value_end, limit=limit, depth=depth + 1)
                encoded[key] = {"vr": "SQ", "Value": items}
                continue
            if length == UNDEFINED_LENGTH:
                raise _LeftToPydicom  # encapsulated data, or UN holding a sequence
            value_end = self._within(pos, length)
            raw = RawDataElement(
                tag, vr, length, self.data[pos:value_end], pos, self.implicit, self.little, True
            )
            if _is_bulk(raw, limit):
                if self.bulk is not None:
                    encoded[key] = self.bulk(vr, self.base + pos, length)
                pos = value_end
                continue
            pos = value_end
            value = _plain(raw)
            if value is None:
                raise _LeftToPydicom
            encoded[key] = value
        if pos != end:
            raise _LeftToPydicom
        return encoded, pos

    def _header(self, pos: int) -> tuple[int, int, int]:
        """An item or delimiter tag and its 32-bit length."""
        if pos + 8 > len(self.data):
            raise _LeftToPydicom
        group, element, length = self.tag_length.unpack_from(self.data, pos)
        return group << 16 | element, length, pos + 8

    def _element_header(self, pos: int) -> tuple[int, str | None, int, int]:
        if pos + 8 > len(self.data):
            raise _LeftToPydicom
        group, element, length = self.tag_length.unpack_from(self.data, pos)
        tag = group << 16 | element
        if group == 0xFFFE:
            if tag != ITEM_END or length:
                raise _LeftToPydicom  # pydicom reads a delimiter's length as a VR and more
            return tag, None, length, pos + 8
        if self.implicit:
            vr = dictionary_vr_of(tag)
            if vr is None:
                raise _LeftToPydicom
            return tag, vr, length, pos + 8
        code = self.data[pos + 4 : pos + 6]
        if not (code.isalpha() and code.isupper()):
            raise _LeftToPydicom  # implicit VR inside an explicit dataset: pydicom copes
        vr = code.decode("ascii")
        if vr in EXPLICIT_VR_LENGTH_32:
            if pos + 12 > len(self.data):
                raise _LeftToPydicom
            (length,) = self.long_length.unpack_from(self.data, pos + 8)
            return tag, vr, length, pos + 12
        (length,) = self.short_length.unpack_from(self.data, pos + 6)
        return tag, vr, length, pos + 8

    def _within(self, pos: int, length: int) -> int:
        if pos + length > len(self.data):
            raise _LeftToPydicom
        return pos + length


def raw_values(elem: RawDataElement) -> list | None:
    """The values pydicom would convert a raw element to (as in its DICOM JSON), decoded
    here without converting it; None when this module leaves the element to pydicom."""
    encoded = _plain(elem)
    return None if encoded is None else encoded.get("Value", [])


def _plain(elem: RawDataElement) -> dict | None:
    vr = _vr(elem)
    value = elem.value
    if vr is None or not isinstance(value, bytes):
        return None
    if vr == "SS" and elem.tag in _LUT_DESCRIPTORS:
        return None  # pydicom corrects a negative first value (PS3.3 C.11.1.1)
    if vr in _NUMBERS:
        values = _numbers(value, _NUMBERS[vr], little=elem.is_little_endian)
    elif vr == "AT":
        values = _tags(value, little=elem.is_little_endian)
    elif (_TEXT_PRINTABLE if vr in _SINGLE else _PRINTABLE).fullmatch(value) is None:
        return None
    else:
        values = _strings(value.decode("ascii"), vr)
    if values is None:
        return None
    return {"vr": vr, "Value": values} if values else {"vr": vr}


# LUT Descriptor, Red/Green/Blue Palette Color LUT Descriptor... whose first value pydicom
# reads as unsigned even when the VR says SS.
_LUT_DESCRIPTORS = {0x00281101, 0x00281102, 0x00281103, 0x00283002}
_CONVERTED = _SPLIT_STRIP | _TEXT | _SINGLE | {"AE", "IS", "DS"} | set(_NUMBERS)


def _converted(vr: str, value: object) -> dict | None:
    """An element pydicom has converted already (read_header asked for it): its values as
    its to_json_dict gives them, or None to leave it to it."""
    if vr not in _CONVERTED or value is None or value == "":
        return {"vr": vr} if vr in _CONVERTED else None
    values = list(value) if isinstance(value, MultiValue) else [value]
    if vr in ("IS", "DS"):
        kind = int if vr == "IS" else float
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        return {"vr": vr, "Value": [kind(v) for v in values]}
    plain = int | float if vr in _NUMBERS else str
    if not all(isinstance(v, plain) for v in values):
        return None
    if vr in ("FL", "FD"):
        values = [float(v) for v in values]
    return {"vr": vr, "Value": [v if vr in _NUMBERS else str(v) for v in values]}


@functools.lru_cache(maxsize=4096)
def dictionary_vr_of(tag: int) -> str | None:
    """The VR the dictionary gives a tag, None when it gives none or several."""
    if tag >> 16 & 1:
        return None  # private: its VR is not in the dictionary
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if " or " in vr else vr


def _numbers(value: bytes, code: str, *, little: bool) -> list | None:
    size = struct.calcsize(f"<{code}")
    if len(value) % size:
        return None
    return list(struct.unpack(f"{'<' if little else '>'}{len(value) // size}{code}", value))


def _tags(value: bytes, *, little: bool) -> list | None:
    """AT values, each a group and an element number, as pydicom writes them (ggggeeee)."""
    numbers = _numbers(value, "H", little=little)
    if numbers is None or len(numbers) % 2:
        return None
    pairs = zip(numbers[::2], numbers[1::2], strict=True)
    return [f"{group:04X}{element:04X}" for group, element in pairs]


def _strings(text: str, vr: str) -> list | None:
    """The values of a string element as pydicom decodes them, or None to leave it to it."""
    if vr in _SPLIT_STRIP:
        if vr == "UI":
            text = text.rstrip("\0 ")
        values = text.rstrip(" \0").split("\\")
    elif vr in _TEXT:
        values = [v.rstrip("\0 ") for v in text.split("\\")]
    elif vr in _SINGLE:
        values = [text.rstrip("\0 ")]
    elif vr == "PN":
        return _names(text)
    elif vr == "AE":
        values = [v.strip() for v in text.split("\\")]
    elif vr in ("IS", "DS"):
        return _parsed(text, vr)
    else:
        return None
    if values == [""]:
        return []
    # What pydicom refuses (an over-long CS, a lowercase code...) is left to it.
    return values if all(_valid(vr, v) for v in values) else None


# Values repeat from header to header (codes, dates, a study's UIDs, pixel spacings):
# pydicom's validation and number parsing of each, a sixth of the encoding, are remembered;
# only short ones, so that the caches stay small whatever texts the senders send.
CACHED_VALUE_LENGTH = 64


def _valid(vr: str, value: str) -> bool:
    if len(value) > CACHED_VALUE_LENGTH:
        return _validated(vr, value)
    return _validated_cached(vr, value)


def _validated(vr: str, value: str) -> bool:
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError:
        return False
    return True


_validated_cached = functools.lru_cache(maxsize=16384)(_validated)


def _number(vr: str, value: str) -> int | float | None:
    """An IS or DS value as pydicom reads it strictly, None when it refuses it."""
    if len(value) > CACHED_VALUE_LENGTH:
        return _parsed_number(vr, value)
    return _parsed_number_cached(vr, value)


def _parsed_number(vr: str, value: str) -> int | float | None:
    try:
        return int(IS(value, config.RAISE)) if vr == "IS" else float(DS(value, False, config.RAISE))
    except (ValueError, OverflowError):
        return None


_parsed_number_cached = functools.lru_cache(maxsize=16384)(_parsed_number)


def _names(text: str) -> list | None:
    text = text.rstrip("\0 ")
    if not text:
        return []
    values = []
    try:
        for value in text.split("\\"):
            components = PersonName(value, validation_mode=config.RAISE).components
            values.append(
                dict(zip(("Alphabetic", "Ideographic", "Phonetic"), components, strict=False))
            )
    except ValueError:
        return None
    return values


def _parsed(text: str, vr: str) -> list | None:
    text = text.rstrip("\0 ")
    if not text:
        return []
    values = text.split("\\")
    pattern = _INT if vr == "IS" else _DECIMAL
    if not all(pattern.fullmatch(v) for v in values):
        return None
    numbers = [_number(vr, v) for v in values]
    return None if None in numbers else numbers


def pydicom_element_json(ds: Dataset, tag: int, **options: object) -> dict | None:
    """pydicom's DICOM JSON of one element, None when it cannot be encoded (it is dropped,
    as ``Dataset.to_json_dict(suppress_invalid_tags=True)`` drops it)."""
    try:
        with _strict_reading():
            return ds[tag].to_json_dict(**options)
    except RecursionError:
        raise  # a crafted nesting: read_header refuses the file
    except Exception:
        return None
