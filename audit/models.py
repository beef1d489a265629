"""The append-only audit table, its one-row head, signed checkpoints and forwarding state."""

from contextvars import ContextVar

from django.db import models
from django.db.models import Q

from audit.actions import Outcome
from audit.errors import AuditImmutable
from audit.fields import CanonicalJSONField


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk UPDATE and DELETE are refused here too; the database triggers are the real guard."""

    def update(self, **kwargs: object) -> int:
        raise AuditImmutable(f"{self.model.__name__} rows are append-only.")

    def delete(self) -> tuple[int, dict]:
        raise AuditImmutable(f"{self.model.__name__} rows are append-only.")

    update.queryset_only = True
    delete.queryset_only = True


class AppendOnlyModel(models.Model):
    """Rows are inserted once; saving an existing row or deleting one raises."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AuditImmutable(f"{type(self).__name__} rows cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict]:
        raise AuditImmutable(f"{type(self).__name__} rows cannot be deleted.")


def _filled(field: str) -> Q:
    return ~Q(**{field: ""})


# Set by audit.services while it inserts a chained row: the only way in through the ORM.
APPENDING: ContextVar[bool] = ContextVar("audit_appending", default=False)


class ChainedQuerySet(AppendOnlyQuerySet):
    """No create() or bulk_create() either: a row written beside append() breaks the chain."""

    def bulk_create(self, *args: object, **kwargs: object) -> list:
        raise AuditImmutable("Audit events are written by audit.services.append only.")

    bulk_create.queryset_only = True


class AuditEvent(AppendOnlyModel):
    """One audited event; `hash` chains it to the event before (audit.canonical)."""

    # The sequence number is the key: gapless, assigned under the head lock (audit.services).
    seq = models.BigIntegerField(primary_key=True)
    time = models.DateTimeField()
    version = models.PositiveSmallIntegerField()
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    reason_code = models.CharField(max_length=64, blank=True)
    basis = models.CharField(max_length=32, blank=True)
    basis_ids = CanonicalJSONField(default=dict, blank=True)
    actor_role = models.CharField(max_length=16, blank=True)
    actor_username = models.CharField(max_length=150, blank=True)
    actor_display = models.TextField(blank=True)
    actor_profession = models.CharField(max_length=64, blank=True)
    acting_institution = models.CharField(max_length=32, blank=True)
    on_behalf_of = models.CharField(max_length=32, blank=True)
    patient = models.CharField(max_length=32, blank=True)
    study_uid = models.CharField(max_length=64, blank=True)
    client_address = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)
    detail = CanonicalJSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = ChainedQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        # Each DPO filter is (column, seq): equality on the column, then the keyset walk by
        # seq descending reads the index in order. Partial where empty values are common.
        indexes = [
            models.Index(
                fields=["patient", "-seq"],
                name="audit_patient_seq",
                condition=_filled("patient"),
            ),
            models.Index(
                fields=["on_behalf_of", "-seq"],
                name="audit_behalf_seq",
                condition=_filled("on_behalf_of"),
            ),
            models.Index(
                fields=["actor_username", "-seq"],
                name="audit_actor_seq",
                condition=_filled("actor_username"),
            ),
            models.Index(
                fields=["acting_institution", "-seq"],
                name="audit_institution_seq",
                condition=_filled("acting_institution"),
            ),
            models.Index(fields=["action", "-seq"], name="audit_action_seq"),
            models.Index(fields=["outcome", "-seq"], name="audit_outcome_seq"),
            models.Index(
                fields=["basis", "-seq"],
                name="audit_basis_seq",
                condition=_filled("basis"),
            ),
            # (time, seq): a time window's first and last seq from the index alone.
            models.Index(fields=["time", "seq"], name="audit_time_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self._state.adding and not APPENDING.get():
            raise AuditImmutable("Audit events are written by audit.services.append only.")
        super().save(*args, **kwargs)


class AuditHead(models.Model):
    """One row: the last sequence number and hash. Locking it serialises appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_head_single_row")]

    def __str__(self) -> str:
        return f"head #{self.seq} {self.hash[:12]}"


class AuditCheckpoint(AppendOnlyModel):
    """A signed statement 'the chain had this hash at this sequence number at this time'."""

    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    time = models.DateTimeField()
    key_id = models.CharField(max_length=32)
    public_key = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["-seq", "-id"]
        indexes = [models.Index(fields=["seq"], name="audit_checkpoint_seq")]

    def __str__(self) -> str:
        return f"checkpoint #{self.seq} {self.hash[:12]}"


class ForwardState(models.Model):
    """Per destination: the last sequence number the ATNA repository acknowledged."""

    destination = models.CharField(max_length=255, unique=True)
    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.destination} acknowledged #{self.last_seq}"
