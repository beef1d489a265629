"""Models of the consent app, one module per concern."""

from .credentials import PasswordChangeRequired
from .parties import (
    Account,
    Affiliation,
    Institution,
    InstitutionAETitle,
    Patient,
    PatientIdentifier,
    Practitioner,
    Profession,
    RecordStatus,
    Role,
    SharedRecord,
    SharedRecordChange,
)
from .permissions import (
    CareKind,
    CareRelationship,
    Channel,
    Consent,
    EmergencyAccess,
    Exclusion,
    Notice,
    ReviewState,
    StudyVisibility,
)
from .tokens import ApiToken

__all__ = [
    "Account",
    "Affiliation",
    "ApiToken",
    "CareKind",
    "CareRelationship",
    "Channel",
    "Consent",
    "EmergencyAccess",
    "Exclusion",
    "Institution",
    "InstitutionAETitle",
    "Notice",
    "PasswordChangeRequired",
    "Patient",
    "PatientIdentifier",
    "Practitioner",
    "Profession",
    "RecordStatus",
    "ReviewState",
    "Role",
    "SharedRecord",
    "SharedRecordChange",
    "StudyVisibility",
]
