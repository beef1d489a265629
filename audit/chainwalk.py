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
# json's C scanner without json.loads' Python wrapper: the text is PostgreSQL's jsonb output.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())

# Time as canonical text and JSON as text straight from PostgreSQL: psycopg's Python-level
# jsonb and Django's timestamptz loaders would cost more than the hashing.
PG_COLUMNS = ", ".join(
    {
        "time": "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
        "basis_ids": "basis_ids::text",
        "detail": "detail::text",
    }.get(name, name)
    for name in canonical.CHAIN_COLUMNS
)


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
    encode, encode_time, scan = canonical.encode_content, canonical.encode_time, _scan_json
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
            if isinstance(fields[_DETAIL], str):
                fields[_BASIS_IDS] = scan(fields[_BASIS_IDS], 0)[0]
                fields[_DETAIL] = scan(fields[_DETAIL], 0)[0]
            if not isinstance(time, str):
                time = encode_time(time)
            # canonical.event_hash, inlined: this loop runs a million times.
            content = sha256(encode(fields).encode("ascii")).hexdigest()
            line = f"{prev}|1|{seq}|{time}|{content}"
            if sha256(line.encode("ascii")).hexdigest() != stored:
                problem = f"event #{seq} does not match its hash (its content was changed)"
        if problem is None and seq in expected:
            problem = _against_checkpoints(seq, stored, expected[seq])
        if problem:
            findings.add(seq, problem)
            break
        count += 1
        want_seq, prev = seq + 1, stored
    return count, want_seq - 1, prev, first_prev


def _against_checkpoints(seq: int, stored: str, claims: list[Expected]) -> str | None:
    for claim in claims:
        if claim.hash != stored:
            return f"event #{seq} differs from signed checkpoint #{seq} ({claim.source})"
    return None
