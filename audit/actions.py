"""Namespaced audit action codes, their outcomes, and the one place they become sentences."""

from django.db import models


class Action(models.TextChoices):
    # Codes are stable: once written to the log they are never renamed (STYLE.md 10).
    AUTH_LOGIN = "auth.login", "Signed in to the portal"
    AUTH_LOGIN_FAILED = "auth.login_failed", "Failed to sign in to the portal"
    AUTH_TOKEN_ISSUE = "auth.token_issue", "Issued an access token"
    AUTH_TOKEN_REVOKE = "auth.token_revoke", "Revoked access tokens"
    AUTH_TOKEN_REFUSED = "auth.token_refused", "Used a revoked or expired access token"
    PORTAL_PAGE_REFUSED = "portal.page_refused", "Opened a portal page not open to their role"
    AUTH_ENROLMENT_CODE_ISSUE = (
        "auth.enrolment_code_issue",
        "Issued a one-time code to set up an authenticator app",
    )
    AUTH_DEVICE_ADD = "auth.device_add", "Added a second-factor device in the administration"
    AUTH_DEVICE_CHANGE = (
        "auth.device_change",
        "Changed a second-factor device in the administration",
    )
    AUTH_DEVICE_DELETE = (
        "auth.device_delete",
        "Deleted a second-factor device in the administration",
    )
    ACCOUNT_CREATE = "account.create", "Created an account"
    ACCOUNT_PASSWORD_CHANGE = "account.password_change", "Changed their own password"
    ACCOUNT_PASSWORD_SET = (
        "account.password_set",
        "Set the password of another user, to be changed at their next log-in",
    )
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
    STUDY_FIXITY_FAILED = (
        "study.fixity_failed",
        "Was refused images whose stored copy failed its integrity check",
    )
    STUDY_RESTORE = (
        "study.restore",
        "Restored images whose stored copy had failed its integrity check",
    )
    AUDIT_SEARCH = "audit.search", "Searched the audit log"
    AUDIT_VERIFY = "audit.verify", "Verified the audit log"
    AUDIT_EXPORT = "audit.export", "Exported the audit log"
    ADMIN_VIEW = "admin.view", "Viewed access or sign-in settings in the administration"
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

# The same actions in the words of the patient reading who accessed their record: "your"
# is the patient whose log it is. Every action has one (a test walks them all); the DPO's
# pages keep the labels above, next to the exact code.
PATIENT_WORDS: dict[str, str] = {
    Action.AUTH_LOGIN: "Signed in to the portal",
    Action.AUTH_LOGIN_FAILED: "Tried to sign in to the portal, without success",
    Action.AUTH_TOKEN_ISSUE: "Gave out an access key for an app",
    Action.AUTH_TOKEN_REVOKE: "Cancelled access keys for apps",
    Action.AUTH_TOKEN_REFUSED: "Tried an app access key that was cancelled or out of date",
    Action.PORTAL_PAGE_REFUSED: "Tried to open a page of the portal not meant for them",
    Action.AUTH_ENROLMENT_CODE_ISSUE: "Gave out a code to set up an authenticator app",
    Action.AUTH_DEVICE_ADD: "Added a sign-in authenticator for a user",
    Action.AUTH_DEVICE_CHANGE: "Changed a user's sign-in authenticator",
    Action.AUTH_DEVICE_DELETE: "Removed a user's sign-in authenticator",
    Action.ACCOUNT_CREATE: "Created an account",
    Action.ACCOUNT_PASSWORD_CHANGE: "Changed the password of their account",
    Action.ACCOUNT_PASSWORD_SET: "Set a password for a user, who must change it",
    Action.INSTITUTION_CREATE: "Added a hospital to the network",
    Action.PRACTITIONER_CREATE: "Registered a doctor or other health professional",
    Action.PATIENT_CREATE: "Registered you in the network",
    Action.PATIENT_IDENTIFIER_ADD: "Linked your patient number at a hospital to your record",
    Action.REPRESENTATION_GRANT: "Gave a legal representative the right to act for you",
    Action.REPRESENTATION_REVOKE: "Ended a legal representative's right to act for you",
    Action.RECORD_VIEW: "Looked at your record's sharing settings",
    Action.RECORD_CLOSE: "Closed your shared record",
    Action.RECORD_REOPEN: "Reopened your shared record",
    Action.CONSENT_GRANT: "Gave consent to share your images",
    Action.CONSENT_REVOKE: "Withdrew a consent to share your images",
    Action.CONSENT_EXPIRE: "A consent to share your images came to its end",
    Action.CONSENT_LIST: "Looked at your consents",
    Action.CARE_ASSERT: "A hospital recorded that a doctor treats you",
    Action.CARE_DECLARE: "Declared a doctor as your own",
    Action.CARE_END: "Recorded that a doctor no longer treats you",
    Action.CARE_EXPIRE: "A doctor's time to treat you came to its end",
    Action.EXCLUSION_ADD: "Blocked a doctor or other health professional",
    Action.EXCLUSION_REMOVE: "Unblocked a doctor or other health professional",
    Action.STUDY_HIDE: "Hid a study from other hospitals",
    Action.STUDY_UNHIDE: "Let other hospitals see a hidden study again",
    Action.EMERGENCY_DECLARE: "Declared an emergency to see your images",
    Action.EMERGENCY_EXPIRE: "An emergency access to your images came to its end",
    Action.EMERGENCY_REVIEW: "Checked whether an emergency access was justified",
    Action.EMERGENCY_LIST: "Looked at the emergency accesses to check",
    Action.PATIENT_STUDIES_LIST: "Looked at the list of your studies",
    Action.STUDY_SEARCH: "Searched among your studies",
    Action.STUDY_RETRIEVE: "Downloaded images of a study",
    Action.STUDY_METADATA: "Opened the details of a study",
    Action.STUDY_RENDER: "Opened images of a study",
    Action.STUDY_STORE: "Added images of a study to the archive",
    Action.STUDY_STORE_CONFLICT: "Sent images that were refused (they did not match stored ones)",
    Action.STUDY_RECONCILE: "Linked a study to your record",
    Action.STUDY_FIXITY_FAILED: (
        "Tried to open images of a study whose stored copy was damaged; they were not shown"
    ),
    Action.STUDY_RESTORE: "Sent again images whose stored copy was damaged, which repaired it",
    Action.AUDIT_SEARCH: "Searched the access log",
    Action.AUDIT_VERIFY: "Checked that the access log is intact",
    Action.AUDIT_EXPORT: "Exported entries of the access log",
    Action.AUDIT_CHECKPOINT: "Sealed the access log against changes",
    Action.AUDIT_ACCESS_LOG: "Looked at this access log",
    Action.ADMIN_VIEW: "An administrator looked at your sharing settings",
}


def describe(action: str) -> str:
    """A human label for an action code; unknown codes are shown as they are."""
    return str(_LABELS.get(action, action))


def describe_for_patient(action: str) -> str:
    """The action in a patient's words; a code without them falls back to the label."""
    return PATIENT_WORDS.get(action) or describe(action)


def is_known(action: str) -> bool:
    return action in _LABELS
