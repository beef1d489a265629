"""Passwords set by someone other than their user: owed a change at the next portal log-in."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import PasswordChangeRequired

# What the audit event of a password set for someone else says: never the password.
REQUIRED = {"password_change_required": True}


def password_change_require(*, user: AbstractBaseUser, acting: Actor) -> None:
    """Owe a change of the password ``acting`` just set for ``user`` (no audit: the caller's
    own event says it, with ``REQUIRED``)."""
    PasswordChangeRequired.objects.update_or_create(user=user, defaults={"set_by": acting.username})


@transaction.atomic
def password_set_for_user(*, user: AbstractBaseUser, acting: Actor, via: str) -> None:
    """Require the change of the password an administrator has just set for ``user``, and
    audit it as ``account.password_set`` (the user by id, how it was set; never a password).

    The requirement and its event are kept together or not at all.

    Parameters
    ----------
    via
        Where it was set: ``admin_add`` (the admin's "Add user"), ``admin_password`` (its
        password form), ``changepassword`` (the command).
    """
    password_change_require(user=user, acting=acting)
    detail = {"user_id": user.pk, "via": via, **REQUIRED}
    audit_event(acting, action=Action.ACCOUNT_PASSWORD_SET, detail=detail)


def password_change_owed(*, user: AbstractBaseUser) -> bool:
    """Whether the user must change a password someone else set before doing anything else."""
    return PasswordChangeRequired.objects.filter(user_id=user.pk).exists()


def password_change_settle(*, user: AbstractBaseUser) -> None:
    """The user chose their own password: nothing is owed any more."""
    PasswordChangeRequired.objects.filter(user_id=user.pk).delete()
