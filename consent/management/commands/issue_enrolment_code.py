"""Print a user's one-time code to set up an authenticator app, once; only its digest is kept."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from anim_gateway.enrolment import enrolment_code_expiry, enrolment_code_issue
from anim_gateway.errors import ApplicationError
from consent.actors import Actor
from consent.models import Role

CLI_ACTOR = Actor(
    role=Role.ADMIN,
    username="cli:issue_enrolment_code",
    display_name="issue_enrolment_code",
    channel="cli",
)


class Command(BaseCommand):
    help = (
        "Issue a one-time enrolment code (printed once on stdout) without which a practitioner, "
        "the DPO or an administrator cannot set up an authenticator app. It replaces the "
        "user's earlier unused code, and expires after ENROLMENT_CODE_HOURS."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--reset-authenticator",
            action="store_true",
            help="Remove the user's authenticator app too (a lost phone); the code sets up anew.",
        )

    def handle(self, *args, username: str, reset_authenticator: bool, **options) -> None:
        try:
            code = enrolment_code_issue(
                username=username, reset_authenticator=reset_authenticator, acting=CLI_ACTOR
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(code)
        # stdout holds the code alone (scripts read it); the notes go to stderr.
        expires = timezone.localtime(enrolment_code_expiry(username))  # TIME_ZONE's local time
        # Another way than the password's: whoever reads both could enrol their own phone.
        self.stderr.write(
            f"One use, for {username}'s first log-in, until {expires:%Y-%m-%d %H:%M %Z}. Hand "
            "it over in person or by phone, never with the password."
        )
