"""QIDO-RS query parameters (PS3.18 8.3.4) parsed into filters on the study index."""

import datetime
import re
from dataclasses import dataclass, field

from django.db.models import CharField, Lookup, Q, QuerySet
from django.http import QueryDict
from pydicom.datadict import keyword_dict

from anim_gateway.errors import ApplicationError
from studies.dicom import is_valid_uid

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Matching keys, by keyword or by tag as PS3.18 allows both.
_KEYS = {
    "PatientID": "00100020",
    "StudyDate": "00080020",
    "ModalitiesInStudy": "00080061",
    "AccessionNumber": "00080050",
    "StudyInstanceUID": "0020000D",
    "Modality": "00080060",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
}


# The keys each level of search matches on; any other attribute is refused.
LEVEL_KEYS = {
    "studies": (
        "PatientID",
        "StudyDate",
        "ModalitiesInStudy",
        "Modality",
        "AccessionNumber",
        "StudyInstanceUID",
    ),
    "series": ("Modality", "SeriesInstanceUID"),
    "instances": ("Modality", "SeriesInstanceUID", "SOPInstanceUID"),
}


# PS3.18 8.3.4.2, 8.3.4.5 and 8.3.4.6: each of these parameters, set to true on an origin
# server that does not support it, gets the search performed without it and this warning.
_UNSUPPORTED = {
    "fuzzymatching": "The fuzzymatching parameter is not supported."
    " Only literal matching has been performed.",
    "emptyvaluematching": "The emptyvaluematching parameter is not supported."
    " Empty Value Matching has not been performed.",
    "multiplevaluematching": "The multiplevaluematching parameter is not supported."
    " Multiple Value Matching has not been performed.",
}


@dataclass(frozen=True, kw_only=True)
class Query:
    patient_id: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    modality: str = ""
    accession_number: str = ""
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    includefield: frozenset[str] = field(default_factory=frozenset)
    # The texts of the warnings the response carries (PS3.18 8.3.4).
    warnings: tuple[str, ...] = ()

    def describe(self) -> dict:
        """The query for the audit event: which keys were used, not the values."""
        used = {
            "PatientID": bool(self.patient_id),
            "StudyDate": bool(self.date_from or self.date_to),
            "ModalitiesInStudy": bool(self.modality),
            "AccessionNumber": bool(self.accession_number),
            "StudyInstanceUID": bool(self.study_uids),
        }
        return {"keys": sorted(k for k, v in used.items() if v), "offset": self.offset}


def parse_query(params: QueryDict, level: str = "studies") -> Query:
    """The query of a QIDO-RS search for studies, series or instances (``level``); 400
    INVALID naming the parameter when malformed, or when it asks to match on an attribute
    that level does not match on."""
    params = _tags_in_upper_case(params)
    _refuse_unmatched_keys(params, level)

    def value(keyword: str) -> str:
        text = (params.get(keyword) or params.get(_KEYS[keyword]) or "").strip()
        if "\x00" in text or len(text) > 1024:
            raise ApplicationError(f"{keyword}: not a value DICOM can hold.")
        return text

    date_from, date_to = _date_range(value("StudyDate"))
    return Query(
        patient_id=value("PatientID"),
        date_from=date_from,
        date_to=date_to,
        modality=value("ModalitiesInStudy") or value("Modality"),
        accession_number=value("AccessionNumber"),
        study_uids=_uids(value("StudyInstanceUID"), "StudyInstanceUID"),
        series_uids=_uids(value("SeriesInstanceUID"), "SeriesInstanceUID"),
        sop_uids=_uids(value("SOPInstanceUID"), "SOPInstanceUID"),
        # PS3.18 8.3.4.4.1: at most the server's maximum, however many the limit asks for.
        limit=min(_bounded(params.get("limit"), "limit", DEFAULT_LIMIT, 1, None), MAX_LIMIT),
        offset=_bounded(params.get("offset"), "offset", 0, 0, 10**9),
        includefield=_includefield(params),
        warnings=tuple(
            text
            for name, text in _UNSUPPORTED.items()
            if (params.get(name) or "").strip().lower() == "true"
        ),
    )


def _tags_in_upper_case(params: QueryDict) -> QueryDict:
    """The parameters with each key written as a tag in upper case: PS3.18's attribute-tag is
    8HEXDIG, which ABNF takes in either case ("0020000d" is StudyInstanceUID too)."""
    normalized = QueryDict(mutable=True)
    for key, values in params.lists():
        name = key.upper() if _TAG.fullmatch(key) else key
        normalized.setlist(name, normalized.getlist(name) + values)
    return normalized


def _refuse_unmatched_keys(params: QueryDict, level: str) -> None:
    """A matching key the level does not match on (PatientName, say) is refused, not
    ignored: ignoring it would answer a search for one patient's name with everyone's
    studies. A universal match ('' or '*') asks for nothing and is accepted; parameters that
    name no DICOM attribute (a viewer's cache buster) are left alone."""
    keys = LEVEL_KEYS[level]
    supported = set(keys) | {_KEYS[key] for key in keys}
    for key in params:
        if key in supported or not _names_an_attribute(key):
            continue
        if any(value.strip() not in ("", "*") for value in params.getlist(key)):
            raise ApplicationError(
                f"{key}: matching on this attribute is not supported in a search for "
                f"{level}; it matches on {', '.join(keys)}."
            )


_TAG = re.compile(r"[0-9A-Fa-f]{8}")
# Every keyword of the data dictionary, in lower case.
_KEYWORDS = frozenset(keyword.lower() for keyword in keyword_dict)


