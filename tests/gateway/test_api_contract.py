"""Contract tests: items of ../shared/API.md (and of DICOM PS3.18, which it adopts for
DICOMweb) that were not exercised elsewhere.

Each test names the section it holds the gateway to, and what would make it fail.
"""

import datetime
import io
import json
import socket

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import dateparse, timezone
from pydicom.uid import generate_uid
from rest_framework.test import APIClient

from audit.models import AuditEvent
from consent.models import Consent, Patient, PatientIdentifier, Practitioner
from studies.models import Instance, Study
from tests.conftest import XAVIER_ID, client_for
from tests.consent.test_provisioning import NEW_ID, patient_body
from tests.studies.conftest import (  # noqa: F401 (autouse fixtures: private storage, inline tasks)
    dicom_copy,
    ingest,
    inline_tasks,
    private_storage,
    share_with_alice,
)

API = "/api/v1"


def error_code(response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return body["error"]["code"]


def practitioner_body(username: str, institutions: list[str]) -> dict:
    return {
        "username": username,
        "display_name": f"Dr {username.title()}",
        "profession": "physician",
        "license_number": f"LIC-{username}",
        "institutions": institutions,
    }


# --- REST: provisioning -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_hospital_system_provisions_practitioners_for_its_own_institution_only(cast) -> None:
    """API.md, Provisioning: "administrator token, or a hospital system token for its own
    institution" on POST practitioners/. Fails if a system token cannot provision its own
    staff, or can affiliate a practitioner with another hospital (alone or alongside its own)."""
    chl = client_for("chl-pacs", "CHL")
    own = chl.post(f"{API}/practitioners/", practitioner_body("dave", ["CHL"]), format="json")
    assert own.status_code == 201, own.json()
    assert own.json()["institutions"] == ["CHL"]
    for username, codes in (("erin", ["HRS"]), ("fred", ["CHL", "HRS"])):
        other = chl.post(f"{API}/practitioners/", practitioner_body(username, codes), format="json")
        assert (other.status_code, error_code(other)) == (403, "FORBIDDEN")
    assert set(Practitioner.objects.values_list("user__username", flat=True)) == {
        "alice",
        "bob",
        "charlie",
        "dave",
    }


@pytest.mark.django_db
def test_a_hospital_system_adds_identifiers_for_its_own_institution_only(cast) -> None:
    """API.md, Provisioning: POST patients/{national_id}/identifiers/ by a hospital system is
    for its own institution. Fails if CHL's system can register an HRS medical record number
    (it would then route HRS studies to a patient of its choosing)."""
    chl = client_for("chl-pacs", "CHL")
    url = f"{API}/patients/{XAVIER_ID}/identifiers/"
    response = chl.post(url, {"institution": "HRS", "value": "HRS-X1"}, format="json")
    assert (response.status_code, error_code(response)) == (403, "FORBIDDEN")
    assert not PatientIdentifier.objects.filter(value="HRS-X1").exists()


@pytest.mark.django_db
def test_registering_an_identifier_through_the_api_links_the_waiting_studies(
    cast, tmp_path, django_capture_on_commit_callbacks
) -> None:
    """API.md, Provisioning: POST patients/{national_id}/identifiers/ -> 201; "studies
    waiting under that identifier get linked". Fails if the endpoint stores the identifier
    without reconciling the unreconciled studies already stored under it."""
    waiting = ingest(dicom_copy(tmp_path, patient_id="CHL-NEW"), "CHL")
    assert Study.objects.get(study_uid=waiting.study_uid).patient is None
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for("chl-pacs", "CHL").post(
            f"{API}/patients/{XAVIER_ID}/identifiers/",
            {"institution": "CHL", "value": "CHL-NEW"},
            format="json",
        )
    assert response.status_code == 201, response.json()
    assert Study.objects.get(study_uid=waiting.study_uid).patient == cast.xavier


@pytest.mark.django_db
def test_the_administrator_creates_a_dpo_account_that_works(cast, admin_user) -> None:
    """API.md, Provisioning: POST accounts/ {"username", "role": "dpo"} -> 201 (only the
    system role was exercised); 401 without credentials. Fails if a DPO account cannot be
    created without an institution, or if the new account does not act as a DPO."""
    anonymous = APIClient().post(
        f"{API}/accounts/", {"username": "dpo2", "role": "dpo"}, format="json"
    )
    assert (anonymous.status_code, error_code(anonymous)) == (401, "UNAUTHENTICATED")
    response = client_for("root").post(
        f"{API}/accounts/", {"username": "dpo2", "role": "dpo"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json() == {"username": "dpo2", "role": "dpo", "institution": None}
    assert client_for("dpo2").get(f"{API}/audit/events/").status_code == 200


@pytest.mark.django_db
def test_a_patient_registered_with_a_username_reads_their_own_record(cast, admin_user) -> None:
    """API.md, Provisioning: POST patients/ accepts an optional "username" (only a taken
    username was exercised). Fails if the username is ignored, or does not become the
    patient's own log-in for the self-service API."""
    body = patient_body(identifiers=[], username="anna")
    response = client_for("root").post(f"{API}/patients/", body, format="json")
    assert response.status_code == 201, response.json()
    assert Patient.objects.get(national_id=NEW_ID).user.username == "anna"
    record = client_for("anna").get(f"{API}/me/record/")
    assert record.status_code == 200
    assert (record.json()["national_id"], record.json()["status"]) == (NEW_ID, "active")


# --- REST: patient self-service -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "status"), [("close", "closed"), ("reopen", "active")])
def test_closing_and_reopening_the_record_answer_200(cast, action, status) -> None:
    """API.md, Patient self-service: POST me/record/close/ and .../reopen/ -> 200 (the
    existing test read the body only). Fails if either answers 201/204 or another code."""
    xavier = client_for("xavier")
    if action == "reopen":
        assert xavier.post(f"{API}/me/record/close/").status_code == 200
    response = xavier.post(f"{API}/me/record/{action}/")
    assert response.status_code == 200
    assert response.json() == {"national_id": XAVIER_ID, "status": status}


@pytest.mark.django_db
def test_a_hidden_study_disappears_from_a_practitioners_list_without_a_trace(
    cast, tmp_path
) -> None:
    """API.md, Patient self-service POST me/studies/{uid}/hide/ and .../unhide/ (200) on a
    real stored study (the existing test used a stand-in look-up), and Practitioner GET
    patients/{national_id}/studies/: "hidden studies are never mentioned", each study with
    its `description`. Fails if hiding does not reach the practitioner's list, if the hidden
    study's institution shows up in "withheld", or if unhiding does not bring it back."""
    share_with_alice(cast)
    study = ingest(
        dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDescription="Thorax", StudyDate="20240105")
    )
    alice, xavier = client_for("alice", "CHL"), client_for("xavier")
    url = f"{API}/patients/{XAVIER_ID}/studies/"

    listed = alice.get(url).json()
    assert [(s["study_uid"], s["description"]) for s in listed["studies"]] == [
        (study.study_uid, "Thorax")
    ]

    hidden = xavier.post(f"{API}/me/studies/{study.study_uid}/hide/")
    assert hidden.status_code == 200
    response = alice.get(url)
    assert response.json() == {"studies": [], "withheld": []}
    assert study.study_uid not in response.content.decode()

    # Without consent a visible CHEM study is withheld by name; a hidden one is still not.
    Consent.objects.all().delete()
    assert alice.get(url).json() == {"studies": [], "withheld": []}
    assert xavier.post(f"{API}/me/studies/{study.study_uid}/unhide/").status_code == 200
    assert alice.get(url).json() == {
        "studies": [],
        "withheld": [{"institution": "CHEM", "reason": "NO_CONSENT"}],
    }


# --- REST: practitioner and DPO -------------------------------------------------------------


@pytest.mark.django_db
def test_an_emergency_access_answers_its_id_and_its_expiry(cast) -> None:
    """API.md, Practitioner: POST patients/{national_id}/emergency-access/ -> 201
    {"id", "expires_at"} (the existing test read the id only). Fails if expires_at is missing,
    is not the stored expiry, or is not the configured duration (4 hours) from now."""
    before = timezone.now()
    response = client_for("bob", "CHEM").post(
        f"{API}/patients/{XAVIER_ID}/emergency-access/",
        {"reason": "Unconscious patient in the emergency department, history needed."},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    expires_at = dateparse.parse_datetime(body["expires_at"])
    duration = datetime.timedelta(hours=settings.EMERGENCY_ACCESS_HOURS)
    assert before + duration <= expires_at <= timezone.now() + duration
    from consent.models import EmergencyAccess

    assert EmergencyAccess.objects.get(pk=body["id"]).expires_at == expires_at


@pytest.mark.django_db
def test_verify_reports_the_latest_checkpoint(cast) -> None:
    """API.md, DPO: GET audit/verify/ -> {"valid", "events", "first_invalid_seq",
    "checkpoint": {...}} (the existing test only checked that the key exists). Fails if the
    checkpoint is not reported as an object naming the latest signed sequence number."""
    from audit.checkpoints import checkpoint_take

    taken = checkpoint_take()
    body = client_for("dora").get(f"{API}/audit/verify/").json()
    assert (body["valid"], body["first_invalid_seq"]) == (True, None)
    assert body["events"] >= taken.seq > 0
    assert isinstance(body["checkpoint"], dict)
    assert body["checkpoint"]["seq"] == taken.seq


# --- DICOMweb --------------------------------------------------------------------------------


@pytest.fixture
def two_series(cast, tmp_path):
    """One CHEM study of Xavier with a CT series and an MR series; Alice may see it."""
    share_with_alice(cast)
    ct = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    mr = ingest(dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1", study_uid=ct.study_uid))
    return ct, mr


@pytest.mark.django_db
def test_series_and_instance_searches_page_and_are_audited(two_series) -> None:
    """API.md, QIDO-RS: `limit` and `offset`, application/dicom+json, "each query is
    audited", on GET studies/{study}/series and studies/{study}/instances (only the study
    level was paged or checked for its audit). Fails if a level ignores limit/offset, answers
    another media type, or answers without writing its audit event."""
    ct, _ = two_series
    alice = client_for("alice", "CHL")
    before = AuditEvent.objects.count()
    pages = []
    for level in ("series", "instances"):
        for offset in (0, 1, 2):
            response = alice.get(
                f"/dicomweb/studies/{ct.study_uid}/{level}", {"limit": 1, "offset": offset}
            )
            assert response.status_code == 200
            assert response["Content-Type"] == "application/dicom+json"
            pages.append(len(json.loads(response.content)))
    assert pages == [1, 1, 0, 1, 1, 0]
    events = AuditEvent.objects.order_by("seq")[before:]
    assert [(e.action, e.outcome, e.study_uid) for e in events] == [
        ("study.search", "permit", ct.study_uid)
    ] * 6


@pytest.mark.django_db
def test_includefield_takes_any_keyword_as_well_as_its_tag(two_series) -> None:
    """API.md, QIDO-RS: `includefield`, per PS3.18 an attribute keyword or tag. Fails when
    a keyword outside the gateway's own short list of indexed attributes is ignored."""
    ct, _ = two_series
    url = f"/dicomweb/studies/{ct.study_uid}/series/{ct.series_uid}/instances"
    alice = client_for("alice", "CHL")
    (by_tag,) = json.loads(alice.get(url, {"includefield": "00180050"}).content)
    assert "00180050" in by_tag  # the CT's SliceThickness is in its stored header
    (by_keyword,) = json.loads(alice.get(url, {"includefield": "SliceThickness"}).content)
    assert "00180050" in by_keyword


@pytest.mark.django_db
def test_a_limit_above_the_server_maximum_is_capped_not_refused(two_series) -> None:
    """API.md, QIDO-RS: `limit` "so that standard clients work unchanged". Fails when a
    client asking for more results than the gateway returns at once gets a 400."""
    from studies import qido

    response = client_for("alice", "CHL").get("/dicomweb/studies", {"limit": qido.MAX_LIMIT + 1})
    assert response.status_code == 200
    assert len(json.loads(response.content)) == 1


class _UnreadableBody(io.RawIOBase):
    """A request body that counts every attempt to read it."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, *args) -> bytes:
        self.reads += 1
        raise AssertionError("the body was read")

    def readline(self, *args) -> bytes:
        self.reads += 1
        raise AssertionError("the body was read")


@pytest.mark.django_db
def test_stow_refuses_an_oversized_body_before_reading_it(cast, settings) -> None:
    """API.md, STOW-RS: "413 for a body over the configured maximum, refused before it is
    read" (the existing test checked the status only). Fails if a single byte of a body
    announced larger than STOW_MAX_BYTES is read (or spooled) before the refusal."""
    settings.STOW_MAX_BYTES = 1000
    body = _UnreadableBody()
    response = client_for("chl-pacs", "CHL").generic(
        "POST",
        "/dicomweb/studies",
        b"",
        content_type='multipart/related; type="application/dicom"; boundary=abc',
        **{"CONTENT_LENGTH": "5000", "wsgi.input": body},
    )
    assert (response.status_code, error_code(response)) == (413, "TOO_LARGE")
    assert body.reads == 0
    assert not Instance.objects.exists()


# --- set-up commands -------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_dicom_ingests_a_single_file(cast, tmp_path, capsys) -> None:
    """API.md, Set-up commands: `import_dicom PATH --institution CODE` ingests "a file or a
    folder tree" (only folders were exercised). Fails if a file path is not ingested as a
    study of the given institution."""
    path = dicom_copy(tmp_path, patient_id="CHEM-X1")
    call_command("import_dicom", str(path), "--institution", "CHEM", "--no-progress")
    assert "1 file(s): 1 stored, 0 duplicate, 0 rejected" in capsys.readouterr().out
    study = Study.objects.get()
    assert (study.institution.code, study.patient) == ("CHEM", cast.xavier)


def test_dicom_listener_listens_on_port_11112_by_default() -> None:
    """API.md, Set-up commands: `dicom_listener [--port 11112]`. Fails if the default port
    the hospitals' PACS are configured for changes (setting or command default)."""
    from studies.management.commands.dicom_listener import Command

    parser = Command().create_parser("manage.py", "dicom_listener")
    assert parser.parse_args([]).port == 11112
    assert parser.parse_args(["--port", "104"]).port == 104


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_create_institution_adds_a_member_whose_pacs_may_store(tmp_path) -> None:
    """API.md, Set-up commands: `create_institution CODE NAME --ae-title AE` makes "one more
    member institution", and DICOM network: "The calling AE title must belong to a member
    institution". Fails if the command's AE title is not accepted by the listener, or if what
    it stores is not filed under the new institution."""
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    from studies.dicom_net import start_listener, stop_listener

    call_command("create_institution", "ZIT", "Zithaklinik", "--ae-title", "ZIT_PACS")
    port = _free_port()
    server = start_listener(ae_title="ANIM_GATEWAY", host="127.0.0.1", port=port, block=False)
    try:
        ae = AE(ae_title="ZIT_PACS")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="ANIM_GATEWAY")
        assert assoc.is_established
        try:
            uid = generate_uid()
            status = assoc.send_c_store(dcmread(dicom_copy(tmp_path, study_uid=uid)))
        finally:
            assoc.release()
    finally:
        stop_listener(server)
    assert status.Status == 0x0000
    assert Study.objects.get(study_uid=uid).institution.code == "ZIT"


@pytest.mark.django_db
def test_an_instance_search_matches_on_the_series_modality(two_series) -> None:
    """Modality at the instance level narrows to the instances of series of that modality
    (it was accepted and ignored, so the MR search returned the CT instance too)."""
    ct, mr = two_series
    alice = client_for("alice", "CHL")
    found = json.loads(
        alice.get(f"/dicomweb/studies/{ct.study_uid}/instances", {"Modality": "MR"}).content
    )
    assert [i["00080018"]["Value"][0] for i in found] == [mr.sop_instance_uid]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("level", "key"),
    [("series", "PatientID"), ("series", "SOPInstanceUID"), ("instances", "StudyDate")],
)
def test_a_key_the_level_does_not_match_on_is_refused(two_series, level, key) -> None:
    """A key a level would ignore widens the answer silently: it is a 400 naming the key and
    the keys that level matches on."""
    ct, _ = two_series
    response = client_for("alice", "CHL").get(
        f"/dicomweb/studies/{ct.study_uid}/{level}", {key: "20240105"}
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith(f"{key}: matching on this attribute is not supported")
    assert f"in a search for {level}" in message
