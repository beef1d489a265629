"""Print a new bearer token for a user, once; only its hash is stored."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from anim_gateway.errors import ApplicationError
from consent.services.tokens import token_issue


class Command(BaseCommand):
    help = "Issue a bearer token (printed once on stdout)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--institution", help="Acting institution code (practitioners, systems)"
        )
        parser.add_argument("--days", type=int, default=settings.TOKEN_DEFAULT_DAYS)

    def handle(self, *args, username: str, institution: str | None, days: int, **options) -> None:
        try:
            raw = token_issue(username=username, institution_code=institution, days=days)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(raw)
