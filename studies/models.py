"""Study, Series, Instance: the index of the stored DICOM objects, queried without opening files."""

from django.db import models
from django.utils import timezone

from consent.models import Institution, Patient


class Study(models.Model):
    """One imaging study, made at one (performing) institution; a StudyRef for the gate."""

    # Unique UIDs and keys are Meta constraints: a unique=True CharField gets a second,
    # LIKE-only index on PostgreSQL, and UIDs are only ever matched whole. Foreign keys
    # lead a composite index of Meta.indexes instead of an index of their own: every
    # index is written at every ingest.
    study_uid = models.CharField(max_length=64)
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="studies", db_index=False
    )
    # None while unreconciled: stored, visible to its own institution, never shared.
    patient = models.ForeignKey(
        Patient,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="studies",
        db_index=False,
    )
    dicom_patient_id = models.CharField(max_length=64, blank=True)
    issuer = models.CharField(max_length=64, blank=True)
    # The institution whose identifier space the PatientID belongs to (from the issuer).
    identifier_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    study_date = models.DateField(null=True, blank=True)
    study_time = models.CharField(max_length=32, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=255, blank=True)
    modalities = models.CharField(max_length=128, blank=True)
    series_count = models.PositiveIntegerField(default=0)
    instance_count = models.PositiveIntegerField(default=0)
    # Study-level attributes as DICOM JSON (PS3.18 F.2), what QIDO-RS returns.
    attributes = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "studies"
        constraints = [models.UniqueConstraint(fields=["study_uid"], name="study_uid_unique")]
        indexes = [
            # A patient's studies: study_qido_patient_page (migration 0002) leads with patient.
            models.Index(fields=["dicom_patient_id", "institution"], name="study_dicom_patient"),
            models.Index(fields=["institution", "-study_date"], name="study_institution_date"),
            models.Index(fields=["study_date"], name="study_date"),
            models.Index(fields=["accession_number"], name="study_accession"),
            models.Index(
                fields=["identifier_institution", "dicom_patient_id"],
                name="study_unreconciled",
                condition=models.Q(patient__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.study_uid

    def modality_list(self) -> list[str]:
        return [m for m in self.modalities.split("\\") if m]


class Series(models.Model):
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="series", db_index=False
    )
    series_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=255, blank=True)
    instance_count = models.PositiveIntegerField(default=0)
    attributes = models.JSONField(default=dict)
    # A small PNG of a representative frame, made by a Celery task after ingest.
    preview_key = models.CharField(max_length=255, blank=True)
    # The sweep of series without a preview (studies.tasks.previews_due) queues it again at
    # most PREVIEW_REQUEUES times (a worker killed decoding it would be killed again), and
    # leaves the series alone once this is set: no image in it, an image that does not
    # decode, its object lost, or the requeues spent.
    preview_requeues = models.SmallIntegerField(default=0, db_default=0)
    preview_given_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "series"
        constraints = [models.UniqueConstraint(fields=["series_uid"], name="series_uid_unique")]
        indexes = [
            models.Index(fields=["study", "series_number"], name="series_study_number"),
            # Small: only the series whose preview is still to be made.
            models.Index(
                fields=["id"],
                name="series_preview_due",
                condition=models.Q(preview_key="", preview_given_up_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.series_uid


# Which version of the header's DICOM JSON an instance's ``metadata`` is: 1 from before bulk
# data references (BulkDataURI markers, studies.bulkdata) were kept in it, 2 with them.
# ``manage.py backfill_bulkdata`` brings version 1 up to 2.
METADATA_WITHOUT_BULKDATA = 1
METADATA_CURRENT = 2


class Instance(models.Model):
    """One stored SOP instance: where its bytes are and what they hash to."""

    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="instances", db_index=False
    )
    series = models.ForeignKey(
        Series, on_delete=models.CASCADE, related_name="instances", db_index=False
    )
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=0)
    storage_key = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # Where the Pixel Data value starts in the stored file, so frames are served by seeking.
    pixel_data_offset = models.BigIntegerField(null=True, blank=True)
    pixel_data_length = models.BigIntegerField(null=True, blank=True)
    # DICOM JSON without bulk data: /metadata and QIDO never open the file.
    metadata = models.JSONField(default=dict)
    # Ingest writes the current version; the database default is for the rows stored before
    # the column (and for a process still running the previous code while this deploys).
    metadata_version = models.SmallIntegerField(
        default=METADATA_CURRENT, db_default=METADATA_WITHOUT_BULKDATA
    )
    created_at = models.DateTimeField(default=timezone.now)
    fixity_checked_at = models.DateTimeField(null=True, blank=True)
    fixity_ok = models.BooleanField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sop_instance_uid"], name="instance_sop_uid_unique"),
            models.UniqueConstraint(fields=["storage_key"], name="instance_storage_key_unique"),
        ]
        indexes = [
            models.Index(fields=["series", "instance_number"], name="instance_series_number"),
            models.Index(fields=["study"], name="instance_study"),
            models.Index(fields=["fixity_checked_at"], name="instance_fixity"),
        ]

    def __str__(self) -> str:
        return self.sop_instance_uid
