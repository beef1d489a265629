"""One Actor per request: who is acting, in which role, for which institution or patient."""

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist

from consent.models import Account, Institution, Patient, Practitioner, Role


@dataclass(frozen=True, kw_only=True)
class Actor:
    role: str
    user: AbstractBaseUser | None = None
    username: str = ""
    display_name: str = ""
    practitioner: Practitioner | None = None
    institution: Institution | None = None
    # For a patient: the patient acted on (themself, or the one they legally represent).
    patient: Patient | None = None
    # Set when a legal representative acts: the representative's own patient row.
    representative: Patient | None = None
    client_address: str = ""
    request_id: str = ""
    channel: str = "api"
    extra: dict = field(default_factory=dict)

    @property
    def profession(self) -> str:
        return self.practitioner.profession if self.practitioner else ""

    @property
    def institution_code(self) -> str:
        return self.institution.code if self.institution else ""

    @property
    def patient_national_id(self) -> str:
        return self.patient.national_id if self.patient else ""

    @property
    def person_name(self) -> str:
        """The logged-in person's own name, to show them on their own pages only.

        Never audited or logged (audit_fields keep a patient's username): for a legal
        representative, their own name, not that of the patient they act for.
        """
        patient = self.representative or self.patient
        if patient is not None:
            name = f"{patient.given_name} {patient.family_name}".strip()
        elif self.practitioner is not None:
            name = self.practitioner.display_name
        elif self.user is not None:
            name = self.user.get_full_name()
        else:
            name = self.display_name
        return name or self.username

    def audit_fields(self) -> dict:
        """The actor part of an audit event, as it is now (the log must stand alone later)."""
        return {
            "actor_role": self.role,
            "actor_username": self.username,
            "actor_display": self.display_name,
            "actor_profession": self.profession,
            "acting_institution": self.institution_code,
            "on_behalf_of": self.patient_national_id if self.representative else "",
            "client_address": self.client_address,
            "request_id": self.request_id,
        }


def _related(user: AbstractBaseUser, name: str) -> Practitioner | Patient | Account | None:
    try:
        return getattr(user, name)
    except ObjectDoesNotExist:
        return None


def role_of(user: AbstractBaseUser) -> str | None:
    """The one role of a user, or None for a user with no role (who may do nothing)."""
    if user.is_superuser:
        return Role.ADMIN
    if _related(user, "practitioner"):
        return Role.PRACTITIONER
    if _related(user, "patient"):
        return Role.PATIENT
    account = _related(user, "account")
    return account.role if account else None


def actor_for(
    user: AbstractBaseUser,
    *,
    institution: Institution | None,
    client_address: str = "",
    request_id: str = "",
    channel: str = "api",
) -> Actor | None:
    """Resolve the Actor for an authenticated user and the token's (or session's) institution."""
    role = role_of(user)
    common = {
        "user": user,
        "username": user.get_username(),
        "client_address": client_address,
        "request_id": request_id,
        "channel": channel,
    }
    if role == Role.PRACTITIONER:
        practitioner = user.practitioner
        return Actor(
            role=role,
            practitioner=practitioner,
            institution=institution,
            display_name=practitioner.display_name,
            **common,
        )
    if role == Role.PATIENT:
        # The username, not the name: audit rows and logs never carry patient names.
        return Actor(role=role, patient=user.patient, display_name=user.get_username(), **common)
    if role == Role.SYSTEM:
        return Actor(
            role=role, institution=user.account.institution, display_name=user.username, **common
        )
    if role in (Role.DPO, Role.ADMIN):
        return Actor(role=role, display_name=user.get_full_name() or user.username, **common)
    return None
