"""Django system checks for dangerous audit configurations (ids audit.E001, audit.W001)."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

_GENERATE = (
    'python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())" '
    "(any 32 random bytes are an Ed25519 private key); keep its public key with the DPO."
)


@checks.register(checks.Tags.security)
def check_signing_key(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    from audit.checkpoints import signing_key

    if not getattr(settings, "AUDIT_SIGNING_KEY", ""):
        if settings.DEBUG:
            return []
        return [
            checks.Warning(
                "Audit checkpoints are signed with a generated development key.",
                hint=f"Set AUDIT_SIGNING_KEY (or its _FILE variant); generate it with {_GENERATE}",
                id="audit.W001",
            )
        ]
    try:
        signing_key()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint=f"Generate one with {_GENERATE}", id="audit.E001")]
    return []
