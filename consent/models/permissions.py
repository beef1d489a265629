"""What lets a practitioner see a patient's studies: consents, care links, exclusions, emergencies.

History is kept by never deleting and never editing a fact in place. A revocation, an end,
a removal or an unhide is recorded once, in columns that start empty (``revoked_*``,
``ended_*``...), by a service that refuses to set them a second time; a later change of
mind is a new row. We chose these set-once columns over separate event rows because every
decision reads them: one row answers "was it valid at t?" without a join, and the audit log
already holds the full sequence of who did what.
"""

import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from consent.models.parties import Institution, Patient, Practitioner


class Channel(models.TextChoices):
    API = "api", "REST API"
    PORTAL = "portal", "Patient portal"
    CLI = "cli", "Command line"
    ADMIN = "admin", "Administration"
    SYSTEM = "system", "Scheduled task"


def _active(start: datetime.datetime, *ends: datetime.datetime | None, at: datetime.datetime):
    # Validity periods include their start and exclude their end (DESIGN.md).
    return start <= at and all(end is None or at < end for end in ends)


class Consent(models.Model):
    """The patient's consent to share their studies with some (or all) member institutions."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="consents")
    all_members = models.BooleanField(default=False)
    institutions = models.ManyToManyField(Institution, blank=True, related_name="+")
    valid_from = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField(null=True, blank=True)
    allow_emergency = models.BooleanField(default=True)
    granted_at = models.DateTimeField(default=timezone.now)
    granted_by = models.CharField(max_length=150)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.API)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    revoke_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    # When the expiry task noticed valid_until had passed (notification only; never a rule input).
    expiry_recorded_at = models.DateTimeField(null=True, blank=True)
    # When the patient was told of the expiry (or found to have no address); null: still due,
    # or given up after NOTICE_MAX_ATTEMPTS (consent.services.notices).
    expiry_notified_at = models.DateTimeField(null=True, blank=True)
    expiry_notice_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    expiry_notice_next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-granted_at", "-pk"]
        indexes = [
            models.Index(fields=["patient", "revoked_at"], name="consent_by_patient"),
            models.Index(
                fields=["expiry_recorded_at"],
                name="consent_expiry_notice_due",
                condition=Q(expiry_recorded_at__isnull=False, expiry_notified_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="consent_revocation_complete",
                condition=Q(revoked_at__isnull=True) | ~Q(revoked_by=""),
            ),
            models.CheckConstraint(
                name="consent_period_ordered",
                condition=Q(valid_until__isnull=True) | Q(valid_until__gt=models.F("valid_from")),
            ),
        ]

    def is_active(self, *, at: datetime.datetime) -> bool:
        return _active(self.valid_from, self.valid_until, self.revoked_at, at=at)

    def status(self, *, at: datetime.datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= at:
            return "revoked"
        if self.valid_until is not None and self.valid_until <= at:
            return "expired"
        if at < self.valid_from:
            return "pending"
        return "active"


class CareKind(models.TextChoices):
    ADMISSION = "admission", "Admission (asserted by a hospital)"
    REFERRAL = "referral", "Referral (asserted by a hospital)"
    DECLARED = "declared", "Declared by the patient"


class CareRelationship(models.Model):
    """A therapeutic link between a practitioner and a patient, for a limited time."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="care_links")
    practitioner = models.ForeignKey(
        Practitioner, on_delete=models.PROTECT, related_name="care_links"
    )
    kind = models.CharField(max_length=16, choices=CareKind.choices)
    # The institution that asserted it (admission, referral); empty when the patient declared it.
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    start = models.DateTimeField(default=timezone.now)
    end = models.DateTimeField()
    asserted_at = models.DateTimeField(default=timezone.now)
    asserted_by = models.CharField(max_length=150)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.API)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True)
    end_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    expiry_recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-start", "-pk"]
        indexes = [
            models.Index(fields=["practitioner", "patient"], name="care_practitioner_patient"),
            models.Index(fields=["patient"], name="care_patient"),
        ]
        constraints = [
            models.CheckConstraint(
                name="care_period_ordered", condition=Q(end__gt=models.F("start"))
            ),
            models.CheckConstraint(
                name="care_end_complete", condition=Q(ended_at__isnull=True) | ~Q(ended_by="")
            ),
        ]

    def is_active(self, *, at: datetime.datetime) -> bool:
        return _active(self.start, self.end, self.ended_at, at=at)

    @property
    def effective_end(self) -> datetime.datetime:
        return min(self.end, self.ended_at) if self.ended_at else self.end


