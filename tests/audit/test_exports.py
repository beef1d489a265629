"""Exports: FHIR R4 parsed back by fhir.resources, DICOM XML with the required parts, CSV safe."""

import csv
import io
import json
from xml.etree import ElementTree as ET

import pytest
from django.core.management import call_command
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from audit import exports
from audit.models import AuditEvent

from .conftest import XAVIER
from .test_api import client_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def log(append_events):
    append_events(2)
    append_events(1, outcome="deny", reason_code="NO_CONSENT", message="=HYPERLINK(1)")
    append_events(1, basis="EMERGENCY", action="emergency.declare", actor_display="@Dr Evil")
    append_events(1, patient="", study_uid="", client_address="", action="auth.token_issue")
    return list(AuditEvent.objects.order_by("seq"))


def text(fmt: str, events) -> str:
    return "".join(exports.render(fmt, events))


def test_it_exports_a_fhir_r4_bundle_that_fhir_resources_parses_back(log):
    bundle = Bundle.model_validate_json(text("fhir", log))
    assert bundle.type == "collection"
    resources = [entry.resource for entry in bundle.entry]
    assert len(resources) == 5
    assert all(isinstance(r, FhirAuditEvent) for r in resources)
    read = resources[0]
    assert read.meta.profile[0].endswith("IHE.BasicAudit.PatientRead")
    assert (read.action, read.outcome) == ("R", "0")
    assert read.agent[0].requestor is True
    assert read.agent[0].who.identifier.value == "alice"
    assert read.agent[0].network.address == "192.0.2.10"
    patient = read.entity[0]
    assert (patient.what.identifier.value, patient.role.code) == (XAVIER, "1")
    assert read.entity[1].what.identifier.value.startswith("urn:oid:1.2.826.0.1.3680043")
    assert resources[2].outcome == "4"
    assert "NO_CONSENT" in resources[2].outcomeDesc
    assert resources[3].agent[0].purposeOfUse[0].coding[0].code == "ETREAT"


def test_it_exports_fhir_r4_not_r5(log):
    # R5 renamed AuditEvent.type to category and outcome to a structure; R4 has "outcome": "0".
    resource = json.loads(text("fhir", log[:1]))["entry"][0]["resource"]
    assert resource["outcome"] == "0"
    assert resource["type"]["code"] == "rest"


def test_it_exports_well_formed_dicom_audit_messages(log):
    root = ET.fromstring(text("dicom", log).encode())  # noqa: S314 (our own output)
    messages = root.findall("AuditMessage")
    assert len(messages) == 5
    for message in messages:
        # PS3.15 A.5.1: these parts are required, in this order.
        tags = [child.tag for child in message]
        assert tags[0] == "EventIdentification"
        assert "ActiveParticipant" in tags
        assert tags.index("AuditSourceIdentification") > tags.index("ActiveParticipant")
        ident = message.find("EventIdentification")
        assert ident.get("EventActionCode") in {"C", "R", "U", "D", "E"}
        assert ident.get("EventOutcomeIndicator") in {"0", "4", "8", "12"}
        assert ident.find("EventID").get("codeSystemName") == "DCM"
        assert message.find("ActiveParticipant").get("UserIsRequestor") == "true"
    first = messages[0]
    assert first.find("EventIdentification/EventID").get("csd-code") == "110103"
    patient, study = first.findall("ParticipantObjectIdentification")
    assert (patient.get("ParticipantObjectID"), patient.get("ParticipantObjectTypeCode")) == (
        XAVIER,
        "1",
    )
    assert study.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"
    assert messages[2].find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert messages[3].find("EventIdentification/EventID").get("csd-code") == "110113"


def test_it_neutralises_csv_cells_that_would_run_as_formulas(log):
    rows = list(csv.DictReader(io.StringIO(text("csv", log))))
    assert len(rows) == 5
    assert rows[2]["message"] == "'=HYPERLINK(1)"
    assert rows[3]["actor_display"] == "'@Dr Evil"
    assert rows[0]["patient"] == XAVIER
    assert rows[0]["description"] == "Opened images"
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_it_neutralises_each_formula_start(cell):
    from audit.exports.csv_export import neutralise

    assert neutralise(cell) == "'" + cell


def test_it_exports_a_filtered_range_from_the_command(log, tmp_path):
    target = tmp_path / "out.csv"
    since, until = log[1].time.isoformat(), log[3].time.isoformat()
    call_command(
        "export_audit", "--format", "csv", "--since", since, "--until", until, "--output", target
    )
    rows = list(csv.DictReader(target.open()))
    assert [r["seq"] for r in rows] == ["2", "3"]
    assert AuditEvent.objects.order_by("-seq").first().action == "audit.export"


def test_it_exports_one_patient_from_the_command(log, tmp_path, capsys):
    call_command("export_audit", "--format", "fhir", "--patient", XAVIER)
    bundle = Bundle.model_validate_json(capsys.readouterr().out)
    assert len(bundle.entry) == 4


@pytest.mark.parametrize("fmt", ["fhir", "dicom", "csv"])
def test_it_streams_an_export_to_the_dpo(log, fmt):
    response = client_as("dpo", username="dora").get(
        "/api/v1/audit/export/", {"format": fmt, "patient": XAVIER}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == exports.CONTENT_TYPES[fmt]
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert XAVIER in body
    assert AuditEvent.objects.order_by("-seq").first().action == "audit.export"


def test_it_refuses_an_unknown_export_format(log):
    response = client_as("dpo", username="dora").get("/api/v1/audit/export/", {"format": "pdf"})
    assert response.status_code == 400
    assert "format" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("action", "event_id", "alert_type"),
    [
        ("auth.device_delete", "110113", "110137"),
        ("auth.enrolment_code_issue", "110113", "110137"),
        ("account.password_change", "110113", "110137"),
        ("emergency.declare", "110113", "110127"),
        ("auth.login", "110114", None),
    ],
)
def test_a_second_factor_changed_is_exported_as_a_security_alert(
    append_events, action, event_id, alert_type
):
    """PS3.15 A.5.3: a user's second factor set up or taken away is a Security Alert of type
    User Security Attributes Changed (it was exported as a log-in, User Authentication)."""
    append_events(1, patient="", study_uid="", action=action)
    message = ET.fromstring(text("dicom", AuditEvent.objects.all()).encode())[0]  # noqa: S314
    ident = message.find("EventIdentification")
    assert ident.find("EventID").get("csd-code") == event_id
    dcm_types = [c.get("csd-code") for c in ident.findall("EventTypeCode[@codeSystemName='DCM']")]
    assert dcm_types == ([alert_type] if alert_type else [])


def test_a_study_without_a_patient_has_its_detail_before_its_description(append_events):
    # An unreconciled study's access names the study only; PS3.15 A.5.1's schema orders a
    # ParticipantObjectIdentification's children: type code, detail(s), then description.
    [event] = append_events(1, patient="")
    study = exports.dicom.message(event).find("ParticipantObjectIdentification")
    tags = [child.tag for child in study]
    assert tags == [
        "ParticipantObjectIDTypeCode",
        "ParticipantObjectDetail",
        "ParticipantObjectDescription",
    ]
