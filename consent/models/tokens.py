"""Bearer tokens: only a SHA-256 hash is stored; bound to an institution when the role needs it."""

import datetime
import hashlib

from django.conf import settings
from django.db import models


def hash_token(raw: str) -> str:
    # Tokens carry 256 random bits, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    institution = models.ForeignKey(
        "consent.Institution", on_delete=models.PROTECT, null=True, blank=True
    )
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    def is_usable(self, *, at: datetime.datetime) -> bool:
        return self.revoked_at is None and at < self.expires_at