class Exclusion(models.Model):
    """The patient blocks one practitioner from their studies (rule 3), until removed."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="exclusions")
    practitioner = models.ForeignKey(Practitioner, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.API)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.CharField(max_length=150, blank=True)
    remove_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["patient", "practitioner"], name="exclusion_lookup")]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "practitioner"],
                condition=Q(removed_at__isnull=True),
                name="exclusion_one_open",
            )
        ]

    def is_active(self, *, at: datetime.datetime) -> bool:
        return _active(self.created_at, self.removed_at, at=at)


class StudyVisibility(models.Model):
    """The patient hides one study from other institutions (rule 5), until unhidden."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="hidden_studies")
    study_uid = models.CharField(max_length=64)
    hidden_at = models.DateTimeField(default=timezone.now)
    hidden_by = models.CharField(max_length=150)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.API)
    unhidden_at = models.DateTimeField(null=True, blank=True)
    unhidden_by = models.CharField(max_length=150, blank=True)
    unhide_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)

    class Meta:
        verbose_name_plural = "study visibilities"
        ordering = ["-hidden_at", "-pk"]
        indexes = [models.Index(fields=["patient", "study_uid"], name="visibility_lookup")]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "study_uid"],
                condition=Q(unhidden_at__isnull=True),
                name="visibility_one_open",
            )
        ]


class ReviewState(models.TextChoices):
    PENDING = "pending", "Awaiting review"
    JUSTIFIED = "justified", "Justified"
    UNJUSTIFIED = "unjustified", "Unjustified"


class Notice(models.TextChoices):
    """How the patient was told (an empty value: not yet, it is still due)."""

    SENT = "sent", "E-mailed"
    NO_ADDRESS = "no_address", "No e-mail address"
    # Declared before notices were recorded: whether the message got through is not known.
    UNRECORDED = "unrecorded", "Not recorded"
    # Refused for this recipient NOTICE_MAX_ATTEMPTS times (a mistyped address, say).
    FAILED = "failed", "Could not be delivered"


class EmergencyAccess(models.Model):
    """Break the glass: one practitioner, one patient, a written reason, a few hours."""

    practitioner = models.ForeignKey(Practitioner, on_delete=models.PROTECT, related_name="+")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="emergencies")
    reason = models.TextField()
    start = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.API)
    review = models.CharField(
        max_length=16, choices=ReviewState.choices, default=ReviewState.PENDING
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.CharField(max_length=150, blank=True)
    review_note = models.TextField(blank=True)
    # Set once, when the message was handed to the mail backend (or the patient was found to
    # have no address, or it was given up as failed): until then the sweep sends it
    # (consent.services.notices). The database keeps the defaults of the NOT NULL columns
    # so that a process of the previous release can still insert during a rolling deploy.
    patient_notified_at = models.DateTimeField(null=True, blank=True)
    patient_notice = models.CharField(
        max_length=16, choices=Notice.choices, blank=True, default="", db_default=""
    )
    patient_notice_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    # Claimed until then (a lease), or failed for this recipient and retried from then.
    patient_notice_next_attempt_at = models.DateTimeField(null=True, blank=True)
    expiry_recorded_at = models.DateTimeField(null=True, blank=True)
    expiry_notified_at = models.DateTimeField(null=True, blank=True)
    expiry_notice_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    expiry_notice_next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-start", "-pk"]
        indexes = [
            models.Index(
                fields=["practitioner", "patient", "institution"], name="emergency_lookup"
            ),
            models.Index(fields=["review", "start"], name="emergency_review"),
            models.Index(
                fields=["start"],
                name="emergency_notice_due",
                condition=Q(patient_notified_at__isnull=True),
            ),
            models.Index(
                fields=["expiry_recorded_at"],
                name="emergency_expiry_notice_due",
                condition=Q(expiry_recorded_at__isnull=False, expiry_notified_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="emergency_period_ordered", condition=Q(expires_at__gt=models.F("start"))
            ),
            models.CheckConstraint(
                name="emergency_review_complete",
                condition=Q(review="pending") | (Q(reviewed_at__isnull=False) & ~Q(reviewed_by="")),
            ),
            models.CheckConstraint(
                name="emergency_notice_complete",
                condition=Q(patient_notified_at__isnull=True, patient_notice="")
                | (Q(patient_notified_at__isnull=False) & ~Q(patient_notice="")),
            ),
        ]

    def is_active(self, *, at: datetime.datetime) -> bool:
        return _active(self.start, self.expires_at, at=at)
