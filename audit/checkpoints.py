"""Signed checkpoints: Ed25519 statements of (seq, head hash, time), stored and exported."""

import base64
import binascii
import json
import logging
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from audit import canonical
from audit.models import AuditCheckpoint, AuditHead

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "anim-gateway-audit-checkpoints"
DEV_KEY_NAME = "audit-dev-ed25519.key"


@dataclass(frozen=True, kw_only=True)
class CheckpointClaim:
    """A checkpoint as read from the database or from an exported file."""

    seq: int
    hash: str
    time: str
    key_id: str
    public_key: str
    signature: str
    source: str = "database"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_of(public_key_b64: str) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return sha256(base64.b64decode(public_key_b64)).hexdigest()[:16]


def signing_key() -> Ed25519PrivateKey:
    """The key from AUDIT_SIGNING_KEY (base64 raw 32 bytes), or a persisted dev key."""
    configured = getattr(settings, "AUDIT_SIGNING_KEY", "")
    if configured:
        try:
            return Ed25519PrivateKey.from_private_bytes(base64.b64decode(configured, validate=True))
        except (ValueError, binascii.Error) as exc:
            # Never echo the value: it is a secret.
            raise ImproperlyConfigured(
                "AUDIT_SIGNING_KEY must be a base64-encoded raw 32-byte Ed25519 private key."
            ) from exc
    return _dev_key(Path(settings.VAR_DIR) / DEV_KEY_NAME)


def _dev_key(path: Path) -> Ed25519PrivateKey:
    logger.warning(
        "AUDIT_SIGNING_KEY is empty: signing audit checkpoints with the dev key %s", path
    )
    if path.exists():
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip()))
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(_b64(raw) + "\n")
    return key


def trusted_public_keys() -> dict[str, str]:
    """key id -> base64 public key: the current signing key and any retired keys in
    AUDIT_TRUSTED_PUBLIC_KEYS (so checkpoints signed before a key rotation still verify)."""
    keys = [_b64(_raw_public(signing_key().public_key()))]
    keys += list(getattr(settings, "AUDIT_TRUSTED_PUBLIC_KEYS", []))
    return {key_id_of(key): key for key in keys}


def message(*, seq: int, hash: str, time: str) -> bytes:
    """The signed bytes; versioned so that the statement cannot be read another way."""
    return f"anim-gateway audit checkpoint v1\n{seq}\n{hash}\n{time}".encode("ascii")


def signature_is_valid(claim: CheckpointClaim, *, public_key: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(
            base64.b64decode(claim.signature),
            message(seq=claim.seq, hash=claim.hash, time=claim.time),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


@transaction.atomic
def checkpoint_take() -> AuditCheckpoint:
    """Sign the current head; when nothing was appended since the last checkpoint, return it."""
    head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first()
    seq, digest = head or (0, canonical.GENESIS_HASH)
    latest = AuditCheckpoint.objects.order_by("-seq", "-id").first()
    if latest and latest.seq == seq and latest.hash == digest:
        return latest
    key = signing_key()
    public_key = _b64(_raw_public(key.public_key()))
    now = timezone.now()
    signature = key.sign(message(seq=seq, hash=digest, time=canonical.encode_time(now)))
    checkpoint = AuditCheckpoint(
        seq=seq,
        hash=digest,
        time=now,
        key_id=key_id_of(public_key),
        public_key=public_key,
        signature=_b64(signature),
    )
    checkpoint.save(force_insert=True)
    return checkpoint


def claim_of(checkpoint: AuditCheckpoint) -> CheckpointClaim:
    return CheckpointClaim(
        seq=checkpoint.seq,
        hash=checkpoint.hash,
        time=canonical.encode_time(checkpoint.time),
        key_id=checkpoint.key_id,
        public_key=checkpoint.public_key,
        signature=checkpoint.signature,
    )


def database_claims() -> list[CheckpointClaim]:
    # Checkpoints are few (one per beat interval): holding them in memory is fine.
    return [claim_of(c) for c in AuditCheckpoint.objects.order_by("seq", "id").iterator()]


def checkpoint_export() -> dict:
    """All checkpoints with their public keys, as the JSON document the DPO keeps elsewhere."""
    claims = database_claims()
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "exported_at": canonical.encode_time(timezone.now()),
        "public_keys": {c.key_id: c.public_key for c in claims},
        "checkpoints": [
            {k: v for k, v in asdict(c).items() if k not in ("source", "public_key")}
            for c in claims
        ],
    }


def load_claims(path: Path) -> list[CheckpointClaim]:
    """Checkpoints from an exported file. Its public keys are read, never trusted: only the
    signing key and AUDIT_TRUSTED_PUBLIC_KEYS verify them (audit.verification)."""
    try:
        document = json.loads(Path(path).read_text())
        if document.get("format") != EXPORT_FORMAT:
            raise ValueError(f"not an {EXPORT_FORMAT} file")
        keys = document["public_keys"]
        return [
            CheckpointClaim(
                seq=int(item["seq"]),
                hash=str(item["hash"]),
                time=str(item["time"]),
                key_id=str(item["key_id"]),
                public_key=str(keys[item["key_id"]]),
                signature=str(item["signature"]),
                source=f"file {Path(path).name}",
            )
            for item in document["checkpoints"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"Cannot read checkpoint file {path}: {exc}") from exc


def claim_as_dict(claim: CheckpointClaim | None) -> dict | None:
    if claim is None:
        return None
    return {"seq": claim.seq, "hash": claim.hash, "time": claim.time, "key_id": claim.key_id}
