"""Revoke every live token of a user."""

from django.core.management.base import BaseCommand, CommandError

from anim_gateway.errors import ApplicationError
from consent.services.tokens import tokens_revoke


class Command(BaseCommand):
    help = "Revoke all of a user's tokens."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        try:
            count = tokens_revoke(username=username)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Revoked {count} token(s) of {username}.")
