"""The multipart/related reader, fuzzed: any boundary, preamble, epilogue and chunking of a
well-formed body gives back the parts it was built from; a damaged body gives parts or a
clear MalformedMultipart, never another exception, and leaves no spool file behind."""

from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from studies import multipart
from studies.multipart import BodyTooLarge, MalformedMultipart, MultipartReader
from tests.studies.fuzz_dicom import fuzz_settings

FUZZ = fuzz_settings(150)

# RFC 2046 5.1.1: a boundary is 1 to 70 of these, not ending with a space.
BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
boundaries = st.text(BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" "))


@st.composite
def body_bytes(draw: st.DrawFn, boundary: str) -> bytes:
    """Bytes made of what confuses a boundary search: CRLFs, dashes, pieces of the boundary."""
    pieces = st.sampled_from(
        [b"\r\n", b"\r", b"\n", b"--", b"-", boundary.encode()[: len(boundary) // 2], b"DICM"]
    )
    chunks = draw(st.lists(st.one_of(pieces, st.binary(max_size=40)), max_size=12))
    return b"".join(chunks)


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[str, list[tuple[str, bytes]], bytes]:
    """(boundary, parts, body): a body of parts, with a preamble, padding and an epilogue."""
    boundary = draw(boundaries)
    delimiter = b"--" + boundary.encode()
    parts = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["application/dicom", "application/octet-stream"]),
                body_bytes(boundary),
            ),
            max_size=4,
        )
    )
    # The boundary never appears in a part (RFC 2046 5.1.1): such parts are not drawn.
    assume(all(b"\r\n" + delimiter not in b"\r\n" + body + b"\r\n" for _, body in parts))
    preamble = draw(st.sampled_from([b"", b"preamble\r\n", b"\r\n", b"x" * 100 + b"\r\n"]))
    assume(delimiter not in preamble)
    padding = draw(st.sampled_from(["", " ", "\t ", "  "])).encode()
    body = preamble
    for content_type, data in parts:
        name = draw(st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE"]))
        body += delimiter + padding + b"\r\n" + f"{name}: {content_type}\r\n\r\n".encode()
        body += data + b"\r\n"
    epilogue = draw(st.sampled_from([b"", b"\r\n", b"\r\nepilogue " + delimiter + b"\r\n"]))
    body += delimiter + b"--" + epilogue
    return boundary, parts, body


def reader_of(body: bytes, sizes: list[int]):
    """``read(n)`` giving ``body`` in pieces of the given sizes (at most n), then b""."""
    state = {"at": 0, "turn": 0}

    def read(n: int) -> bytes:
        size = sizes[state["turn"] % len(sizes)] if sizes else n
        state["turn"] += 1
        chunk = body[state["at"] : state["at"] + min(n, size)]
        state["at"] += len(chunk)
        return chunk

    return read


def parsed(body: bytes, *, boundary: str, sizes: list[int]) -> list[tuple[str, bytes]]:
    reader = MultipartReader(reader_of(body, sizes), boundary=boundary, max_bytes=10**9)
    parts = []
    for part in reader.parts():
        parts.append((part.content_type, part.spooled.path.read_bytes()))
        part.spooled.discard()
    return parts


@pytest.fixture
def spool(settings, tmp_path) -> Path:
    settings.SPOOL_DIR = tmp_path / "spool"
    return settings.SPOOL_DIR


def leftovers(spool: Path) -> list[Path]:
    return list(spool.iterdir()) if spool.exists() else []


@FUZZ
@given(
    case=well_formed(),
    chunk=st.sampled_from([1, 2, 3, 5, 8, 64, 1 << 16]),
    sizes=st.lists(st.integers(1, 100), max_size=6),
)
def test_a_well_formed_body_gives_its_parts_whatever_its_chunking(spool, case, chunk, sizes):
    boundary, parts, body = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multipart, "CHUNK_SIZE", chunk)
        assert parsed(body, boundary=boundary, sizes=sizes) == parts
    assert leftovers(spool) == []


@FUZZ
@given(
    case=well_formed(),
    changes=st.lists(
        st.tuples(st.integers(0, 10**6), st.binary(max_size=3)), min_size=1, max_size=3
    ),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    chunk=st.sampled_from([1, 3, 64, 1 << 16]),
)
def test_a_damaged_body_gives_parts_or_a_clear_refusal(spool, case, changes, cut, chunk):
    boundary, _, body = case
    damaged = bytearray(body)
    for at, value in changes:
        at = at % (len(damaged) + 1)
        damaged[at : at + len(value)] = value
    if cut is not None:
        del damaged[cut % (len(damaged) + 1) :]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multipart, "CHUNK_SIZE", chunk)
        try:
            parsed(bytes(damaged), boundary=boundary, sizes=[])
        except MalformedMultipart as exc:
            reason = str(exc)
        else:
            reason = "parts"
    assert reason
    assert leftovers(spool) == []


@FUZZ
@given(case=well_formed(), limit=st.integers(0, 400))
def test_a_body_past_the_maximum_is_refused_and_leaves_nothing(spool, case, limit):
    boundary, parts, body = case
    reader = MultipartReader(reader_of(body, []), boundary=boundary, max_bytes=limit)
    try:
        got = []
        for part in reader.parts():
            got.append((part.content_type, part.spooled.path.read_bytes()))
            part.spooled.discard()
    except BodyTooLarge:
        assert len(body) > limit
    else:
        assert got == parts
        assert len(body) <= limit
    assert leftovers(spool) == []
