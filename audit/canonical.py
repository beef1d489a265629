"""The canonical, versioned encoding of an audit event and the SHA-256 chain over it.

Version 1, for event number `seq` recorded at `time`:

    content = JSON array of the EVENT_FIELDS values (sorted keys, "," and ":", ASCII only)
    hash    = SHA-256 hex of "{prev_hash}|1|{seq}|{time}|{SHA-256 hex of content}"

with `time` in UTC as 2026-01-31T12:00:00.000000+00:00 and prev_hash "0" * 64 for event 1.
The link line is plain ASCII so that PostgreSQL can compute it under the head lock
(audit.services) exactly as Python does here.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from hashlib import sha256

from audit.events import EVENT_FIELDS

GENESIS_HASH = "0" * 64
CURRENT_VERSION = 1
# The columns verification reads, in the order it unpacks them.
CHAIN_COLUMNS: tuple[str, ...] = ("seq", "version", "time", "prev_hash", "hash", *EVENT_FIELDS)

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
encode_content = _ENCODER.encode


def encode_time(time: datetime) -> str:
    """UTC, ISO 8601, always with microseconds (isoformat drops them when zero otherwise)."""
    return time.astimezone(UTC).isoformat(timespec="microseconds")


def content_hash(fields: Sequence[object]) -> str:
    return sha256(encode_content(list(fields)).encode("ascii")).hexdigest()


def link_hash(*, prev_hash: str, version: int, seq: int, time: str, content: str) -> str:
    """The chain link over the previous hash, position, time and content hash."""
    return sha256(f"{prev_hash}|{version}|{seq}|{time}|{content}".encode("ascii")).hexdigest()


def event_hash(
    *, prev_hash: str, version: int, seq: int, time: datetime, fields: Sequence[object]
) -> str:
    if version != 1:
        raise ValueError(f"Unknown audit encoding version {version}")
    return link_hash(
        prev_hash=prev_hash,
        version=version,
        seq=seq,
        time=encode_time(time),
        content=content_hash(fields),
    )


def normalise_json(value: dict, *, name: str) -> dict:
    """The dict as it will read back from the database, so the hash covers what is stored."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict")
    # Unsorted first: sorting mixed int and str keys would raise before they become strings.
    return json.loads(json.dumps(value, allow_nan=False))
