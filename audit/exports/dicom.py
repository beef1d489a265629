"""DICOM audit messages (PS3.15 A.5.1 schema), one per event, as used by ATNA repositories."""

import base64
from collections.abc import Iterable, Iterator
from xml.etree import ElementTree as ET

from audit import canonical
from audit.actions import describe
from audit.exports.codes import ALERT_TYPES, OUTCOME, kind_of, purpose_of
from audit.models import AuditEvent

SOURCE_ID = "anim-gateway"


def _code(parent: ET.Element, tag: str, code: str, system: str, text: str) -> ET.Element:
    return ET.SubElement(
        parent, tag, {"csd-code": code, "codeSystemName": system, "originalText": text}
    )


def _identification(message: ET.Element, event: AuditEvent) -> None:
    kind = kind_of(event.action)
    ident = ET.SubElement(
        message,
        "EventIdentification",
        {
            "EventActionCode": kind.action,
            "EventDateTime": canonical.encode_time(event.time),
            "EventOutcomeIndicator": OUTCOME[event.outcome],
        },
    )
    _code(ident, "EventID", kind.event_id, "DCM", kind.event_name)
    _code(
        ident,
        "EventTypeCode",
        event.action,
        "urn:anim-gateway:audit-action",
        describe(event.action),
    )
    if event.action in ALERT_TYPES:
        code, text = ALERT_TYPES[event.action]
        _code(ident, "EventTypeCode", code, "DCM", text)
    if event.message or event.reason_code:
        description = " ".join(filter(None, [event.reason_code, event.message]))
        ET.SubElement(ident, "EventOutcomeDescription").text = description
    purpose = purpose_of(basis=event.basis, role=event.actor_role)
    _code(ident, "PurposeOfUse", purpose, "v3-ActReason", purpose)


def _participants(message: ET.Element, event: AuditEvent) -> None:
    user = {
        "UserID": event.actor_username or event.actor_role or "anonymous",
        "UserName": event.actor_display or event.actor_username or "anonymous",
        "UserIsRequestor": "true",
    }
    if event.client_address:
        user |= {"NetworkAccessPointID": event.client_address, "NetworkAccessPointTypeCode": "2"}
    requestor = ET.SubElement(message, "ActiveParticipant", user)
    _code(requestor, "RoleIDCode", "110153", "DCM", "Source Role ID")
    if event.actor_role:
        _code(requestor, "RoleIDCode", event.actor_role, "urn:anim-gateway:role", event.actor_role)
    server = ET.SubElement(
        message, "ActiveParticipant", {"UserID": SOURCE_ID, "UserIsRequestor": "false"}
    )
    _code(server, "RoleIDCode", "110152", "DCM", "Destination Role ID")


def _objects(message: ET.Element, event: AuditEvent) -> None:
    if event.patient:
        patient = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {"ParticipantObjectID": event.patient, "ParticipantObjectTypeCode": "1",
             "ParticipantObjectTypeCodeRole": "1"},
        )  # fmt: skip
        _code(patient, "ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number")
    if event.study_uid:
        study = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {"ParticipantObjectID": event.study_uid, "ParticipantObjectTypeCode": "2",
             "ParticipantObjectTypeCodeRole": "3"},
        )  # fmt: skip
        _code(study, "ParticipantObjectIDTypeCode", "110180", "DCM", "Study Instance UID")
        ET.SubElement(study, "ParticipantObjectDescription").text = describe(event.action)


def _source(message: ET.Element, event: AuditEvent) -> None:
    attrs = {"AuditSourceID": SOURCE_ID}
    if event.acting_institution:
        attrs["AuditEnterpriseSiteID"] = event.acting_institution
    source = ET.SubElement(message, "AuditSourceIdentification", attrs)
    _code(source, "AuditSourceTypeCode", "4", "DCM", "Application Server Process")


def message(event: AuditEvent) -> ET.Element:
    """One AuditMessage; children in the schema's order."""
    root = ET.Element("AuditMessage")
    _identification(root, event)
    _participants(root, event)
    _source(root, event)
    _objects(root, event)
    # Where the event sits in the gateway's chain, for reconciling the two logs.
    seq = base64.b64encode(f"{event.seq}:{event.hash}".encode()).decode("ascii")
    objects = root.findall("ParticipantObjectIdentification")
    if objects:
        _add_detail(objects[0], {"type": "AnimAuditSeq", "value": seq})
    return root


def _add_detail(identification: ET.Element, detail: dict) -> None:
    """A ParticipantObjectDetail where PS3.15 A.5.1's schema wants it: after the type code
    (and name or query), before the ParticipantObjectDescription (a study without patient)."""
    element = ET.Element("ParticipantObjectDetail", detail)
    tags = [child.tag for child in identification]
    place = (
        tags.index("ParticipantObjectDescription")
        if "ParticipantObjectDescription" in tags
        else len(tags)
    )
    identification.insert(place, element)


def message_xml(event: AuditEvent) -> str:
    return ET.tostring(message(event), encoding="unicode")


def document(events: Iterable[AuditEvent]) -> Iterator[str]:
    """Every message of the range inside one <AuditMessages> root, so the file is one XML."""
    yield '<?xml version="1.0" encoding="UTF-8"?>\n<AuditMessages>\n'
    for event in events:
        yield message_xml(event) + "\n"
    yield "</AuditMessages>\n"
