"""Reads of the consent app: the patient's consents, links, exclusions; the DPO's queue."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from guardian.models import UserObjectPermission

from consent.models import (
    CareRelationship,
    Consent,
    EmergencyAccess,
    Exclusion,
    Patient,
    Practitioner,
    ReviewState,
    SharedRecordChange,
    StudyVisibility,
)


def represents(user: AbstractBaseUser, patient: Patient) -> bool:
    """Whether this login holds legal representation of the patient now: a permission given
    to the user itself (through consent.services.representation, audited), never through a
    group, read fresh on every call."""
    return UserObjectPermission.objects.filter(
        user=user,
        permission__codename="act_for_patient",
        permission__content_type__app_label="consent",
        object_pk=str(patient.pk),
    ).exists()


def consent_list(*, patient: Patient) -> QuerySet[Consent]:
    """Every consent of the patient, revoked and expired ones included, newest first."""
    return Consent.objects.filter(patient=patient).prefetch_related("institutions")


def care_relationship_list(*, patient: Patient) -> QuerySet[CareRelationship]:
    return CareRelationship.objects.filter(patient=patient).select_related(
        "practitioner__user", "institution"
    )


def exclusion_list(*, patient: Patient) -> QuerySet[Exclusion]:
    return Exclusion.objects.filter(patient=patient).select_related("practitioner__user")


def record_history(*, patient: Patient) -> QuerySet[SharedRecordChange]:
    return SharedRecordChange.objects.filter(record__patient=patient)


def emergency_access_list(*, review: str | None = None) -> QuerySet[EmergencyAccess]:
    """The DPO's queue (``review="pending"``) or every emergency access, oldest first."""
    accesses = EmergencyAccess.objects.select_related(
        "practitioner__user", "institution", "patient"
    ).order_by("start", "pk")
    return accesses.filter(review=review) if review else accesses


def reviewed_emergency_list(*, before: int | None, limit: int) -> list[EmergencyAccess]:
    """Reviewed emergency accesses, newest first, a page of ``limit`` before the id ``before``."""
    accesses = EmergencyAccess.objects.select_related(
        "practitioner__user", "institution", "patient"
    ).exclude(review=ReviewState.PENDING)
    if before is not None:
        accesses = accesses.filter(pk__lt=before)
    return list(accesses.order_by("-pk")[:limit])


def emergency_access_patient(*, access_id: int) -> Patient | None:
    """The patient of an emergency access, or None when there is no such access."""
    access = EmergencyAccess.objects.select_related("patient").filter(pk=access_id).first()
    return access.patient if access else None


def username_taken(*, username: str, database: str = "default") -> bool:
    """Whether a user has this username, whatever its case: "Alice" is taken by "alice"
    (log-ins still match the username exactly)."""
    users = get_user_model()._default_manager.db_manager(database)
    return users.filter(username__iexact=username).exists()


def practitioner_get(*, username: str) -> Practitioner | None:
    return Practitioner.objects.select_related("user").filter(user__username=username).first()


def hidden_study_uids(*, patient: Patient) -> set[str]:
    """The UIDs of the studies the patient currently hides from other institutions."""
    rows = StudyVisibility.objects.filter(patient=patient, unhidden_at__isnull=True)
    return set(rows.values_list("study_uid", flat=True))
