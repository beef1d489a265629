"""Idempotent demo data: the four hospitals, practitioners, a DPO, patients covering the cases."""

import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.enrolment import enrolment_code_issue
from consent import national_id
from consent.actors import Actor
from consent.models import Account, Institution, Patient, Practitioner, Role
from consent.services import provisioning

DEMO_PASSWORD = "demo-password-123"  # noqa: S105  (demo only; printed to the console)

INSTITUTIONS = [
    ("CHL", "Centre Hospitalier de Luxembourg"),
    ("CHDN", "Centre Hospitalier du Nord"),
    ("CHEM", "Centre Hospitalier Emile Mayrisch"),
    ("HRS", "Hôpitaux Robert Schuman"),
]
PRACTITIONERS = [
    ("alice", "Dr Alice Arend", "physician", ["CHL"]),
    ("bob", "Dr Bob Becker", "physician", ["CHEM"]),
    ("charlie", "Dr Charlie Clement", "radiologist", ["HRS", "CHL"]),
    ("nina", "Nina Nilles", "nurse", ["CHDN"]),
]
# (username, given name, birth date, sequence, identifiers, case)
PATIENTS = [
    ("xavier", "Xavier", datetime.date(1980, 5, 17), 1, [("CHEM", "CHEM-0001")], "consent"),
    ("yvonne", "Yvonne", datetime.date(1992, 11, 3), 2, [("CHL", "CHL-0002")], "no-consent"),
    ("zoe", "Zoé", datetime.date(1975, 2, 28), 3, [("HRS", "HRS-0003")], "closed"),
]
ACCOUNTS = [("dora", Role.DPO, None), ("chl-pacs", Role.SYSTEM, "CHL")]
# The log-ins that set up an authenticator app at their first log-in, with an enrolment code.
TOTP_USERNAMES = [p[0] for p in PRACTITIONERS] + ["dora", "admin"]

SEED_ACTOR = Actor(
    role=Role.ADMIN, username="seed_demo", display_name="Demo seeding", channel="cli"
)


class Command(BaseCommand):
    help = "Create (or complete) the demo data and print the demo log-ins."

    # Not one transaction: each service is atomic, and the gate (studies ingest) refuses to run
    # inside a caller's transaction. Idempotence makes a re-run complete an interrupted one.
    def handle(self, *args, **options) -> None:
        # The demo has known passwords (and an administrator): never on a production instance.
        if not settings.DEBUG:
            raise CommandError("seed_demo creates accounts with known passwords: DEBUG=True only.")
        self._institutions()
        self._practitioners()
        self._accounts()
        self._patients()
        self._passwords()
        self._extras()
        self._print_logins(self._enrolment_codes())

    def _institutions(self) -> None:
        for code, name in INSTITUTIONS:
            if not Institution.objects.filter(code=code).exists():
                provisioning.institution_create(code=code, name=name, ae_titles=[f"{code}_PACS"])

    def _practitioners(self) -> None:
        for username, name, profession, codes in PRACTITIONERS:
            if not Practitioner.objects.filter(user__username=username).exists():
                provisioning.practitioner_create(
                    actor=SEED_ACTOR,
                    username=username,
                    display_name=name,
                    profession=profession,
                    license_number=f"LU-{username.upper()}",
                    institution_codes=codes,
                )

    def _accounts(self) -> None:
        for username, role, code in ACCOUNTS:
            if not Account.objects.filter(user__username=username).exists():
                provisioning.account_create(
                    actor=SEED_ACTOR, username=username, role=role, institution_code=code
                )

    def _patients(self) -> None:
        for username, given, birth, seq, identifiers, _case in PATIENTS:
            number = national_id.make(birth, seq)
            if Patient.objects.filter(national_id=number).exists():
                continue
            provisioning.patient_create(
                actor=SEED_ACTOR,
                national_id_value=number,
                family_name="Demo",
                given_name=given,
                birth_date=birth,
                sex="O",
                identifiers=[{"institution": i, "value": v} for i, v in identifiers],
                username=username,
            )

    def _passwords(self) -> None:
        users = get_user_model().objects
        names = [p[0] for p in PRACTITIONERS] + [p[0] for p in PATIENTS] + [a[0] for a in ACCOUNTS]
        for user in users.filter(username__in=names):
            if not user.has_usable_password():
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
        if not users.filter(username="admin").exists():
            users.create_superuser("admin", password=DEMO_PASSWORD)

    def _extras(self) -> None:
        """Consents, care relationships and studies, from the apps that define them."""
        available = get_commands()
        for command in ("seed_demo_consent", "seed_demo_studies"):
            if command in available:
                call_command(command, stdout=self.stdout)

    def _enrolment_codes(self) -> dict[str, str]:
        """A fresh code for each demo log-in still to set up its app (an earlier one is gone:
        only its digest was kept); those already set up keep their app."""
        codes = {}
        for username in TOTP_USERNAMES:
            if not TOTPDevice.objects.filter(user__username=username, confirmed=True).exists():
                codes[username] = enrolment_code_issue(username=username, acting=SEED_ACTOR)
        return codes

    def _print_logins(self, enrolment: dict[str, str]) -> None:
        def second_factor(username: str) -> str:
            code = enrolment.get(username)
            return f"enrolment code {code}" if code else "authenticator app set up"

        self.stdout.write(f"Demo log-ins (password for all: {DEMO_PASSWORD}):")
        for username, name, profession, codes in PRACTITIONERS:
            where = f"{name} ({profession}) at {', '.join(codes)}"
            self.stdout.write(f"  {username:10} {where:48} {second_factor(username)}")
        for username, _given, birth, seq, _ids, case in PATIENTS:
            number = national_id.make(birth, seq)
            self.stdout.write(f"  {username:10} patient {number} ({case})")
        self.stdout.write(f"  dora       {'Data Protection Officer':48} {second_factor('dora')}")
        self.stdout.write("  chl-pacs   CHL hospital system")
        admin = "administrator: log in at /, then /admin/"
        self.stdout.write(f"  admin      {admin:48} {second_factor('admin')}")
        self.stdout.write(
            "First log-in with an enrolment code: scan the QR code with an authenticator app, "
            "enter the enrolment code and the app's 6-digit code. Each code serves once; a new "
            "run of seed_demo issues new ones (python manage.py issue_enrolment_code USER)."
        )
        self.stdout.write("Tokens: python manage.py issue_token alice --institution CHL")
