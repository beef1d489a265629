"""The Accept header's media ranges (RFC 9110 12.5.1), for DICOMweb's choice of media type."""

import functools
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# A comma or semicolon outside a quoted string ends an element or a parameter: a quoted
# type parameter (type="application/dicom") may hold neither, but a careless one might.
_ELEMENTS = re.compile(r'(?:[^,"]|"[^"]*")+')
_PARAMS = re.compile(r'(?:[^;"]|"[^"]*")+')


@dataclass(frozen=True)
class MediaRange:
    media_type: str  # lower case: "multipart/related", "image/*", "*/*"
    params: tuple[tuple[str, str], ...]  # names in lower case, values unquoted

    def param(self, name: str, default: str = "") -> str:
        return next((value for key, value in self.params if key == name), default)


def requested(query_string: str, header: str | None) -> str | None:
    """The media ranges a request accepts: its ``accept`` query parameters, where given,
    which PS3.18 8.3.3.1 makes take the place of the Accept header (several are one list, in
    their order), else the header."""
    values = [
        _query_value(value)
        for name, _, value in (item.partition("=") for item in query_string.split("&"))
        if name == "accept" and value
    ]
    return ", ".join(values) if values else header


# A space between two characters of a token ("application/dicom json") is no separator: a '+'
# the client wrote as is (RFC 3986 keeps it in a query), read by form decoding as a space.
_PLUS_READ_AS_SPACE = re.compile(r"(?<=[A-Za-z0-9.\-]) (?=[A-Za-z0-9.\-])")


def _query_value(value: str) -> str:
    """A query value form-decoded ('+' a space, as clients that encode spaces write it),
    a '+' inside a media type kept (?accept=application/dicom+json)."""
    return _PLUS_READ_AS_SPACE.sub("+", urllib.parse.unquote_plus(value, errors="replace"))


def choose(accept: str | None, offer: Callable[[MediaRange], T | None]) -> T | None:
    """What ``offer`` gives for the most preferred range it serves, None for none of them.

    An absent header accepts anything (RFC 9110 12.5.1), as "*/*" does.
    """
    for media_range in media_ranges(accept or "*/*"):
        chosen = offer(media_range)
        if chosen is not None:
            return chosen
    return None


@functools.lru_cache(maxsize=256)  # clients send the same few headers on every request
def media_ranges(accept: str) -> tuple[MediaRange, ...]:
    """The header's ranges, most preferred first (higher q, then the order sent); those with
    q=0, which RFC 9110 12.4.2 makes "not acceptable", and malformed ones are left out."""
    weighed = []
    for position, element in enumerate(_ELEMENTS.findall(accept[:4096])):
        media_type, *raw = [p.strip() for p in _PARAMS.findall(element)] or [""]
        params = []
        for item in raw:
            name, _, value = item.partition("=")
            params.append((name.strip().lower(), value.strip().strip('"')))
        quality = _quality(dict(params).get("q", "1"))
        media_type = media_type.lower()
        if quality > 0 and media_type.count("/") == 1:
            params = [(k, v) for k, v in params if k != "q"]
            weighed.append((-quality, position, MediaRange(media_type, tuple(params))))
    return tuple(media_range for *_, media_range in sorted(weighed))


@functools.lru_cache(maxsize=256)
def refused(accept: str | None) -> frozenset[str]:
    """The media types the header names with q=0: not acceptable, even under a wildcard
    ("image/jpeg;q=0, */*" accepts anything but JPEG; RFC 9110 12.5.1's most specific range)."""
    return frozenset(media_type for media_type, params in refusals(accept))


def refused_part_types(accept: str | None) -> frozenset[str]:
    """The part types the header refuses in PS3.18's multipart form: the type parameter of a
    multipart/related range with q=0 ('multipart/related; type="image/jpeg"; q=0, */*' accepts
    anything but JPEG parts, as 'image/jpeg;q=0, */*' does)."""
    return frozenset(
        params["type"].lower()
        for media_type, params in refusals(accept)
        if media_type == "multipart/related" and params.get("type")
    )


def refusals(accept: str | None) -> Iterator[tuple[str, dict[str, str]]]:
    """Each range with q=0, as its media type (lower case) and its parameters."""
    for element in _ELEMENTS.findall((accept or "")[:4096]):
        media_type, *raw = [p.strip() for p in _PARAMS.findall(element)] or [""]
        params = {}
        for item in raw:
            name, _, value = item.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        if _quality(params.get("q", "1")) == 0:
            yield media_type.lower(), params


def refused_under(refused: frozenset[str], media_type: str, wildcard: str) -> bool:
    """Whether a type that a wildcard range offers is one the client refused (q=0) by a more
    specific range (RFC 9110 12.5.1): itself, or under "*/*" its own "type/*"."""
    if media_type in refused:
        return True
    return wildcard == "*/*" and media_type.split("/")[0] + "/*" in refused


def _quality(value: str) -> float:
    """RFC 9110 12.4.2's qvalue, from 0 to 1; 0 (not acceptable) when malformed."""
    try:
        quality = float(value)
    except ValueError:
        return 0.0
    return quality if 0 <= quality <= 1 else 0.0
