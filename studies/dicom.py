"""Reading stored or spooled DICOM files: header, validation, structure, DICOM JSON (pydicom)."""

import datetime
import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson
from django.conf import settings
from pydicom import config, dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from anim_gateway.errors import ApplicationError
from studies import bulkdata
from studies.header_json import header_json, pydicom_element_json, raw_values
from studies.part10 import (
    PREAMBLE_LENGTH,
    InvalidDicom,
    check_before_parsing,
    check_structure,
    read_plain,
    transfer_syntax,
)

# A 128-byte preamble is kept only when it is all zeros or starts a TIFF header (PS3.10 7.5);
# anything else could smuggle an executable (the "PE-DICOM" polyglot), so it is zeroed.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")

STUDY_TAGS = {
    "00080005": "SpecificCharacterSet",
    "00080020": "StudyDate",
    "00080030": "StudyTime",
    "00080050": "AccessionNumber",
    "00080090": "ReferringPhysicianName",
    "00081030": "StudyDescription",
    "00100010": "PatientName",
    "00100020": "PatientID",
    "00100021": "IssuerOfPatientID",
    "00100030": "PatientBirthDate",
    "00100040": "PatientSex",
    "0020000D": "StudyInstanceUID",
    "00200010": "StudyID",
}
SERIES_TAGS = {
    "00080021": "SeriesDate",
    "00080031": "SeriesTime",
    "00080060": "Modality",
    "0008103E": "SeriesDescription",
    "00180015": "BodyPartExamined",
    "0020000E": "SeriesInstanceUID",
    "00200011": "SeriesNumber",
}
INSTANCE_TAGS = {
    "00080016": "SOPClassUID",
    "00080018": "SOPInstanceUID",
    "00200013": "InstanceNumber",
    "00280008": "NumberOfFrames",
    "00280010": "Rows",
    "00280011": "Columns",
    "00280100": "BitsAllocated",
}


# pydicom's warnings quote element values, and values may be patient names; its decoder
# tracebacks are noise here: every failure reaches the caller as an InvalidDicom reason.
config.settings.reading_validation_mode = config.IGNORE
logging.getLogger("pydicom").setLevel(logging.CRITICAL)


@dataclass(frozen=True, kw_only=True)
class Header:
    """What ingest needs from one DICOM file, read without its pixel data."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_id: str
    issuer: str
    study_date: datetime.date | None
    study_time: str
    accession_number: str
    study_description: str
    modality: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    number_of_frames: int
    pixel_data_offset: int | None
    pixel_data_length: int | None
    metadata: dict

    def study_attributes(self) -> dict:
        return {tag: v for tag, v in self.metadata.items() if tag in STUDY_TAGS}

    def series_attributes(self) -> dict:
        return {tag: v for tag, v in self.metadata.items() if tag in SERIES_TAGS}


def is_valid_uid(value: str) -> bool:
    """A UID as PS3.5 9.1 defines it (what may become a key, a path or a query value)."""
    return UID(value).is_valid


def preamble_is_safe(preamble: bytes) -> bool:
    return preamble == bytes(PREAMBLE_LENGTH) or preamble.startswith(TIFF_MAGIC)


def read_header(path: Path) -> Header:
    """Parse, validate and describe one Part 10 file, never reading its pixel data.

    Raises
    ------
    InvalidDicom
        With a sentence naming the problem: not DICOM, a missing or invalid UID, truncation.
    studies.part10.TooManyElements
        (an InvalidDicom) More than DICOM_MAX_HEADER_ELEMENTS elements, counted by the walk
        of the file before any of them is parsed.
    studies.part10.TooManyFragments
        (an InvalidDicom) More than DICOM_MAX_PIXEL_FRAGMENTS fragments of encapsulated
        Pixel Data, counted by the same walk.
    """
    limits = _limits()
    plain = read_plain(path, **limits)
    if plain is not None:
        ds, syntax, pixel = plain
        uids = _required_uids(ds)
    else:
        ds, syntax, uids, pixel = _read_with_pydicom(path, limits=limits)
    _check_pixel_length(ds, syntax=syntax, pixel=pixel)
    return Header(
        **uids,
        transfer_syntax_uid=str(syntax),
        patient_id=_text(ds, "PatientID", 64),
        issuer=_text(ds, "IssuerOfPatientID", 64),
        study_date=_date(ds),
        study_time=_text(ds, "StudyTime", 32),
        accession_number=_text(ds, "AccessionNumber", 64),
        study_description=_text(ds, "StudyDescription", 255),
        modality=_text(ds, "Modality", 16),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription", 255),
        instance_number=_int(ds, "InstanceNumber"),
        number_of_frames=_frames(ds, has_pixels=pixel is not None),
        pixel_data_offset=pixel[0] if pixel else None,
        pixel_data_length=pixel[1] if pixel else None,
        metadata=to_json(ds, syntax=syntax, uids=uids, pixel=pixel),
    )


def _limits() -> dict[str, int]:
    """The walk's limits, as read_plain, check_before_parsing and check_structure take them."""
    return {
        "limit": settings.DICOM_MAX_HEADER_ELEMENTS,
        "fragment_limit": settings.DICOM_MAX_PIXEL_FRAGMENTS,
    }


