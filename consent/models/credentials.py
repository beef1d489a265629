"""Credentials' state beside Django's user: a password someone else set, to be changed."""

from django.conf import settings
from django.db import models


class PasswordChangeRequired(models.Model):
    """The user's password was set by an administrator (or a hospital system provisioning
    them): whoever set it knows it, so the user must choose their own at the next portal
    log-in before doing anything else. The row exists while the change is owed."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="password_change_required",
    )
    set_at = models.DateTimeField(auto_now=True)
    # Who set it, as the audit log names them (kept when that user is renamed or removed).
    set_by = models.CharField(max_length=150)

    def __str__(self) -> str:
        return f"password change required of user {self.user_id}"
