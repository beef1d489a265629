"""Revoke every live token of a user and end their portal sessions."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from anim_gateway.errors import ApplicationError
from consent.services.tokens import tokens_revoke


class Command(BaseCommand):
    help = "Revoke all of a user's tokens and end their portal sessions."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        try:
            revoked = tokens_revoke(username=username)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Revoked {revoked.tokens} token(s) of {username}.")
        if revoked.sessions is None:
            raise CommandError(
                f"No portal session was ended: SESSION_ENGINE {settings.SESSION_ENGINE} keeps "
                "sessions the server cannot end. Deactivate the account to log it out."
            )
        self.stdout.write(f"Ended {revoked.sessions} portal session(s) of {username}.")
