"""Verify the chain end to end in constant memory: hashes, links, gapless seq, checkpoints."""

import json
import json.scanner
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from hashlib import sha256

from django.db import connection, transaction

from audit import canonical, parallel
from audit.checkpoints import (
    CheckpointClaim,
    claim_as_dict,
    database_claims,
    signature_is_valid,
    trusted_public_keys,
)
from audit.events import EVENT_FIELDS
from audit.models import AuditEvent, AuditHead

CHUNK_SIZE = 5000
_BASIS_IDS, _DETAIL = EVENT_FIELDS.index("basis_ids"), EVENT_FIELDS.index("detail")
# json's C scanner without json.loads' Python wrapper: the text is PostgreSQL's jsonb output.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    """The outcome of one verification run."""

    valid: bool
    events: int
    last_seq: int
    first_invalid_seq: int | None = None
    problem: str = ""
    checkpoints_checked: int = 0
    checkpoint: dict | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.valid:
            anchor = f"; latest checkpoint #{self.checkpoint['seq']}" if self.checkpoint else ""
            return (
                f"OK: {self.events} events verified (seq 1..{self.last_seq}), "
                f"{self.checkpoints_checked} checkpoints verified{anchor}."
            )
        return f"TAMPERED: first invalid seq {self.first_invalid_seq}: {self.problem}"

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "events": self.events,
            "last_seq": self.last_seq,
            "first_invalid_seq": self.first_invalid_seq,
            "problem": self.problem,
            "checkpoints_checked": self.checkpoints_checked,
            "checkpoint": self.checkpoint,
        }


@dataclass
class _Findings:
    """The earliest problem seen so far (problems can be found out of seq order)."""

    seq: int | None = None
    problem: str = ""

    def add(self, seq: int, problem: str) -> None:
        if self.seq is None or seq < self.seq:
            self.seq, self.problem = seq, problem


def verify_chain(
    *,
    extra_claims: Sequence[CheckpointClaim] = (),
    chunk_size: int = CHUNK_SIZE,
    workers: int = 1,
    min_range: int = 50_000,
) -> VerifyResult:
    """Verify every event and every checkpoint (database and `extra_claims` from a file).

    With `workers` > 1 on PostgreSQL, ranges of the chain are verified by that many
    processes and their seams checked here.

    Returns
    -------
    VerifyResult
        valid, the count of events checked and, when invalid, the first bad seq and why.
    """
    findings = _Findings()
    claims = _checked_claims(database_claims(), list(extra_claims), findings)
    # Read the head after the checkpoints and before the events: every committed checkpoint
    # and event up to it is visible, and appends made during the walk are left for next time.
    head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first()
    expected = {}
    for claim in claims:
        expected.setdefault(claim.seq, []).append(claim)
    limit = head[0] if head else None
    if workers > 1 and limit and limit >= workers * min_range and _parallel_capable():
        events, last_seq, last_hash = _walk_in_parallel(limit, expected, findings, workers)
    else:
        # closing(): a walk that stops early ends the stream's transaction at once.
        with closing(_stream(lo=1, hi=limit, chunk_size=chunk_size)) as rows:
            events, last_seq, last_hash, _ = _walk(rows, expected, findings)
    _check_tail(last_seq, last_hash, head, claims, findings)
    good = [c for c in claims if findings.seq is None or c.seq < findings.seq]
    return VerifyResult(
        valid=findings.seq is None,
        events=events,
        last_seq=last_seq,
        first_invalid_seq=findings.seq,
        problem=findings.problem,
        checkpoints_checked=len(claims),
        checkpoint=claim_as_dict(max(good, key=lambda c: c.seq) if good else None),
    )


def _checked_claims(
    stored: list[CheckpointClaim], from_file: list[CheckpointClaim], findings: _Findings
) -> list[CheckpointClaim]:
    """Signature checks. Stored checkpoints must be signed by a trusted key (whoever can
    write the table could sign with a key of their own); a file brings its own keys."""
    trusted = trusted_public_keys()
    for claim in stored:
        key = trusted.get(claim.key_id)
        if key is None:
            findings.add(claim.seq, f"checkpoint #{claim.seq} is signed by an untrusted key")
        elif not signature_is_valid(claim, public_key=key):
            findings.add(claim.seq, f"checkpoint #{claim.seq} has an invalid signature")
    for claim in from_file:
        if not signature_is_valid(claim, public_key=claim.public_key):
            findings.add(
                claim.seq, f"checkpoint #{claim.seq} ({claim.source}) is not validly signed"
            )
    return stored + from_file


def _stream(*, lo: int, hi: int | None, chunk_size: int) -> Iterator[tuple]:
    """Rows lo..hi as (seq, version, time as canonical text, prev_hash, hash, *fields) in
    seq order, with the JSON fields as dicts or as JSON text."""
    if connection.vendor == "postgresql":
        return _stream_postgresql(lo=lo, hi=hi, chunk_size=chunk_size)
    rows = AuditEvent.objects.order_by("seq").filter(seq__gte=lo)
    if hi is not None:
        rows = rows.filter(seq__lte=hi)
    return rows.values_list(*canonical.CHAIN_COLUMNS).iterator(chunk_size=chunk_size)


