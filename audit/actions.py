"""Namespaced audit action codes, their outcomes, and the one place they become sentences."""

from django.db import models


class Action(models.TextChoices):
    # Codes are stable: once written to the log they are never renamed (STYLE.md 10).
    AUTH_LOGIN = "auth.login", "Signed in to the portal"
    AUTH_LOGIN_FAILED = "auth.login_failed", "Failed to sign in to the portal"
    AUTH_TOKEN_ISSUE = "auth.token_issue", "Issued an access token"
    AUTH_TOKEN_REVOKE = "auth.token_revoke", "Revoked access tokens"
    ACCOUNT_CREATE = "account.create", "Created an account"
    INSTITUTION_CREATE = "institution.create", "Created a member institution"
    PRACTITIONER_CREATE = "practitioner.create", "Registered a practitioner"
    PATIENT_CREATE = "patient.create", "Registered the patient"
    PATIENT_IDENTIFIER_ADD = (
        "patient.identifier_add",
        "Added a hospital identifier to the patient",
    )
    REPRESENTATION_GRANT = (
        "representation.grant",
        "Granted a legal representative the right to act for the patient",
    )
    REPRESENTATION_REVOKE = (
        "representation.revoke",
        "Ended a legal representative's right to act for the patient",
    )
    RECORD_VIEW = "record.view", "Viewed the shared record status"
    RECORD_CLOSE = "record.close", "Closed the shared record"
    RECORD_REOPEN = "record.reopen", "Reopened the shared record"
    CONSENT_GRANT = "consent.grant", "Granted consent to sharing"
    CONSENT_REVOKE = "consent.revoke", "Revoked consent to sharing"
    CONSENT_EXPIRE = "consent.expire", "Consent to sharing expired"
    CONSENT_LIST = "consent.list", "Listed the consents"
    CARE_ASSERT = "care.assert", "A hospital asserted a care relationship"
    CARE_DECLARE = "care.declare", "The patient declared a care relationship"
    CARE_END = "care.end", "Ended a care relationship"
    CARE_EXPIRE = "care.expire", "A care relationship expired"
    EXCLUSION_ADD = "exclusion.add", "Blocked a practitioner"
    EXCLUSION_REMOVE = "exclusion.remove", "Unblocked a practitioner"
    STUDY_HIDE = "study.hide", "Hid a study"
    STUDY_UNHIDE = "study.unhide", "Made a hidden study visible again"
    EMERGENCY_DECLARE = "emergency.declare", "Declared an emergency access"
    EMERGENCY_EXPIRE = "emergency.expire", "An emergency access expired"
    EMERGENCY_REVIEW = "emergency.review", "Reviewed an emergency access"
    EMERGENCY_LIST = "emergency.list", "Listed emergency accesses"
    PATIENT_STUDIES_LIST = "patient.studies_list", "Listed the patient's studies"
    STUDY_SEARCH = "study.search", "Searched for studies"
    STUDY_RETRIEVE = "study.retrieve", "Opened images"
    STUDY_METADATA = "study.metadata", "Read study metadata"
    STUDY_RENDER = "study.render", "Viewed a rendered image"
    STUDY_STORE = "study.store", "Stored images"
    STUDY_STORE_CONFLICT = (
        "study.store_conflict",
        "Refused images that conflict with stored ones",
    )
    STUDY_RECONCILE = "study.reconcile", "Linked a study to the patient's record"
    AUDIT_SEARCH = "audit.search", "Searched the audit log"
    AUDIT_VERIFY = "audit.verify", "Verified the audit log"
    AUDIT_EXPORT = "audit.export", "Exported the audit log"
    AUDIT_CHECKPOINT = "audit.checkpoint", "Signed an audit checkpoint"
    AUDIT_ACCESS_LOG = "audit.access_log", "Read the access log"


class Outcome(models.TextChoices):
    PERMIT = "permit", "Permitted"
    DENY = "deny", "Denied"
    ERROR = "error", "Failed"


class Basis(models.TextChoices):
    """The legal basis of a permit (DESIGN.md, the rule); free text is accepted too."""

    CONSENT = "CONSENT", "Patient's consent"
    LOCAL = "LOCAL", "Own institution's record"
    EMERGENCY = "EMERGENCY", "Emergency access"
    CARE_RELATIONSHIP = "CARE_RELATIONSHIP", "Care relationship"
    PATIENT = "PATIENT", "The patient's own request"
    DPO = "DPO", "Data protection oversight"


_LABELS = dict(Action.choices)


def describe(action: str) -> str:
    """A human label for an action code; unknown codes are shown as they are."""
    return str(_LABELS.get(action, action))


def is_known(action: str) -> bool:
    return action in _LABELS
