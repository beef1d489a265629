"""Verify the chain end to end in constant memory: hashes, links, gapless seq, checkpoints."""

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Subquery
from django.db.models.functions import Coalesce

from audit import canonical, chainwalk, parallel
from audit.checkpoints import (
    CheckpointClaim,
    claim_as_dict,
    database_claims,
    signature_is_valid,
    trusted_public_keys,
)
from audit.models import AuditEvent, AuditHead

CHUNK_SIZE = chainwalk.CHUNK_SIZE


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
    findings = chainwalk.Findings()
    claims = _checked_claims(database_claims(), list(extra_claims), findings)
    # Read the head after the checkpoints and before the events: every committed checkpoint
    # and event up to it is visible, and appends made during the walk are left for next time.
    head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first()
    expected: dict[int, list[chainwalk.Expected]] = {}
    for claim in claims:
        expected.setdefault(claim.seq, []).append(chainwalk.Expected(claim.hash, claim.source))
    limit = head[0] if head else None
    if workers > 1 and limit and limit >= workers * min_range and _parallel_capable():
        events, last_seq, last_hash = _walk_in_parallel(limit, expected, findings, workers)
    else:
        # closing(): a walk that stops early ends the stream's transaction at once.
        with closing(_stream(lo=1, hi=limit, chunk_size=chunk_size)) as rows:
            events, last_seq, last_hash, _ = chainwalk.walk(rows, expected, findings)
    _check_tail(last_seq, last_hash, head, claims, findings)
    _check_beyond_head(findings)
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
    stored: list[CheckpointClaim], from_file: list[CheckpointClaim], findings: chainwalk.Findings
) -> list[CheckpointClaim]:
    """Signature checks, against the trusted keys only: whoever can write the table could
    sign with a key of their own, and whoever rewrote the log could bring a file of
    checkpoints signed, and vouched for, by a key of theirs (the file's keys are not used)."""
    trusted = trusted_public_keys()
    for claim in stored:
        key = trusted.get(claim.key_id)
        if key is None:
            findings.add(claim.seq, f"checkpoint #{claim.seq} is signed by an untrusted key")
        elif not signature_is_valid(claim, public_key=key):
            findings.add(claim.seq, f"checkpoint #{claim.seq} has an invalid signature")
    for claim in from_file:
        key = trusted.get(claim.key_id)
        if key is None:
            findings.add(
                claim.seq,
                f"checkpoint #{claim.seq} ({claim.source}) is signed by an untrusted key "
                f"{claim.key_id}: neither the signing key nor one of AUDIT_TRUSTED_PUBLIC_KEYS",
            )
        elif not signature_is_valid(claim, public_key=key):
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


def _stream_postgresql(*, lo: int, hi: int | None, chunk_size: int) -> Iterator[tuple]:
    """A named (server-side) cursor, inside a transaction so that PostgreSQL need not
    materialise the result WITH HOLD: constant memory on both sides."""
    sql = chainwalk.pg_range_sql(AuditEvent._meta.db_table)
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, [lo, hi if hi is not None else 2**63 - 1])
        while rows := cursor.fetchmany(chunk_size):
            yield from rows


def _parallel_capable() -> bool:
    # Each worker needs its own connection to committed data: PostgreSQL, outside a
    # transaction (inside one, the workers could not see this transaction's rows).
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _walk_in_parallel(
    limit: int, expected: dict, findings: chainwalk.Findings, workers: int
) -> tuple[int, int, str]:
    step = -(-limit // workers)
    params = connection.get_connection_params()
    for django_only in ("context", "cursor_factory"):
        params.pop(django_only, None)
    sql = chainwalk.pg_range_sql(AuditEvent._meta.db_table)
    jobs = [
        {
            "params": params,
            "sql": sql,
            "lo": lo,
            "hi": min(lo + step - 1, limit),
            "expected": {k: v for k, v in expected.items() if lo <= k < lo + step},
        }
        for lo in range(1, limit + 1, step)
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
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


def _check_tail(
    last_seq: int,
    last_hash: str,
    head: tuple[int, str] | None,
    claims: list[CheckpointClaim],
    findings: chainwalk.Findings,
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


def head_seq() -> Coalesce:
    """The head's seq as a subquery: every event appended through the log is at or below
    it, since the head moves in the append's own transaction. Without a head row (deleted
    with the tail: only checkpoints tell, _check_tail), no bound."""
    head = Subquery(AuditHead.objects.filter(pk=1).values("seq")[:1])
    return Coalesce(head, 2**63 - 1)


def _check_beyond_head(findings: chainwalk.Findings) -> None:
    """A row inserted past the head (an INSERT outside audit.services) is in no walk: named
    here. One statement reads both tables, so an append committing meanwhile is no finding."""
    seq = (
        AuditEvent.objects.filter(seq__gt=head_seq())
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )
    if seq is not None:
        findings.add(seq, f"event #{seq} lies beyond the head: it was not appended through the log")