# Time as canonical text and JSON as text straight from the server: psycopg's Python-level
# jsonb and Django's timestamptz loaders would cost more than the hashing.
_PG_COLUMNS = ", ".join(
    {
        "time": "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
        "basis_ids": "basis_ids::text",
        "detail": "detail::text",
    }.get(name, name)
    for name in canonical.CHAIN_COLUMNS
)


def _stream_postgresql(*, lo: int, hi: int | None, chunk_size: int) -> Iterator[tuple]:
    """A named (server-side) cursor, inside a transaction so that PostgreSQL need not
    materialise the result WITH HOLD: constant memory on both sides."""
    sql = f"SELECT {_PG_COLUMNS} FROM {AuditEvent._meta.db_table}"  # noqa: S608
    sql += " WHERE seq >= %s AND seq <= %s ORDER BY seq"
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, [lo, hi if hi is not None else 2**63 - 1])
        while rows := cursor.fetchmany(chunk_size):
            yield from rows


def _walk(
    rows: Iterable[tuple],
    expected: dict[int, list[CheckpointClaim]],
    findings: _Findings,
    *,
    start: int = 1,
    start_prev: str | None = canonical.GENESIS_HASH,
) -> tuple[int, int, str, str | None]:
    """The hot loop: two SHA-256 per event; stops at the first problem.

    Returns (events verified, last seq, last hash, prev_hash of the first row). With
    start_prev None the first row's link is left to the caller (a range's seam)."""
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


def _parallel_capable() -> bool:
    # Each worker needs its own connection to committed data: PostgreSQL, outside a
    # transaction (inside one, the workers could not see this transaction's rows).
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _walk_in_parallel(
    limit: int, expected: dict, findings: _Findings, workers: int
) -> tuple[int, int, str]:
    step = -(-limit // workers)
    jobs = [
        {
            "lo": lo,
            "hi": min(lo + step - 1, limit),
            "expected": {k: v for k, v in expected.items() if lo <= k < lo + step},
        }
        for lo in range(1, limit + 1, step)
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=parallel.setup,
        initargs=(connection.settings_dict["NAME"],),
    ) as pool:
        results = list(pool.map(parallel.verify_range, jobs))
    events, last_seq, last_hash = 0, 0, canonical.GENESIS_HASH
    for job, result in zip(jobs, results, strict=True):
        if result["problem_seq"] is not None:
            findings.add(result["problem_seq"], result["problem"])
        if findings.seq is not None and findings.seq <= job["lo"]:
            break
        if result["first_prev"] is not None and result["first_prev"] != last_hash:
            findings.add(job["lo"], f"event #{job['lo']} does not link to event #{job['lo'] - 1}")
        events += result["events"]
        last_seq, last_hash = result["last_seq"], result["last_hash"]
        if last_seq != job["hi"] and findings.seq is None:
            findings.add(last_seq + 1, f"event #{last_seq + 1} is missing")
    return events, last_seq, last_hash


def verify_range(job: dict) -> dict:
    """In a worker process (audit.parallel): verify seq lo..hi on its own connection."""
    findings = _Findings()
    with closing(_stream(lo=job["lo"], hi=job["hi"], chunk_size=CHUNK_SIZE)) as rows:
        count, last_seq, last_hash, first_prev = _walk(
            rows, job["expected"], findings, start=job["lo"], start_prev=None
        )
    return {
        "events": count,
        "last_seq": last_seq,
        "last_hash": last_hash,
        "first_prev": first_prev,
        "problem_seq": findings.seq,
        "problem": findings.problem,
    }


def _against_checkpoints(seq: int, stored: str, claims: list[CheckpointClaim]) -> str | None:
    for claim in claims:
        if claim.hash != stored:
            return f"event #{seq} differs from signed checkpoint #{seq} ({claim.source})"
    return None


def _check_tail(
    last_seq: int,
    last_hash: str,
    head: tuple[int, str] | None,
    claims: list[CheckpointClaim],
    findings: _Findings,
) -> None:
    """Truncation: a checkpoint or the head row promises events beyond the last one found."""
    if findings.seq is not None:
        return
    beyond = [c for c in claims if c.seq > last_seq]
    if beyond:
        claim = min(beyond, key=lambda c: c.seq)
        findings.add(
            last_seq + 1,
            f"the log ends at #{last_seq} but checkpoint #{claim.seq} ({claim.source}) "
            "was signed after it (truncated tail)",
        )
    elif head and head[0] > last_seq:
        findings.add(last_seq + 1, f"the log ends at #{last_seq} but its head is #{head[0]}")
    elif head and head[0] == last_seq and head[1] != last_hash:
        findings.add(last_seq, f"event #{last_seq} does not match the head hash")
