"""Add a member institution with its AE titles."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from anim_gateway.errors import ApplicationError
from consent.services.provisioning import institution_create


class Command(BaseCommand):
    help = "Create a member institution: CODE NAME --ae-title AE [--ae-title AE2]."

    def add_arguments(self, parser) -> None:
        parser.add_argument("code")
        parser.add_argument("name")
        parser.add_argument("--ae-title", action="append", default=[], dest="ae_titles")
        parser.add_argument("--issuer", default="", help="Default IssuerOfPatientID")
        parser.add_argument(
            "--peer-networks",
            default="",
            help="Addresses or CIDR networks of the PACS allowed to use these AE titles "
            "(comma-separated; default: loopback only)",
        )

    def handle(self, *args, code: str, name: str, ae_titles: list[str], issuer: str, **options):
        try:
            institution_create(
                code=code,
                name=name,
                ae_titles=ae_titles,
                issuer=issuer,
                peer_networks=options["peer_networks"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"Created institution {code}.")
