"""Models of the consent app, one module per concern."""

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
from .tokens import ApiToken

__all__ = [
    "Account",
    "Affiliation",
    "ApiToken",
    "Institution",
    "InstitutionAETitle",
    "Patient",
    "PatientIdentifier",
    "Practitioner",
    "Profession",
    "RecordStatus",
    "Role",
    "SharedRecord",
    "SharedRecordChange",
]
