"""DICOM JSON (PS3.18 F.2) of a header, plain elements encoded straight from their bytes."""

import re
import struct
from collections.abc import Callable

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import DS, IS, PersonName, validate_value

# pydicom's element conversion costs about 30 us an element, most of the ingest of a small
# instance. Elements of these VRs whose bytes are printable ASCII (the same text in every
# DICOM character set) are encoded here as pydicom would; every other element (sequences,
# person names, bulk data, other character sets, odd numbers) goes through pydicom.
_SPLIT_STRIP = {"AS", "CS", "DA", "DT", "TM", "UI"}  # split, trailing padding removed
_TEXT = {"LO", "SH", "UC"}  # split, each value's trailing padding removed
_SINGLE = {"LT", "ST", "UT"}  # one value, trailing padding removed
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_PRINTABLE = re.compile(rb"[\x20-\x7e]*\x00?")
_INT = re.compile(r" *[+-]?\d+ *")
_DECIMAL = re.compile(r" *[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *")

Fallback = Callable[[int], dict | None]


def header_json(ds: Dataset, *, fallback: Fallback) -> dict:
    """The DICOM JSON of ``ds``'s top-level elements; ``fallback(tag)`` encodes (or drops,
    returning None) an element this module leaves to pydicom."""
    out = {}
    for elem in ds.elements():
        encoded = _element(elem, fallback=fallback)
        if encoded is not None:
            out[f"{elem.tag:08X}"] = encoded
    return out


def _element(elem: object, *, fallback: Fallback) -> dict | None:
    if isinstance(elem, RawDataElement):
        encoded = _plain(elem)
    elif elem.VR == "SQ" and isinstance(elem.value, Sequence):
        encoded = _sequence(elem.value, fallback=fallback)
    else:
        encoded = None
    return encoded if encoded is not None else fallback(elem.tag)


def _sequence(items: Sequence, *, fallback: Fallback) -> dict | None:
    """A sequence's items; None (pydicom then decides) when one of their elements is not
    plain: an item element pydicom cannot encode fails the whole sequence."""
    values = []
    for item in items:
        encoded = {}
        for elem in item.elements():
            value = _element(elem, fallback=lambda _tag: None)
            if value is None:
                return None
            encoded[f"{elem.tag:08X}"] = value
        values.append(encoded)
    return {"vr": "SQ", "Value": values}


def _plain(elem: RawDataElement) -> dict | None:
    vr = elem.VR or _dictionary_vr(elem.tag)
    value = elem.value
    if vr is None or not isinstance(value, bytes):
        return None
    if vr in _NUMBERS:
        values = _numbers(value, _NUMBERS[vr], little=elem.is_little_endian)
    elif _PRINTABLE.fullmatch(value) is None:
        return None
    else:
        values = _strings(value.decode("ascii"), vr)
    if values is None:
        return None
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _dictionary_vr(tag: int) -> str | None:
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
    elif vr == "IS":
        return _parsed(text, _INT, lambda v: int(IS(v, config.RAISE)))
    elif vr == "DS":
        return _parsed(text, _DECIMAL, lambda v: float(DS(v, False, config.RAISE)))
    else:
        return None
    if values == [""]:
        return []
    try:
        for v in values:
            # What pydicom refuses (an over-long CS, a lowercase code...) is left to it.
            validate_value(vr, v, config.RAISE)
    except ValueError:
        return None
    return values


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


def _parsed(text: str, pattern: re.Pattern, kind: Callable[[str], object]) -> list | None:
    text = text.rstrip("\0 ")
    if not text:
        return []
    values = text.split("\\")
    if not all(pattern.fullmatch(v) for v in values):
        return None
    try:
        return [kind(v) for v in values]
    except (ValueError, OverflowError):
        return None


def pydicom_element_json(ds: Dataset, tag: int, **options: object) -> dict | None:
    """pydicom's DICOM JSON of one element, None when it cannot be encoded (it is dropped,
    as ``Dataset.to_json_dict(suppress_invalid_tags=True)`` drops it)."""
    try:
        with config.strict_reading():
            return ds[tag].to_json_dict(**options)
    except Exception:
        return None
