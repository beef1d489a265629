"""Bulk data references (PS3.18 F.2.6): the markers kept in stored DICOM JSON, their URLs."""

import re
from collections.abc import Iterator

from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from anim_gateway.errors import ApplicationError
from studies.header_json import Bulk

# A stored header references each bulk data value by this prefix, then the path of its
# bulkdata resource under /dicomweb/ (the instance's UIDs, the value's offset and length in
# the stored object). Served, the prefix becomes the server's absolute /dicomweb/ URL: one
# replacement of a constant per response, the stored text neither decoded nor encoded.
MARKER = "anim-bulkdata:"
PIXEL_DATA = "7FE00010"
# The key and the start of its value as stored: the JSON column's text on PostgreSQL (jsonb)
# and SQLite (json.dumps) has a space after the colon; orjson's has none.
_KEYS = ('"BulkDataURI": "', '"BulkDataURI":"')
# offset-length, decimal; 15 digits cover any stored object's size.
_REFERENCE = re.compile(r"(0|[1-9]\d{0,14})-([1-9]\d{0,14})")


def marker_maker(*, syntax: UID | None, uids: dict | None) -> Bulk | None:
    """What references a bulk data value of this file, or None where the offsets read are
    not the stored object's (deflated: they count in the inflated stream) or its values'
    bytes are not what PS3.18 serves (big endian: bulk data is served little endian)."""
    if syntax is None or uids is None:
        return None
    if syntax == DeflatedExplicitVRLittleEndian or not syntax.is_little_endian:
        return None
    path = instance_path(
        study_uid=uids["study_uid"], series_uid=uids["series_uid"], sop_uid=uids["sop_instance_uid"]
    )

    def marker(vr: str, offset: int, length: int) -> dict:
        return {"vr": vr, "BulkDataURI": f"{MARKER}{path}/bulkdata/{offset}-{length}"}

    return marker


def instance_path(*, study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"


def parse_reference(reference: str) -> tuple[int, int]:
    """'1234-5678' -> (offset, length); 400 naming the parameter when malformed."""
    found = _REFERENCE.fullmatch(reference) if reference.isascii() else None
    if found is None:
        raise ApplicationError("reference: a bulk data reference of this server (offset-length).")
    return int(found[1]), int(found[2])


def is_referenced(metadata: dict, *, instance: str, reference: str) -> bool:
    """Whether the stored header of the instance at path ``instance`` references this bulk
    data value (only those are served, never an arbitrary range of the object)."""
    wanted = f"{MARKER}{instance}/bulkdata/{reference}"
    return any(uri == wanted for uri in references(metadata))


def references(value: object) -> Iterator[str]:
    """Every BulkDataURI in a DICOM JSON header, at any depth."""
    if isinstance(value, dict):
        uri = value.get("BulkDataURI")
        if isinstance(uri, str):
            yield uri
        for item in value.values():
            if isinstance(item, dict | list):
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def absolute(text: str, *, root: str) -> str:
    """Stored DICOM JSON text with its markers turned into URLs under ``root`` (the
    server's absolute /dicomweb/ URL)."""
    if MARKER not in text:
        return text
    for key in _KEYS:
        text = text.replace(key + MARKER, key + root)
    return text


def pixel_vr(bits_allocated: int | None) -> str:
    """Native Pixel Data's VR as PS3.5 A.1 gives it: OB for 8 bits or fewer, else OW."""
    return "OW" if bits_allocated and bits_allocated > 8 else "OB"
