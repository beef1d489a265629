"""The parties: institutions, practitioners and their affiliations, patients and their records."""

import datetime
import ipaddress

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from consent import national_id

institution_code = RegexValidator(r"^[A-Z0-9]{2,16}$", "2 to 16 capital letters or digits.")
ae_title = RegexValidator(r"^[A-Z0-9_\-]{1,16}$", "1 to 16 capital letters, digits, _ or -.")


def validate_national_id(value: str) -> None:
    from django.core.exceptions import ValidationError
    from stdnum.exceptions import ValidationError as StdnumError

    try:
        national_id.validate(value)
    except StdnumError as exc:
        raise ValidationError(str(exc)) from exc


def parse_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(item.strip(), strict=False)
        for item in value.split(",")
        if item.strip()
    ]


def validate_networks(value: str) -> None:
    from django.core.exceptions import ValidationError

    try:
        parse_networks(value)
    except ValueError as exc:
        raise ValidationError(f"Not an address or network: {exc}") from exc


class Role(models.TextChoices):
    PRACTITIONER = "practitioner", "Practitioner"
    PATIENT = "patient", "Patient"
    DPO = "dpo", "Data Protection Officer"
    SYSTEM = "system", "Hospital system"
    ADMIN = "admin", "Administrator"


class Profession(models.TextChoices):
    PHYSICIAN = "physician", "Physician"
    RADIOLOGIST = "radiologist", "Radiologist"
    DENTIST = "dentist", "Dentist"
    NURSE = "nurse", "Nurse"
    TECHNOLOGIST = "technologist", "Radiographer"


class RecordStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed"


class Institution(models.Model):
    code = models.CharField(max_length=16, unique=True, validators=[institution_code])
    name = models.CharField(max_length=200)
    # IssuerOfPatientID assumed for this institution's studies when a dataset has none.
    default_issuer = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class InstitutionAETitle(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="ae_titles")
    ae_title = models.CharField(max_length=16, unique=True, validators=[ae_title])
    # An AE title is no credential (anyone can send any title): associations are accepted
    # only from these addresses. Empty: loopback only, so nothing is open by default.
    peer_networks = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_networks],
        help_text="Comma-separated addresses or networks (CIDR) of the hospital's PACS.",
    )

    class Meta:
        verbose_name = "AE title"

    def __str__(self) -> str:
        return self.ae_title

    def admits(self, address: str) -> bool:
        """Whether a DICOM association from this address may use this AE title."""
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        if not self.peer_networks.strip():
            return peer.is_loopback
        return any(peer in network for network in parse_networks(self.peer_networks))


class Account(models.Model):
    """The role of a login that is neither a practitioner nor a patient (DPO, hospital system)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    role = models.CharField(max_length=16, choices=Role.choices)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="account_system_has_institution",
                condition=~models.Q(role="system") | models.Q(institution__isnull=False),
            )
        ]


class Practitioner(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    display_name = models.CharField(max_length=200)
    profession = models.CharField(max_length=32, choices=Profession.choices)
    license_number = models.CharField(max_length=32, unique=True)
    institutions = models.ManyToManyField(Institution, through="Affiliation")

    def __str__(self) -> str:
        return self.display_name


class Affiliation(models.Model):
    practitioner = models.ForeignKey(Practitioner, on_delete=models.CASCADE)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT)
    start = models.DateTimeField(default=timezone.now)
    end = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["practitioner", "institution"], name="affiliation_lookup")]

    def is_active(self, *, at: datetime.datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


class Patient(models.Model):
    national_id = models.CharField(max_length=13, unique=True, validators=[validate_national_id])
    family_name = models.CharField(max_length=200)
    given_name = models.CharField(max_length=200)
    birth_date = models.DateField()
    sex = models.CharField(max_length=1, choices=[("F", "Female"), ("M", "Male"), ("O", "Other")])
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )

    class Meta:
        permissions = [("act_for_patient", "May act as legal representative of the patient")]

    def __str__(self) -> str:
        # Never the name: this string may end up in logs.
        return f"Patient {self.pk}"


class PatientIdentifier(models.Model):
    """A hospital's local identifier (MRN) for a patient, the key of study reconciliation."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="identifiers")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT)
    value = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "value"], name="patient_identifier_unique"
            )
        ]


class SharedRecord(models.Model):
    """The DSP: the patient's shared care record; sharing needs it active."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="record")
    status = models.CharField(max_length=8, choices=RecordStatus.choices, default="active")
    changed_at = models.DateTimeField(default=timezone.now)

    def is_active(self) -> bool:
        return self.status == RecordStatus.ACTIVE


class SharedRecordChange(models.Model):
    """History of the record's status: who changed it, when, through which channel."""

    record = models.ForeignKey(SharedRecord, on_delete=models.CASCADE, related_name="changes")
    status = models.CharField(max_length=8, choices=RecordStatus.choices)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=150)
    channel = models.CharField(max_length=16, default="api")

    class Meta:
        ordering = ["changed_at", "pk"]
