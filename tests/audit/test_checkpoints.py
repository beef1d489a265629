"""Signed checkpoints: Ed25519 over (seq, head hash, time), exported and verified from a file."""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.checkpoints import checkpoint_take, signing_key
from audit.models import AuditCheckpoint
from audit.tasks import take_checkpoint

from .conftest import execute

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(settings):
    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    settings.AUDIT_SIGNING_KEY = base64.b64encode(raw).decode()
    return settings.AUDIT_SIGNING_KEY


def test_it_signs_the_current_head(append_events, key):
    rows = append_events(3)
    checkpoint = checkpoint_take()
    assert (checkpoint.seq, checkpoint.hash) == (3, rows[-1].hash)
    public = signing_key().public_key()
    from audit import canonical
    from audit.checkpoints import message

    public.verify(
        base64.b64decode(checkpoint.signature),
        message(seq=3, hash=rows[-1].hash, time=canonical.encode_time(checkpoint.time)),
    )


def test_it_does_not_repeat_an_unchanged_checkpoint(append_events, key):
    append_events(1)
    first = checkpoint_take()
    assert checkpoint_take().pk == first.pk
    append_events(1)
    assert checkpoint_take().seq == 2
    assert AuditCheckpoint.objects.count() == 2


def test_it_takes_a_checkpoint_from_the_celery_task(append_events, key):
    append_events(2)
    assert take_checkpoint.apply().get() == 2