def _read_with_pydicom(
    path: Path, *, limits: dict[str, int]
) -> tuple[Dataset, UID, dict, tuple[int, int] | None]:
    """What read_plain leaves to pydicom: anything unusual, malformed files among them.

    The file's transfer syntax, structure and element count are checked before pydicom
    parses it (a file refused for them was refused after its parsing before, at a cost
    that grew with its elements); a file pydicom refuses before its data set is left to it.
    """
    walked = check_before_parsing(
        path, max_inflated=settings.STOW_MAX_BYTES, scratch=_scratch(), **limits
    )
    try:
        ds = dcmread(path, stop_before_pixels=True, force=False)
    except InvalidDicomError as exc:
        raise InvalidDicom(f"Not a DICOM Part 10 file: {exc}") from exc
    except OSError as exc:
        # The spooled copy could not be read: the server's problem, and its message would
        # show the client a server path.
        raise InvalidDicom(
            f"The instance could not be read back from the spool ({type(exc).__name__})."
        ) from exc
    except Exception as exc:  # pydicom raises many types on malformed input
        raise InvalidDicom(f"Unreadable DICOM header: {type(exc).__name__}: {exc}") from exc
    syntax = transfer_syntax(ds.file_meta)
    uids = _required_uids(ds)
    if walked is None:  # pydicom read what it was expected to refuse: checked as before
        return ds, syntax, uids, check_structure(path, syntax=syntax, **limits)
    return ds, syntax, uids, walked.pixel


def _scratch() -> Path:
    """Where a deflated data set is inflated to be walked: the spool's folder."""
    folder = Path(settings.SPOOL_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _get(ds: Dataset, keyword: str) -> object:
    """``ds.get(keyword)`` for the few values ingest reads, decoded from the raw element when
    it is a single plain value (pydicom's conversion of each cost a tenth of read_header).

    An empty element gives "" (pydicom gives "" or None: callers treat both as absent).
    """
    elem = ds.get_item(_tag(keyword))
    if isinstance(elem, RawDataElement):
        values = raw_values(elem)
        if values is not None and len(values) <= 1:
            return values[0] if values else ""
    return ds.get(keyword)


@functools.cache
def _tag(keyword: str) -> int:
    return tag_for_keyword(keyword)


def _required_uids(ds: Dataset) -> dict:
    found = {}
    for key, keyword in [
        ("study_uid", "StudyInstanceUID"),
        ("series_uid", "SeriesInstanceUID"),
        ("sop_instance_uid", "SOPInstanceUID"),
        ("sop_class_uid", "SOPClassUID"),
    ]:
        try:
            value = _get(ds, keyword)
        except Exception as exc:
            raise InvalidDicom(f"{keyword} is unreadable: {exc}") from exc
        if not value:
            raise InvalidDicom(f"{keyword} is missing.")
        uid = UID(str(value))
        # Validated before a UID becomes a key or a storage path.
        if not uid.is_valid:
            raise InvalidDicom(f"{keyword} {str(value)[:80]!r} is not a valid UID.")
        found[key] = str(uid)
    return found


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    try:
        value = _get(ds, keyword)
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).replace("\x00", "").strip()[:limit]


# An IS value lies within a signed 32-bit integer (PS3.5 6.2); the US ones read here do too.
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _int(ds: Dataset, keyword: str) -> int | None:
    """The element's integer, or None when it is absent or not a valid value (one out of
    range too: the index's integer columns could not hold it)."""
    number = _any_int(ds, keyword)
    return number if number is not None and _INT_MIN <= number <= _INT_MAX else None


def _any_int(ds: Dataset, keyword: str) -> int | None:
    """The element's integer, however large; None when it is absent or not a number."""
    try:
        value = _get(ds, keyword)
        return int(value) if value not in (None, "") else None
    except Exception:
        return None


def _date(ds: Dataset) -> datetime.date | None:
    text = _text(ds, "StudyDate", 16)
    try:
        return datetime.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _frames(ds: Dataset, *, has_pixels: bool) -> int:
    if not has_pixels:
        return 0
    value = _any_int(ds, "NumberOfFrames")
    if value is not None and value > _INT_MAX:
        # Read as one frame, the pixel data's length would no longer be checked against it.
        raise InvalidDicom("Number of Frames (0028,0008) is beyond an IS value's range.")
    return value if value and value > 0 else 1


def _check_pixel_length(ds: Dataset, *, syntax: UID, pixel: tuple[int, int] | None) -> None:
    """Native pixel data shorter than its image dimensions is a truncated file."""
    if pixel is None or syntax.is_encapsulated or syntax == DeflatedExplicitVRLittleEndian:
        return
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    bits, samples = _int(ds, "BitsAllocated"), _int(ds, "SamplesPerPixel") or 1
    if not (rows and columns and bits):
        return
    if _text(ds, "PhotometricInterpretation", 16) == "YBR_FULL_422":
        samples = 2  # chroma is subsampled horizontally (PS3.3 C.7.6.3.1.2)
    frames = _frames(ds, has_pixels=True)
    needed = math.ceil(rows * columns * samples * frames * bits / 8)
    if pixel[1] < needed:
        raise InvalidDicom(
            f"Truncated: Pixel Data holds {pixel[1]} bytes, the image needs {needed}."
        )


