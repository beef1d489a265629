"""How each audit action reads in the standards: DICOM event ids, FHIR actions, purposes."""

from dataclasses import dataclass

from audit.actions import Basis


@dataclass(frozen=True)
class Kind:
    """action: C/R/U/D/E (DICOM EventActionCode = FHIR AuditEvent.action);
    event_id: the DICOM (DCM) audit event id; interaction: FHIR restful-interaction."""

    action: str
    event_id: str
    event_name: str
    interaction: str


QUERY = Kind("E", "110112", "Query", "search-type")
ACCESS = Kind("R", "110103", "DICOM Instances Accessed", "read")
STORE = Kind("C", "110104", "DICOM Instances Transferred", "create")
# A stored copy replaced by the same bytes sent again (study.restore).
RESTORE = Kind("U", "110104", "DICOM Instances Transferred", "update")
RECORD_CREATE = Kind("C", "110110", "Patient Record", "create")
RECORD_UPDATE = Kind("U", "110110", "Patient Record", "update")
LOGIN = Kind("E", "110114", "User Authentication", "operation")
AUDIT_USED = Kind("R", "110101", "Audit Log Used", "search-type")
ALERT = Kind("E", "110113", "Security Alert", "operation")

_EXACT = {
    "study.search": QUERY,
    "patient.studies_list": QUERY,
    "consent.list": QUERY,
    "emergency.list": QUERY,
    "record.view": QUERY,
    "admin.view": QUERY,
    "study.retrieve": ACCESS,
    "study.metadata": ACCESS,
    "study.render": ACCESS,
    "study.store": STORE,
    "study.store_conflict": STORE,
    # An access refused because the stored copy failed its fixity check (outcome 8).
    "study.fixity_failed": ACCESS,
    "study.restore": RESTORE,
    # Breaking the glass is what ATNA repositories alert on.
    "emergency.declare": ALERT,
    # A user's second factor set up, changed or taken away is an alert too, not a log-in.
    "auth.device_add": ALERT,
    "auth.device_change": ALERT,
    "auth.device_delete": ALERT,
    "auth.enrolment_code_issue": ALERT,
    # So is a password changed (or tried with a wrong old one): a credential, not a record.
    "account.password_change": ALERT,
    "account.password_set": ALERT,
}
# The DCM type of an alert (PS3.16 CID 403, Security Alert Type), where one fits.
ALERT_TYPES = {
    "emergency.declare": ("110127", "Emergency Override Started"),
    "auth.device_add": ("110137", "User Security Attributes Changed"),
    "auth.device_change": ("110137", "User Security Attributes Changed"),
    "auth.device_delete": ("110137", "User Security Attributes Changed"),
    "auth.enrolment_code_issue": ("110137", "User Security Attributes Changed"),
    "account.password_change": ("110137", "User Security Attributes Changed"),
    "account.password_set": ("110137", "User Security Attributes Changed"),
}
_CREATING = (".create", ".grant", ".add", ".assert", ".declare", "_add", ".issue")


def kind_of(action: str) -> Kind:
    if action in _EXACT:
        return _EXACT[action]
    if action.startswith("auth."):
        return LOGIN
    if action.startswith("audit."):
        return AUDIT_USED
    if action.endswith(_CREATING):
        return RECORD_CREATE
    return RECORD_UPDATE


# FHIR AuditEvent.outcome and DICOM EventOutcomeIndicator share their codes.
OUTCOME = {"permit": "0", "deny": "4", "error": "8"}

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def purpose_of(*, basis: str, role: str) -> str:
    """HL7 v3 ActReason: emergency treatment, treatment, patient request, compliance."""
    if basis == Basis.EMERGENCY:
        return "ETREAT"
    return {"practitioner": "TREAT", "patient": "PATRQT", "dpo": "HCOMPL"}.get(role, "HOPERAT")
