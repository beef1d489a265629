"""FHIR R4 AuditEvent resources following IHE Basic Audit Log Patterns (BALP), as a Bundle."""

import json
from collections.abc import Iterable, Iterator

from django.utils import timezone
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from audit import canonical
from audit.actions import describe
from audit.exports.codes import ACT_REASON, OUTCOME, kind_of, purpose_of
from audit.models import AuditEvent

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
# Project namespaces for identifiers that have no published system of their own.
NS = "urn:anim-gateway:"
GATEWAY = {
    "identifier": {"system": f"{NS}system", "value": "anim-gateway"},
    "display": "Anim Gateway",
}


def _profile(event: AuditEvent) -> str | None:
    kind = kind_of(event.action)
    if not event.patient:
        return BALP + "Query" if kind.interaction == "search-type" else None
    return BALP + {
        "read": "PatientRead",
        "search-type": "PatientQuery",
        "create": "PatientCreate",
        "update": "PatientUpdate",
    }.get(kind.interaction, "PatientRead")


def _agents(event: AuditEvent) -> list[dict]:
    purpose = {
        "coding": [
            {"system": ACT_REASON, "code": purpose_of(basis=event.basis, role=event.actor_role)}
        ]
    }
    user = {
        "type": {
            "coding": [
                {"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}
            ]
        },
        "who": {
            "identifier": {
                "system": f"{NS}user",
                "value": event.actor_username or event.actor_role,
            },
            "display": event.actor_display or event.actor_username or event.actor_role,
        },
        "requestor": True,
        "role": [{"coding": [{"system": f"{NS}role", "code": event.actor_role or "anonymous"}]}],
        "purposeOfUse": [purpose],
    }
    if event.actor_profession:
        user["role"].append(
            {"coding": [{"system": f"{NS}profession", "code": event.actor_profession}]}
        )
    if event.client_address:
        user["network"] = {"address": event.client_address, "type": "2"}
    agents = [user]
    if event.acting_institution:
        agents.append({
            "type": {"coding": [{"system": PARTICIPATION, "code": "PRF", "display": "performer"}]},
            "who": {"identifier": {"system": f"{NS}institution",
                                   "value": event.acting_institution}},
            "requestor": False,
        })  # fmt: skip
    agents.append({
        "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
        "who": GATEWAY,
        "requestor": False,
    })  # fmt: skip
    return agents


def _entities(event: AuditEvent) -> list[dict]:
    entities = []
    if event.patient:
        entities.append({
            "what": {"identifier": {"system": f"{NS}national-id", "value": event.patient}},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })  # fmt: skip
    if event.study_uid:
        entities.append({
            "what": {"identifier": {"system": "urn:dicom:uid",
                                    "value": f"urn:oid:{event.study_uid}"}},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
        })  # fmt: skip
    # The log's own record: where this event sits in the chain and why it was decided so.
    details = {"seq": str(event.seq), "hash": event.hash, "reason_code": event.reason_code,
               "basis": event.basis, "basis_ids": json.dumps(event.basis_ids, sort_keys=True),
               "on_behalf_of": event.on_behalf_of, "request_id": event.request_id}  # fmt: skip
    entities.append({
        "what": {"identifier": {"system": f"{NS}audit-event", "value": str(event.seq)}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "detail": [{"type": k, "valueString": v} for k, v in details.items() if v],
    })  # fmt: skip
    return entities


def resource(event: AuditEvent) -> FhirAuditEvent:
    """One event as a validated FHIR R4 AuditEvent."""
    kind = kind_of(event.action)
    data = {
        "resourceType": "AuditEvent",
        "id": f"anim-audit-{event.seq}",
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
        "subtype": [
            {"system": INTERACTION, "code": kind.interaction},
            {
                "system": f"{NS}audit-action",
                "code": event.action,
                "display": describe(event.action),
            },
        ],
        "action": kind.action,
        "recorded": canonical.encode_time(event.time),
        "outcome": OUTCOME[event.outcome],
        "agent": _agents(event),
        "source": {
            "site": event.acting_institution or None,
            "observer": GATEWAY,
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": _entities(event),
    }
    if event.message or event.reason_code:
        data["outcomeDesc"] = " ".join(filter(None, [event.reason_code, event.message]))
    if profile := _profile(event):
        data["meta"] = {"profile": [profile]}
    return FhirAuditEvent.model_validate(data)


def bundle(events: Iterable[AuditEvent]) -> Iterator[str]:
    """A FHIR Bundle (type collection), written entry by entry."""
    head = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": canonical.encode_time(timezone.now()),
    }
    yield json.dumps(head)[:-1] + ', "entry": ['
    separator = ""
    for event in events:
        yield f'{separator}{{"resource": {resource(event).model_dump_json(exclude_none=True)}}}'
        separator = ","
    yield "]}"