def to_json(
    ds: Dataset,
    *,
    syntax: UID | None = None,
    uids: dict | None = None,
    pixel: tuple[int, int] | None = None,
) -> dict:
    """DICOM JSON (PS3.18 F.2) of the header, safe for any JSON column. Bulk data (binary
    values over 1 KiB of base64) is referenced by a marker of where it lies in the file
    (studies.bulkdata) when the file's ``syntax`` and ``uids`` are given and its offsets
    are the stored object's; left out otherwise. ``pixel``: native Pixel Data's place."""
    options = {"bulk_data_threshold": 1024, "bulk_data_element_handler": lambda _elem: ""}
    where = bulkdata.marker_maker(syntax=syntax, uids=uids)
    try:
        # What Dataset.to_json_dict(suppress_invalid_tags=True) gives, at half its cost,
        # but for an invalid value in a sequence item: dropped alone (header_json._dataset).
        raw = header_json(
            ds,
            encode=lambda data, tag: pydicom_element_json(data, tag, **options),
            bulk_data_threshold=options["bulk_data_threshold"],
            bulk=where,
        )
        raw = raw if _is_clean(raw) else _clean(raw)
    except RecursionError as exc:
        # Sequences nested hundreds deep (a crafted file): refused, never a server error.
        raise InvalidDicom("The header's sequences are nested too deeply.") from exc
    except Exception as exc:
        raise InvalidDicom(f"The header cannot be expressed as DICOM JSON: {exc}") from exc
    if where is not None and pixel is not None and not syntax.is_encapsulated:
        raw[bulkdata.PIXEL_DATA] = where(bulkdata.pixel_vr(_int(ds, "BitsAllocated")), *pixel)
    return raw


def _is_clean(raw: dict) -> bool:
    """Whether ``_clean`` would leave ``raw`` as it is, asked of a JSON encoder: most
    headers are clean, and walking them in Python cost a fifth of read_header. orjson
    encodes a header ten times faster than json (bench/README.md)."""
    try:
        text = orjson.dumps(raw, default=float_value)
    except TypeError:  # what orjson refuses (a lone surrogate, say): _clean decides
        return False
    # orjson writes NaN and infinities as null; json is asked only when there is a null.
    if b"null" in text and not _finite(raw):
        return False
    # NULs are escaped as \u0000; a bulk data reference to drop is always spelt so.
    return b"\\u0000" not in text and b'"BulkDataURI":""' not in text


def _finite(raw: dict) -> bool:
    try:
        json.dumps(raw, allow_nan=False)
    except (ValueError, TypeError):
        return False
    return True


def float_value(value: object) -> float:
    """orjson's ``default``: a float subclass (pydicom's DS) as its float; orjson encodes
    subclasses of str, int, list and dict itself, and refuses anything else."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _clean(value: object) -> object:
    """Drop bulk data references, NULs (PostgreSQL refuses them) and non-finite numbers."""
    if isinstance(value, dict):
        return {
            k: _clean(v)
            for k, v in value.items()
            if not (isinstance(v, dict) and v.get("BulkDataURI") == "")
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sanitise_preamble(head: bytes) -> bytes:
    """The first bytes of a file with an unsafe preamble zeroed (PS3.10 7.5)."""
    if len(head) < PREAMBLE_LENGTH + 4 or head[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] != b"DICM":
        return head
    if preamble_is_safe(head[:PREAMBLE_LENGTH]):
        return head
    return bytes(PREAMBLE_LENGTH) + head[PREAMBLE_LENGTH:]


def read_frame(
    fp: BinaryIO,
    *,
    transfer_syntax_uid: str,
    offset: int,
    index: int,
    number_of_frames: int,
    frame_size: int,
) -> bytes:
    """One frame's stored bytes (0-based ``index``), seeking straight to it.

    Native pixel data is sliced; encapsulated data is walked through its offset table.
    """
    syntax = UID(transfer_syntax_uid)
    if not syntax.is_encapsulated:
        fp.seek(offset + index * frame_size)
        data = fp.read(frame_size)
        if len(data) != frame_size:
            raise InvalidDicom("The frame lies beyond the stored Pixel Data.")
        return data
    fp.seek(offset)
    try:
        frame = get_frame(fp, index, number_of_frames=number_of_frames)
    except ApplicationError:
        raise  # already told apart (the storage failing under the read, say)
    except Exception as exc:  # a corrupt offset table or fragments
        reraise_reader_failure(fp)
        raise InvalidDicom(f"The frame cannot be read: {exc}") from exc
    # pydicom stops walking fragments at a read error: what it gathered is not the frame.
    reraise_reader_failure(fp)
    return frame


def reraise_reader_failure(source: object) -> None:
    """Raise the failure a stored object's reader met, if any (storage.Reader keeps its
    first), though pydicom caught it or raised another error in its place."""
    failure = getattr(source, "failure", None)
    if failure is not None:
        raise failure