def test_it_generates_and_keeps_a_dev_key_when_none_is_configured(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY = ""
    settings.VAR_DIR = tmp_path
    first = signing_key()
    assert (tmp_path / "audit-dev-ed25519.key").stat().st_mode & 0o777 == 0o600
    assert signing_key().private_bytes_raw() == first.private_bytes_raw()


def test_it_refuses_a_malformed_key(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.AUDIT_SIGNING_KEY = "not base64!"
    with pytest.raises(ImproperlyConfigured, match="AUDIT_SIGNING_KEY") as caught:
        signing_key()
    assert "not base64" not in str(caught.value)


def test_it_exports_checkpoints_with_the_public_key(append_events, key, tmp_path, capsys):
    append_events(2)
    target = tmp_path / "checkpoints.json"
    call_command("audit_checkpoint", "--export", str(target))
    document = json.loads(target.read_text())
    assert document["format"] == "anim-gateway-audit-checkpoints"
    (entry,) = document["checkpoints"]
    assert entry["seq"] == 2
    assert entry["key_id"] in document["public_keys"]
    assert "Checkpoint #2" in capsys.readouterr().out


def test_it_detects_a_truncated_tail_against_an_exported_file(
    append_events, key, tmp_path, triggers_dropped
):
    append_events(5)
    target = tmp_path / "checkpoints.json"
    call_command("audit_checkpoint", "--export", str(target))
    # The superuser removes the tail, the head AND the stored checkpoints; the DPO's file
    # still holds the signed #5.
    execute("DELETE FROM audit_auditevent WHERE seq > 3")
    execute("DELETE FROM audit_auditcheckpoint")
    execute("DELETE FROM audit_audithead")
    call_command("verify_audit")  # the database alone looks fine
    with pytest.raises(CommandError, match=r"first invalid seq 4: .*truncated tail"):
        call_command("verify_audit", "--checkpoints", str(target))


def test_it_detects_a_forged_checkpoint_signature(append_events, key, triggers_dropped):
    append_events(2)
    checkpoint_take()
    forged = base64.b64encode(b"\0" * 64).decode()
    execute("UPDATE audit_auditcheckpoint SET signature = %s", [forged])
    with pytest.raises(CommandError, match=r"first invalid seq 2: .*invalid signature"):
        call_command("verify_audit")


def test_it_detects_a_checkpoint_signed_by_an_untrusted_key(append_events, key, settings):
    append_events(2)
    checkpoint_take()
    # The key rotates without listing the old public key as trusted.
    settings.AUDIT_SIGNING_KEY = base64.b64encode(b"\1" * 32).decode()
    with pytest.raises(CommandError, match="untrusted key"):
        call_command("verify_audit")


def test_it_trusts_a_retired_key_listed_in_settings(append_events, key, settings):
    append_events(2)
    old = checkpoint_take()
    settings.AUDIT_SIGNING_KEY = base64.b64encode(b"\1" * 32).decode()
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = [old.public_key]
    call_command("verify_audit")


def test_it_refuses_a_tampered_checkpoint_file(append_events, key, tmp_path):
    append_events(2)
    target = tmp_path / "checkpoints.json"
    call_command("audit_checkpoint", "--export", str(target))
    document = json.loads(target.read_text())
    document["checkpoints"][0]["seq"] = 1
    target.write_text(json.dumps(document))
    with pytest.raises(CommandError, match=r"first invalid seq 1: .*not validly signed"):
        call_command("verify_audit", "--checkpoints", str(target))


def test_it_reports_an_unreadable_checkpoint_file(db, tmp_path):
    target = tmp_path / "nope.json"
    target.write_text("{}")
    with pytest.raises(CommandError, match="Cannot read checkpoint file"):
        call_command("verify_audit", "--checkpoints", str(target))


def test_it_warns_in_production_without_a_signing_key(settings):
    from audit.checks import check_signing_key

    settings.AUDIT_SIGNING_KEY, settings.DEBUG = "", False
    assert [m.id for m in check_signing_key()] == ["audit.W001"]
    settings.DEBUG = True
    assert check_signing_key() == []


def test_it_reports_a_malformed_signing_key_as_an_error(settings):
    from audit.checks import check_signing_key

    settings.AUDIT_SIGNING_KEY = "c2hvcnQ="
    (message,) = check_signing_key()
    assert message.id == "audit.E001"
    assert "c2hvcnQ" not in message.msg


def test_it_accepts_a_good_signing_key(key):
    from audit.checks import check_signing_key

    assert check_signing_key() == []


@pytest.mark.parametrize(
    ("option", "value"), [("--chunk-size", "0"), ("--chunk-size", "-5"), ("--workers", "0")]
)
def test_verify_audit_refuses_a_count_below_1(append_events, option: str, value: str) -> None:
    append_events(2)
    with pytest.raises(CommandError, match=f"{option}: a whole number of 1 or more, not {value}"):
        call_command("verify_audit", option, value)


def _forged_file(path, *, seq: int, hash: str, key_id: str | None = None) -> None:
    """A checkpoint file in the export's format, signed by a key of the forger's own, which
    it carries in its public keys (under the id of a trusted key, when ``key_id`` says so)."""
    from audit import canonical
    from audit.checkpoints import EXPORT_FORMAT, key_id_of, message

    forger = Ed25519PrivateKey.generate()
    public = base64.b64encode(forger.public_key().public_bytes_raw()).decode()
    key_id = key_id or key_id_of(public)
    time = canonical.encode_time(timezone.now())
    signature = forger.sign(message(seq=seq, hash=hash, time=time))
    entry = {"seq": seq, "hash": hash, "time": time, "key_id": key_id}
    entry["signature"] = base64.b64encode(signature).decode()
    document = {"format": EXPORT_FORMAT, "version": 1, "exported_at": time}
    document |= {"public_keys": {key_id: public}, "checkpoints": [entry]}
    path.write_text(json.dumps(document))


def test_a_checkpoint_file_signed_by_its_own_key_is_not_trusted(append_events, key, tmp_path):
    # Whoever rewrote the log consistently would bring a file that vouches for it.
    rows = append_events(3)
    target = tmp_path / "checkpoints.json"
    _forged_file(target, seq=3, hash=rows[-1].hash)
    with pytest.raises(CommandError) as refused:
        call_command("verify_audit", "--checkpoints", str(target))
    assert str(refused.value).startswith(
        "TAMPERED: first invalid seq 3: checkpoint #3 (file checkpoints.json) is signed by an"
        " untrusted key"
    )
    assert "AUDIT_TRUSTED_PUBLIC_KEYS" in str(refused.value)


def test_a_checkpoint_file_cannot_swap_the_key_behind_a_trusted_key_id(
    append_events, key, tmp_path
):
    from audit.checkpoints import trusted_public_keys

    rows = append_events(3)
    (trusted_id,) = trusted_public_keys()
    target = tmp_path / "checkpoints.json"
    _forged_file(target, seq=3, hash=rows[-1].hash, key_id=trusted_id)
    with pytest.raises(CommandError, match=r"first invalid seq 3: .*not validly signed"):
        call_command("verify_audit", "--checkpoints", str(target))


def test_a_file_signed_by_a_retired_key_verifies_only_while_it_is_trusted(
    append_events, key, settings, tmp_path, triggers_dropped
):
    append_events(2)
    target = tmp_path / "checkpoints.json"
    call_command("audit_checkpoint", "--export", str(target))
    retired = json.loads(target.read_text())["public_keys"]
    execute("DELETE FROM audit_auditcheckpoint")  # only the file vouches for the log now
    settings.AUDIT_SIGNING_KEY = base64.b64encode(b"\1" * 32).decode()  # rotated
    with pytest.raises(CommandError, match=r"seq 2: .*\(file checkpoints.json\) .* untrusted key"):
        call_command("verify_audit", "--checkpoints", str(target))
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = list(retired.values())
    call_command("verify_audit", "--checkpoints", str(target))
