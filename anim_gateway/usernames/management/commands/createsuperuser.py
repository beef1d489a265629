"""createsuperuser, refusing a username that differs from a taken one only in case."""

from django.contrib.auth.management.commands import createsuperuser
from django.core.management.base import CommandError
from django.db import IntegrityError

from consent.selectors import username_taken


class Command(createsuperuser.Command):
    def _validate_username(self, username, verbose_field_name, database) -> str | None:
        """Django's checks, and "Alice" is taken when "alice" is: people tell users apart by
        name in the portal and the audit log, whatever the case."""
        error = super()._validate_username(username, verbose_field_name, database)
        if error is None and username and username_taken(username=username, database=database):
            return f"Error: That {verbose_field_name} is already taken."
        return error

    def handle(self, *args, **options) -> None:
        """Django's, and a username created meanwhile by someone else (the database's unique
        index on its lower case refuses the insert) is told as the check tells it."""
        # No transaction around it: the prompts would hold it (SQLite's IMMEDIATE ones lock
        # out every writer meanwhile); the user's one INSERT fails alone.
        try:
            super().handle(*args, **options)
        except IntegrityError as exc:
            raise CommandError("That username is already taken.") from exc
