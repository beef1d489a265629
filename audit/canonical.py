"""The canonical, versioned encoding of an audit event and the SHA-256 chain over it."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from hashlib import sha256

from audit.events import EVENT_FIELDS

GENESIS_HASH = "0" * 64
CURRENT_VERSION = 1
# The columns verification reads, in the order encode() expects after the first five.
CHAIN_COLUMNS: tuple[str, ...] = (
    "seq",
    "version",
    "time",
    "prev_hash",
    "hash",
    *EVENT_FIELDS,
)

# Sorted keys, fixed separators and ASCII-only output: one byte string per event, forever.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def encode_time(time: datetime) -> str:
    """UTC, ISO 8601, always with microseconds (isoformat drops them when zero otherwise)."""
    return time.astimezone(UTC).isoformat(timespec="microseconds")


def encode(*, version: int, seq: int, time: datetime, fields: Sequence[object]) -> bytes:
    """Version 1: a JSON array [version, seq, time, *EVENT_FIELDS values]."""
    if version != 1:
        raise ValueError(f"Unknown audit encoding version {version}")
    return _ENCODER.encode([version, seq, encode_time(time), *fields]).encode("ascii")


def chain_hash(*, prev_hash: str, payload: bytes) -> str:
    """SHA-256 over the previous hash (64 hex characters) followed by the encoded event."""
    digest = sha256(prev_hash.encode("ascii"))
    digest.update(payload)
    return digest.hexdigest()


def normalise_json(value: dict, *, name: str) -> dict:
    """The dict as it will read back from the database, so the hash covers what is stored."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict")
    # Unsorted first: sorting mixed int and str keys would raise before they become strings.
    return json.loads(json.dumps(value, allow_nan=False))
