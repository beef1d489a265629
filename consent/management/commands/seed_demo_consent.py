"""Demo consents and care relationships (called by seed_demo); idempotent."""

import datetime

from django.core.management.base import BaseCommand
from django.db import transaction

from consent import national_id
from consent.actors import Actor
from consent.models import CareRelationship, Consent, Patient, Practitioner, RecordStatus, Role
from consent.services import care, consents

SEED_ACTOR = Actor(
    role=Role.ADMIN, username="seed_demo", display_name="Demo seeding", channel="cli"
)
XAVIER = national_id.make(datetime.date(1980, 5, 17), 1)
ZOE = national_id.make(datetime.date(1975, 2, 28), 3)
# (practitioner, patient, kind): who cares for whom in the demo.
CARE = [("alice", XAVIER, "admission"), ("charlie", ZOE, "referral")]


class Command(BaseCommand):
    help = "Xavier consents to all members; Yvonne gives none; Zoé's record is closed."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        patients = {p.national_id: p for p in Patient.objects.filter(national_id__in=[XAVIER, ZOE])}
        xavier, zoe = patients.get(XAVIER), patients.get(ZOE)
        if xavier and not Consent.objects.filter(patient=xavier, revoked_at__isnull=True).exists():
            consents.consent_grant(
                actor=SEED_ACTOR, patient=xavier, institution_codes=None, allow_emergency=True
            )
        if zoe and zoe.record.status != RecordStatus.CLOSED:
            consents.record_set_status(actor=SEED_ACTOR, patient=zoe, status=RecordStatus.CLOSED)
        for username, number, kind in CARE:
            practitioner = Practitioner.objects.filter(user__username=username).first()
            patient = patients.get(number)
            if practitioner is None or patient is None:
                continue
            if CareRelationship.objects.filter(practitioner=practitioner, patient=patient).exists():
                continue
            care.care_relationship_assert(
                actor=SEED_ACTOR, patient=patient, practitioner=practitioner, kind=kind
            )
        self.stdout.write("Consent demo: xavier consents (all members), yvonne none, zoe closed.")
