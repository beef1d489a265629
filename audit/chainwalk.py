"""The verification hot loop, importable without Django so that worker processes start fast."""

import json
import json.scanner
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256
from typing import NamedTuple

from audit import canonical
from audit.events import EVENT_FIELDS

CHUNK_SIZE = 5000
_BASIS_IDS, _DETAIL = EVENT_FIELDS.index("basis_ids"), EVENT_FIELDS.index("detail")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: never in a stored event


# json's C scanner without json.loads' Python wrapper: the text is PostgreSQL's jsonb output.
_scan_json = json.scanner.make_scanner(json.JSONDecoder(parse_constant=_no_constant))
encode = canonical.encode_content

# Time as canonical text straight from PostgreSQL (Django's timestamptz loader would cost more
# than the hashing); the JSON fields are stored as canonical text already (audit.fields).
PG_COLUMNS = ", ".join(
    "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    if name == "time"
    else name
    for name in canonical.CHAIN_COLUMNS
)
# Placeholders for the JSON fields: encoded, then replaced by the stored text as it is. NUL
# never reaches a stored string (audit.services), so the placeholders cannot collide.
_JSON = (_BASIS_IDS, _DETAIL)
_MARKS = {i: f"\x00{EVENT_FIELDS[i]}" for i in _JSON}
_TOKENS = {i: json.dumps(mark) for i, mark in _MARKS.items()}


def pg_range_sql(table: str) -> str:
    """Rows seq lo..hi (two parameters) in seq order, as walk() reads them."""
    return f"SELECT {PG_COLUMNS} FROM {table} WHERE seq >= %s AND seq <= %s ORDER BY seq"  # noqa: S608


class Expected(NamedTuple):
    """What a signed checkpoint says the hash at its seq is, and where it was read."""

    hash: str
    source: str


@dataclass
class Findings:
    """The earliest problem seen so far (problems can be found out of seq order)."""

    seq: int | None = None
    problem: str = ""

    def add(self, seq: int, problem: str) -> None:
        if self.seq is None or seq < self.seq:
            self.seq, self.problem = seq, problem


def walk(
    rows: Iterable[tuple],
    expected: dict[int, list[Expected]],
    findings: Findings,
    *,
    start: int = 1,
    start_prev: str | None = canonical.GENESIS_HASH,
) -> tuple[int, int, str, str | None]:
    """Two SHA-256 per event, checked against the stored hash; stops at the first problem.

    `rows` are (seq, version, time, prev_hash, hash, *EVENT_FIELDS values) in seq order, time
    as a datetime or canonical text, JSON fields as dicts or JSON text. Returns (events
    verified, last seq, last hash, prev_hash of the first row); with start_prev None the
    first row's link is left to the caller (the seam between two ranges)."""
    encode_time = canonical.encode_time
    basis_mark, detail_mark = _MARKS[_BASIS_IDS], _MARKS[_DETAIL]
    basis_token, detail_token = _TOKENS[_BASIS_IDS], _TOKENS[_DETAIL]
    want_seq, prev, first_prev = start, start_prev, None
    count = 0
    for seq, version, time, prev_hash, stored, *fields in rows:
        if prev is None:
            prev = first_prev = prev_hash
        if findings.seq is not None and seq >= findings.seq:
            break
        problem = None
        if seq != want_seq:
            # A gap: the event numbered want_seq was deleted (or renumbered away).
            findings.add(want_seq, f"event #{want_seq} is missing (next is #{seq})")
            break
        if version != 1:
            problem = f"event #{seq} has unknown encoding version {version}"
        elif prev_hash != prev:
            problem = f"event #{seq} does not link to the hash of event #{seq - 1}"
        else:
            if not isinstance(time, str):
                time = encode_time(time)
            head = f"{prev}|1|{seq}|{time}|"
            basis_ids, detail = fields[_BASIS_IDS], fields[_DETAIL]
            if basis_ids.__class__ is str and detail.__class__ is str:
                # The fast path (_content, inlined): the stored canonical text, spliced in.
                fields[_BASIS_IDS], fields[_DETAIL] = basis_mark, detail_mark
                content = encode(fields).replace(basis_token, basis_ids, 1)
                content = content.replace(detail_token, detail, 1).encode("utf-8", "replace")
                fields[_BASIS_IDS], fields[_DETAIL] = basis_ids, detail
            else:
                content = _content_or_none(fields)
            if content is None or (
                sha256(f"{head}{sha256(content).hexdigest()}".encode("ascii")).hexdigest() != stored
                and not _matches(head, fields, stored)
            ):
                problem = f"event #{seq} does not match its hash (its content was changed)"
        if problem is None and seq in expected:
            problem = _against_checkpoints(seq, stored, expected[seq])
        if problem:
            findings.add(seq, problem)
            break
        count += 1
        want_seq, prev = seq + 1, stored
    return count, want_seq - 1, prev, first_prev


def _matches(head: str, fields: list, stored: str) -> bool:
    """canonical.event_hash, inlined: this runs a million times per million events."""
    if _hash(head, _content(fields)) == stored:
        return True
    if not any(isinstance(fields[i], str) for i in _JSON):
        return False
    try:
        # Rows written before the JSON fields were stored canonically: parse, re-encode.
        reparsed = [_parsed(v) if i in _JSON else v for i, v in enumerate(fields)]
        return _hash(head, _content(reparsed)) == stored
    except (ValueError, TypeError, StopIteration):
        return False  # not one JSON value (text after it, NaN): changed, whatever it hashes to


def _parsed(value: object) -> object:
    """A stored JSON field's value: its text must be one JSON value and nothing more."""
    if not isinstance(value, str):
        return value
    parsed, end = _scan_json(value, 0)
    if end != len(value):
        raise ValueError("text after the JSON value")
    return parsed


def _content_or_none(fields: list) -> bytes | None:
    """The canonical content, or None for values no event holds (a NaN read from the
    database as a float): the canonical encoding refuses them."""
    try:
        return _content(fields)
    except (ValueError, TypeError):
        return None


def _content(fields: list) -> bytes:
    """The canonical content; JSON fields given as stored text are spliced in as they are."""
    texts = [(i, fields[i]) for i in _JSON if isinstance(fields[i], str)]
    if not texts:
        return encode(fields).encode("ascii")
    marked = list(fields)
    for i, _ in texts:
        marked[i] = _MARKS[i]
    content = encode(marked)
    for i, text in texts:
        content = content.replace(_TOKENS[i], text, 1)
    # Canonical text is ASCII; anything else cannot match and goes the slow way.
    return content.encode("utf-8", "replace")


def _hash(head: str, content: bytes) -> str:
    digest = sha256(head.encode("ascii"))
    digest.update(sha256(content).hexdigest().encode("ascii"))
    return digest.hexdigest()


def _against_checkpoints(seq: int, stored: str, claims: list[Expected]) -> str | None:
    for claim in claims:
        if claim.hash != stored:
            return f"event #{seq} differs from signed checkpoint #{seq} ({claim.source})"
    return None
