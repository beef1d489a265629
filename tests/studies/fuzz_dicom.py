"""Hypothesis strategies for damaged Part 10 files, shared by the property tests
(tests/studies/test_fuzz_*.py); FUZZ_EXAMPLES=5000 runs those longer, at random, to explore."""

import os
import struct
import warnings
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_files


def fuzz_settings(examples: int) -> settings:
    """In the suite, ``examples`` deterministic examples; with FUZZ_EXAMPLES set, that many
    random ones (an exploring run: a failure is then turned into a regular test)."""
    explored = os.environ.get("FUZZ_EXAMPLES")
    return settings(
        max_examples=int(explored) if explored else examples,
        derandomize=not explored,
        database=None,
        deadline=None,  # behaviour, never timing
        suppress_health_check=list(HealthCheck),
    )


# The bytes a damaged or crafted header is made of: the encoding's markers, lengths on
# their edges, VR codes that change how the walk reads what follows.
ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
ITEM_END = struct.pack("<HH", 0xFFFE, 0xE00D)
SEQUENCE_END = struct.pack("<HH", 0xFFFE, 0xE0DD)
SPECIAL_WORDS = [
    ITEM,
    ITEM_END,
    SEQUENCE_END,
    b"\xff\xff\xff\xff",  # undefined length
    b"\x00\x00\x00\x00",
    b"\xfe\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    struct.pack("<L", 8),
    struct.pack("<L", 12),
    b"SQ\x00\x00",
    b"UN\x00\x00",
    b"OB\x00\x00",
    b"UT\x00\x00",
    b"SQ\xff\xff",
    b"US\x02\x00",
    b"DS\x08\x00",
    b"PN\x04\x00",
    struct.pack("<HH", 0x7FE0, 0x0010),  # Pixel Data
    struct.pack("<HH", 0x0008, 0x0005),  # Specific Character Set
    struct.pack("<HH", 0x0002, 0x0010),  # Transfer Syntax UID
    struct.pack(">HH", 0xFFFE, 0xE000),
    struct.pack("<HH", 0x0028, 0x0008),  # Number of Frames
    b"\x00\xff",
]
# Values that take pydicom's and the quick read's conversions down different paths: other
# character sets, escapes, multiple values, odd numbers, padding.
SPECIAL_VALUES = [
    b"\xe9t\xe9",
    b"\\",
    b"a\\b\\",
    b"\x1b$B",
    b"\x1b(B",
    b" ",
    b"\x00",
    b"\x00\x00",
    b"1e400",
    b"nan ",
    b"-0",
    b"+1",
    b"1.",
    b".5e-3",
    b"0x10",
    b"ISO_IR 100",
    b"ISO_IR 192",
    b"ISO 2022 IR 87",
    b"GB18030 ",
    b"\\ISO 2022 IR 13",
    b"\xff\xfe",
    b"\xc3(",
    b"Doe^John=\x1b$B",
    b"^^^^",
    b"\t\r\n",
    b"19991332",
    b"999999999999",
]
# Bytes a file's structure hangs on: an item, a delimiter, or a VR code (an element's tag
# lies four bytes before it).
_ANCHORS = [ITEM, ITEM_END, SEQUENCE_END] + [
    code.encode() for code in ("SQ", "UN", "OB", "OW", "UI", "UL", "US", "PN", "LO", "DS", "IS")
]
# Only the first bytes are mutated at random: the header lies there, the pixel data after.
HEAD = 8192


def part10_files() -> list[Path]:
    """pydicom's test files with a Part 10 preamble and prefix (malformed ones among them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # offline: the download of extra files fails
        paths = sorted(get_testdata_files("*.dcm"))
    return [Path(p) for p in paths if Path(p).read_bytes()[128:132] == b"DICM"]


@cache
def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


@cache
def dataset_start(path: Path) -> int:
    """Where the data set starts, after the file meta group (mutated less: any damage there
    ends in the same refusal)."""
    data = file_bytes(path)
    if data[132:136] != b"\x02\x00\x00\x00" or len(data) < 144:
        return 132
    (length,) = struct.unpack_from("<L", data, 140)
    return min(144 + length, len(data))


@cache
def anchors(path: Path) -> list[int]:
    """Where the structure of the file hangs: each marker's and each element's offset."""
    data = file_bytes(path)
    found = set()
    for marker in _ANCHORS:
        at = data.find(marker, 132)
        while 0 <= at < HEAD:
            found.add(at if marker.startswith(b"\xfe\xff") else at - 4)
            at = data.find(marker, at + 1)
    start = dataset_start(path)
    return sorted(p for p in found if p >= start)


@st.composite
def mutation(draw: st.DrawFn, path: Path) -> tuple:
    """One change to the file: at an anchor (an element, an item) or anywhere in its head."""
    size = len(file_bytes(path))
    places = anchors(path)
    start = dataset_start(path)
    at = draw(
        st.one_of(
            st.sampled_from(places) if places else st.nothing(),
            st.sampled_from(places) if places else st.nothing(),
            st.integers(start, max(start, min(size, HEAD) - 1)),
            st.integers(132, start),  # now and then, the file meta group
        )
    )
    offset = draw(st.sampled_from([0, 0, 4, 6, 8, 10, 12]))  # tag, VR, length, value
    kind = draw(
        st.sampled_from(["word", "byte", "delete", "insert", "truncate", "length", "value"])
    )
    if kind == "value":
        return (
            "replace",
            at + draw(st.sampled_from([8, 12])),
            draw(st.sampled_from(SPECIAL_VALUES)),
        )
    if kind == "word":
        return ("replace", at + offset, draw(st.sampled_from(SPECIAL_WORDS)))
    if kind == "byte":
        return ("replace", at + offset, bytes([draw(st.integers(0, 255))]))
    if kind == "delete":
        return ("delete", at + offset, draw(st.integers(1, 16)))
    if kind == "insert":
        inserted = draw(
            st.one_of(st.sampled_from(SPECIAL_WORDS), st.binary(min_size=1, max_size=8))
        )
        return ("insert", at + offset, inserted)
    if kind == "length":
        length = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)))
        width = draw(st.sampled_from(["<H", "<L"]))
        return (
            "replace",
            at + offset,
            struct.pack(width, length % (1 << (8 * struct.calcsize(width)))),
        )
    return ("truncate", draw(st.integers(start, size)), b"")


def mutate(data: bytes, changes: list[tuple]) -> bytes:
    """``data`` with each change made in turn."""
    copy = bytearray(data)
    for kind, at, value in changes:
        at = min(at, len(copy))
        if kind == "replace":
            copy[at : at + len(value)] = value
        elif kind == "delete":
            del copy[at : at + value]
        elif kind == "insert":
            copy[at:at] = value
        else:
            del copy[at:]
    return bytes(copy)


@st.composite
def damaged_file(draw: st.DrawFn, paths: list[Path]) -> tuple[str, bytes]:
    """(name, bytes) of one of ``paths`` with one to four changes."""
    path = draw(st.sampled_from(paths))
    changes = draw(st.lists(mutation(path), min_size=1, max_size=4))
    return path.name, mutate(file_bytes(path), changes)