def _names_an_attribute(key: str) -> bool:
    """Whether the key is a tag or a keyword, in any case: "patientname" is refused too,
    rather than ignored as a name that is no attribute."""
    return bool(_TAG.fullmatch(key)) or key.lower() in _KEYWORDS


def _includefield(params: QueryDict) -> frozenset[str]:
    """The attributes asked for, or 'all'; an item that names no attribute is refused rather
    than left out without a word (a client would take its absence for an empty value)."""
    items = frozenset(
        item.strip()
        for raw in params.getlist("includefield")
        for item in raw.split(",")
        if item.strip()
    )
    for item in items - {"all"}:
        if not all(_is_attribute(step) for step in item.split(".")):
            raise ApplicationError(
                f"includefield: {item[:64]!r} is no attribute keyword, tag or 'all'."
            )
    return items


def _is_attribute(step: str) -> bool:
    """A tag or a keyword (in its own case); dotted, they are a path into sequences."""
    # (The data dictionary keys its keyword-less entries by "".)
    return bool(re.fullmatch(r"[0-9A-Fa-f]{8}", step)) or (step != "" and step in keyword_dict)


def _uids(raw: str, name: str) -> tuple[str, ...]:
    uids = tuple(u for u in re.split(r"[\\,]", raw) if u)
    if not all(is_valid_uid(u) for u in uids):
        raise ApplicationError(f"{name}: a list of valid UIDs.")
    return uids


def whole_number(text: str) -> int:
    """A number written in ASCII digits, nothing else: int() also takes "1_0", " 7",
    "+1" and other scripts' digits ("١٢"), which no DICOMweb client sends.

    Raises
    ------
    ValueError
        For anything else.
    """
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def _bounded(raw: str | None, name: str, default: int, low: int, high: int | None) -> int:
    if raw in (None, ""):
        return default
    try:
        number = whole_number(raw)
    except ValueError as exc:
        raise ApplicationError(f"{name}: must be an integer.") from exc
    if number < low:
        raise ApplicationError(f"{name}: must be at least {low}.")
    if high is not None and number > high:
        raise ApplicationError(f"{name}: must be between {low} and {high}.")
    return number


def _date(text: str) -> datetime.date | None:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y%m%d").date()
    except ValueError as exc:
        raise ApplicationError("StudyDate: use YYYYMMDD or a range YYYYMMDD-YYYYMMDD.") from exc


def _date_range(raw: str) -> tuple[datetime.date | None, datetime.date | None]:
    if "-" not in raw:
        day = _date(raw)
        return day, day
    start, _, end = raw.partition("-")
    return _date(start), _date(end)


def _text_filter(field_name: str, pattern: str) -> Q:
    """Single-value matching with the '*' and '?' wildcards of PS3.4 C.2.2.2.4."""
    if "*" not in pattern and "?" not in pattern:
        return Q(**{field_name: pattern})
    return Q(**{f"{field_name}__dicom_wildcard": pattern})


def wildcard_match(column: str, pattern: str, vendor: str) -> tuple[str, str]:
    """SQL and its parameter matching ``column`` against a pattern with the '*' and '?'
    wildcards: GLOB on SQLite, LIKE on PostgreSQL, both case-sensitive as DICOM matching is.
    Not a regular expression: Python's re (SQLite's REGEXP) backtracks for seconds on a
    pattern of several '*' over a value that fails, while both engines give up on a '*'
    that cannot match."""
    if vendor == "sqlite":
        return f"{column} GLOB %s", pattern.replace("[", "[[]")  # [[] is a literal [
    if vendor != "postgresql":
        raise NotImplementedError(f"Wildcard matching on {vendor}.")
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{column} LIKE %s", escaped.replace("*", "%").replace("?", "_")


@CharField.register_lookup
class DicomWildcard(Lookup):
    """``field__dicom_wildcard=pattern``: ``wildcard_match`` in the ORM."""

    lookup_name = "dicom_wildcard"

    def as_sql(self, compiler, connection) -> tuple[str, list]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, (pattern,) = self.process_rhs(compiler, connection)
        sql, param = wildcard_match(lhs, pattern, connection.vendor)
        return sql, [*lhs_params, param]


def filter_studies(qs: QuerySet, query: Query) -> QuerySet:
    if query.patient_id:
        qs = qs.filter(_text_filter("dicom_patient_id", query.patient_id))
    if query.date_from:
        qs = qs.filter(study_date__gte=query.date_from)
    if query.date_to:
        qs = qs.filter(study_date__lte=query.date_to)
    if query.accession_number:
        qs = qs.filter(_text_filter("accession_number", query.accession_number))
    if query.study_uids:
        qs = qs.filter(study_uid__in=query.study_uids)
    if query.modality:
        m = query.modality
        qs = qs.filter(
            Q(modalities=m)
            | Q(modalities__startswith=f"{m}\\")
            | Q(modalities__endswith=f"\\{m}")
            | Q(modalities__contains=f"\\{m}\\")
        )
    return qs


def filter_series(qs: QuerySet, query: Query) -> QuerySet:
    if query.modality:
        qs = qs.filter(modality=query.modality)
    if query.series_uids:
        qs = qs.filter(series_uid__in=query.series_uids)
    return qs


def filter_instances(qs: QuerySet, query: Query) -> QuerySet:
    if query.modality:
        qs = qs.filter(series__modality=query.modality)
    if query.series_uids:
        qs = qs.filter(series__series_uid__in=query.series_uids)
    if query.sop_uids:
        qs = qs.filter(sop_instance_uid__in=query.sop_uids)
    return qs
