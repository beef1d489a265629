"""Whatever a client sends, the answer is a 4xx naming the problem (or a documented 2xx),
never a 500: a table of malformed requests over DICOMweb, the REST API and the portal."""

import io
import json
from dataclasses import dataclass, field, replace

import pytest
from rest_framework.test import APIClient

from tests.conftest import XAVIER_ID, client_for
from tests.portal.helpers import portal_client
from tests.studies.conftest import (  # noqa: F401 (autouse fixtures: private storage, inline tasks)
    dicom_copy,
    ingest,
    inline_tasks,
    private_storage,
    share_with_alice,
)

# Who sends the request: a bearer token of the cast (tests/conftest.py), or nobody.
_USERS = {
    "alice": ("alice", "CHL"),
    "xavier": ("xavier", None),
    "dora": ("dora", None),
    "system": ("chl-pacs", "CHL"),
}


@dataclass(frozen=True)
class Case:
    who: str
    method: str
    path: str  # {study}, {series}, {sop} and {xavier} are filled in from the world
    status: int
    code: str = ""
    body: bytes | dict | None = None
    content_type: str = ""
    extra: dict = field(default_factory=dict)


def get(who: str, path: str, status: int, code: str = "", **extra: str) -> Case:
    return Case(who, "get", path, status, code, extra=extra)


def post(who: str, path: str, body: dict | None, status: int, code: str = "INVALID") -> Case:
    return Case(who, "post", path, status, code, body)


def raw(who: str, path: str, body: bytes, content_type: str, status: int, code: str) -> Case:
    return Case(who, "post", path, status, code, body, content_type)


def options(who: str, path: str) -> Case:
    """OPTIONS: 405 with Allow on every view (DRF's description of a view is not served; on
    a patient-data view it was a 500, a success that never consulted the gate)."""
    return Case(who, "options", path, 405, "METHOD_NOT_ALLOWED")


# More query parameters than Django parses (DATA_UPLOAD_MAX_NUMBER_FIELDS, 1,000).
MANY_PARAMETERS = "&".join(f"k{n}=v" for n in range(1001))


@pytest.fixture
def world(cast, tmp_path) -> dict:
    """Xavier's CT study at CHEM, shared with Dr Alice at CHL."""
    share_with_alice(cast)
    result = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240105"))
    return {
        "study": result.study_uid,
        "series": result.series_uid,
        "sop": result.sop_instance_uid,
        "xavier": XAVIER_ID,
    }


def _client(who: str) -> APIClient:
    client = APIClient() if who == "anon" else client_for(*_USERS[who])
    client.raise_request_exception = False  # an unhandled exception is the 500 we look for
    return client


def _send(case: Case, world: dict):
    kwargs = dict(case.extra)
    if isinstance(case.body, dict):
        kwargs.update(data=json.dumps(case.body), content_type="application/json")
    elif case.body is not None:
        kwargs.update(data=case.body, content_type=case.content_type)
    return getattr(_client(case.who), case.method)(case.path.format(**world), **kwargs)


def _assert_answer(response, case: Case) -> None:
    assert response.status_code == case.status, (response.status_code, response.content[:300])
    if response.status_code < 400:
        return
    if response["Content-Type"] == "application/dicom+json":
        # STOW-RS refused every part: the standard dataset, a FailureReason on each.
        failed = json.loads(response.content)["00081198"]["Value"]
        assert failed
        assert all(item["00081197"]["Value"] for item in failed)
        return
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if case.code:
        assert body["error"]["code"] == case.code, body


def _id(case: Case) -> str:
    return f"{case.who} {case.method} {case.path[:60]} {str(case.body)[:40]} {case.extra}"[:140]


# --- DICOMweb reads ------------------------------------------------------------------------

Q = "/dicomweb/studies"
INST = "/dicomweb/studies/{study}/series/{series}/instances/{sop}"

DICOMWEB_READS = [
    # QIDO-RS query parameters
    get("alice", Q + "?limit=abc", 400, "INVALID"),
    get("alice", Q + "?limit=0", 400, "INVALID"),
    get("alice", Q + "?limit=99999999999999999999999", 200),  # capped (PS3.18 8.3.4.4.1)
    get("alice", Q + "?offset=-1", 400, "INVALID"),
    get("alice", Q + "?offset=" + "9" * 5000, 400, "INVALID"),
    get("alice", Q + "?StudyDate=2024", 400, "INVALID"),
    get("alice", Q + "?StudyDate=00000101", 400, "INVALID"),
    get("alice", Q + "?StudyDate=20240101-2024", 400, "INVALID"),
    get("alice", Q + "?00080020=x", 400, "INVALID"),
    get("alice", Q + "?StudyDate=20240101-20230101", 200),
    get("alice", Q + "?StudyDate=-", 200),
    get("alice", Q + "?PatientID=%00", 400, "INVALID"),
    get("alice", Q + "?PatientID=" + "A" * 2000, 400, "INVALID"),
    get("alice", Q + "?PatientID=*" + "%5C(%5B" * 50, 200),
    get("alice", Q + "?PatientID=" + "*" * 1000, 200),
    get("alice", Q + "?PatientID=%ED%A0%80*%FF", 200),
    get("alice", Q + "?ModalitiesInStudy=%25_%5C", 200),
    get("alice", Q + "?StudyInstanceUID=1..2", 400, "INVALID"),
    get("alice", Q + "?includefield=,,&fuzzymatching=maybe", 200),
    get("alice", Q + "?includefield=%00", 400, "INVALID"),
    get("alice", Q + "?PatientName=DOE*", 400, "INVALID"),
    get("alice", Q + "/{study}/series?SeriesInstanceUID=x", 400, "INVALID"),
    get("alice", Q + "/{study}/instances?SOPInstanceUID=1.02", 400, "INVALID"),
    get("alice", Q + "/{study}/instances?offset=1000000000", 200),
    get("dora", Q + "?PatientID=*", 403),
    # malformed UIDs in paths: the same 404 as an unknown study
    get("alice", Q + "/not-a-uid/series", 404, "NOT_FOUND"),
    get("alice", Q + "/1.2%00.3/metadata", 404, "NOT_FOUND"),
    get("alice", Q + "/" + "9" * 300, 404, "NOT_FOUND"),
    get("alice", Q + "/{study}/series/%00", 404, "NOT_FOUND"),
    get("alice", INST + "x%00/metadata", 404, "NOT_FOUND"),
    # WADO-RS Accept and Range headers
    get("alice", INST, 406, "NOT_ACCEPTABLE", HTTP_ACCEPT="text/html"),
    get("alice", INST, 406, "NOT_ACCEPTABLE", HTTP_ACCEPT=";;;,,,q=abc"),
    get("alice", INST, 200, HTTP_RANGE="bytes=9999999-1"),
    # frames
    get("alice", INST + "/frames/0", 400, "INVALID"),
    get("alice", INST + "/frames/2", 400, "INVALID"),
    get("alice", INST + "/frames/1,,x", 400, "INVALID"),
    get("alice", INST + "/frames/" + "9" * 5000, 400, "INVALID"),
    # rendered: window, Accept, unknown parameters
    get("alice", INST + "/frames/0/rendered", 400, "INVALID"),
    get("alice", INST + "/rendered?window=abc", 400, "INVALID"),
    get("alice", INST + "/rendered?window=40", 400, "INVALID"),
    get("alice", INST + "/rendered?window=nan,400", 400, "INVALID"),
    get("alice", INST + "/rendered?window=40,inf", 400, "INVALID"),
    get("alice", INST + "/rendered?window=40,0", 400, "INVALID"),
    get("alice", INST + "/rendered?window=-1.7e308,1.7e308", 400, "INVALID"),
    get("alice", INST + "/rendered?window=0,5e-324", 400, "INVALID"),
    get("alice", INST + "/rendered?window=40,400,SIGMOID&fuzzy=x", 200),
    # viewport and quality are read (PS3.18 8.3.5.1): malformed, they are refused as window is
    get("alice", INST + "/rendered?quality=x", 400, "INVALID"),
    get("alice", INST + "/rendered?viewport=a,b", 400, "INVALID"),
    get("alice", INST + "/rendered?accept=image/gif", 406, "NOT_ACCEPTABLE"),
    get("alice", INST + "/rendered", 200, HTTP_ACCEPT=";q=0, image/*"),
    # thumbnails (PS3.18 10.4.1.1.4): viewport and Accept as for rendered
    get("alice", INST + "/thumbnail", 200),
    get("alice", "/dicomweb/studies/{study}/thumbnail?viewport=a,b", 400, "INVALID"),
    get("alice", "/dicomweb/studies/{study}/series/{series}/thumbnail?viewport=1,2,3", 400),
    get("alice", INST + "/thumbnail?accept=image/gif", 406, "NOT_ACCEPTABLE"),
    get("alice", INST + "/frames/0/thumbnail", 400, "INVALID"),
    get("alice", "/dicomweb/studies/{study}/series/x%00y/thumbnail", 404, "NOT_FOUND"),
    # methods and parameter counts
    options("alice", Q),
    options("alice", INST + "/rendered"),
    options("alice", "/dicomweb/studies/{study}/thumbnail"),
    Case("anon", "options", Q, 401, "UNAUTHENTICATED"),  # who asks is checked first
    get("alice", Q + "?" + MANY_PARAMETERS, 400, "INVALID"),
    get("alice", INST + "/rendered?" + MANY_PARAMETERS, 400, "INVALID"),
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("case", DICOMWEB_READS, ids=_id)
def test_dicomweb_reads_answer_malformed_input_without_a_500(world, case):
    _assert_answer(_send(case, world), case)


# --- STOW-RS -------------------------------------------------------------------------------

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=b'


def stow(body: bytes, status: int, code: str = "", content_type: str = STOW_TYPE, **extra) -> Case:
    return Case("system", "post", Q, status, code, body, content_type, extra)


def part(data: bytes, part_type: str = "application/dicom") -> bytes:
    return b"--b\r\nContent-Type: " + part_type.encode() + b"\r\n\r\n" + data + b"\r\n"


END = b"--b--\r\n"

STOW = [
    # Content-Type and its parameters
    stow(b"{}", 415, "UNSUPPORTED_MEDIA_TYPE", "application/json"),
    stow(b"x", 415, "UNSUPPORTED_MEDIA_TYPE", 'multipart/related; type="image/png"; boundary=b'),
    stow(b"x", 400, "INVALID", "multipart/related"),
    stow(b"x", 400, "INVALID", 'multipart/related; type="application/dicom"; boundary='),
    stow(b"x", 400, "INVALID", "multipart/related; boundary=" + "b" * 71),
    stow(b"x", 400, "INVALID", "multipart/related; boundary=\xe9\xe9"),
    # RFC 2231 parameters: decoded, never a tuple where a string is expected
    stow(b"x", 400, "INVALID", "multipart/related; type*=utf-8''application%2Fdicom; boundary=b"),
    stow(b"x", 415, "UNSUPPORTED_MEDIA_TYPE", "multipart/related; type*=utf-8''image%2Fpng"),
    stow(b"x", 400, "INVALID", "multipart/related; boundary*=utf-8''b"),
    stow(b"x", 400, "INVALID", "multipart/related; boundary*=utf-8''%E2%82%AC"),
    stow(b"x", 400, "INVALID", "multipart/related; boundary*0=a; boundary*1=b"),
    # the body
    stow(b"no boundary here", 400, "INVALID"),
    stow(END, 400, "INVALID"),
    stow(b"--b\r\nContent-Type: application/dicom\r\n\r\nabc", 400, "INVALID"),
    stow(b"--b\r\nContent-Type: application/dicom", 400, "INVALID"),
    stow(b"--b\r\nno colon\r\n\r\nabc\r\n" + END, 400, "INVALID"),
    stow(b"--b\r\nX: " + b"y" * (2 << 20) + b"\r\n\r\n\r\n" + END, 400, "INVALID"),
    # parts that are empty, not DICOM, or of another type: 409, each with its reason
    stow(part(b"") + END, 409),
    stow(part(b"not dicom at all") + END, 409),
    stow(part(b"\x00" * 128 + b"DICM" + b"\xff" * 50) + END, 409),
    stow(part(b"{}", "application/json") + END, 409),
    stow(part(b"x", "application/dicom; charset*=a''b") + END, 409),
    stow(part(b"x", "application/dicom; charset*=idna''b") + END, 409),
    # Content-Length: missing, not a number, too large, shorter than the body
    stow(b"", 411, "LENGTH_REQUIRED"),
    stow(part(b"x"), 411, "LENGTH_REQUIRED", CONTENT_LENGTH="abc"),
    stow(part(b"x"), 411, "LENGTH_REQUIRED", CONTENT_LENGTH="-5"),
    stow(part(b"x"), 411, "LENGTH_REQUIRED", CONTENT_LENGTH="\xb2"),
    stow(part(b"x"), 413, "TOO_LARGE", CONTENT_LENGTH="99999999999999999999"),
    stow(part(b"xyz") + END, 400, "INVALID", CONTENT_LENGTH="10"),
]


@pytest.mark.parametrize("case", STOW, ids=_id)
def test_stow_rs_answers_malformed_bodies_without_a_500(world, case):
    _assert_answer(_send(case, world), case)


@pytest.mark.parametrize(
    "part_type",
    ["application/dicom; charset*=idna''b", "application/dicom; charset*=undefined''b", "a/b"],
)
def test_a_part_refused_for_its_headers_leaves_no_spool_file(world, settings, part_type):
    """The part's body is spooled before its Content-Type is read: a refusal must discard it
    (an undecodable RFC 2231 charset was a 500 that left the file behind)."""
    case = stow(part(b"x" * 1000, part_type) + END, 409)
    _assert_answer(_send(case, world), case)
    assert not any(path.is_file() for path in settings.SPOOL_DIR.rglob("*"))


def test_stow_rs_with_a_content_length_longer_than_the_body_is_400(world):
    body = part(b"x") + END
    case = stow(body, 400, "INVALID", CONTENT_LENGTH=str(len(body) + 500))
    # The server hands over what arrived: the body ends early (the test client would assert).
    case = replace(case, extra={**case.extra, "wsgi.input": io.BytesIO(body[:-8])})
    _assert_answer(_send(case, world), case)


# --- REST API ------------------------------------------------------------------------------

CONSENTS = "/api/v1/me/consents/"
EVENTS = "/api/v1/audit/events/"
PATIENT = "/api/v1/patients/{xavier}"
NUL_PATIENT = "/api/v1/patients/%00/"


def bearer(header: str) -> Case:
    return get("anon", "/api/v1/me/record/", 401, "UNAUTHENTICATED", HTTP_AUTHORIZATION=header)


REST = [
    # bearer token variants
    bearer("Bearer"),
    bearer("bearer x"),
    bearer("Basic Og=="),
    bearer("Bearer \xff\x00"),
    bearer("Bearer a b"),
    bearer("Bearer " + "a" * 100_000),
    get("xavier", "/api/v1/me/record/", 404, "NOT_FOUND", HTTP_X_ACT_FOR="12345"),
    get("alice", "/api/v1/me/record/", 400, "INVALID", HTTP_X_ACT_FOR="x"),
    # bodies that are not the JSON object asked for
    raw("xavier", CONSENTS, b"{", "application/json", 400, "INVALID"),
    raw("xavier", CONSENTS, b"[]", "application/json", 400, "INVALID"),
    raw("xavier", CONSENTS, b"1e999", "application/json", 400, "INVALID"),
    raw("xavier", CONSENTS, b"x", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    # nested deeper than the parser's recursion, larger than Django reads, not Unicode text
    raw("xavier", CONSENTS, b"[" * 3000 + b"]" * 3000, "application/json", 400, "INVALID"),
    raw(
        "xavier", CONSENTS, b'{"a":' * 3000 + b"1" + b"}" * 3000, "application/json", 400, "INVALID"
    ),
    raw(
        "xavier",
        CONSENTS,
        b'{"x": "' + b"y" * (3 << 20) + b'"}',
        "application/json",
        413,
        "TOO_LARGE",
    ),
    raw("xavier", CONSENTS, b'{"institutions": ["\\ud800"]}', "application/json", 400, "INVALID"),
    raw(
        "system",
        "/api/v1/care-relationships/",
        b'{"patient": "%s", "practitioner": "alice", "kind": "\\ud800"}' % XAVIER_ID.encode(),
        "application/json",
        400,
        "INVALID",
    ),
    raw("system", "/api/v1/patients/", b'{"sex": "\\udfff"}', "application/json", 400, "INVALID"),
    # methods, formats and parameter counts
    options("xavier", CONSENTS),
    options("alice", PATIENT + "/studies/"),
    Case("anon", "options", "/api/v1/me/record/", 401, "UNAUTHENTICATED"),
    get("anon", "/api/v1/me/record/?format=x", 404, "NOT_FOUND"),
    get("dora", EVENTS + "?format=x", 404, "NOT_FOUND"),
    get("anon", "/api/v1/me/record/?" + MANY_PARAMETERS, 400, "INVALID"),
    raw("xavier", CONSENTS, b"x", "multipart/form-data", 415, "UNSUPPORTED_MEDIA_TYPE"),
    post("xavier", CONSENTS, {"institutions": "CHL"}, 400),
    post("xavier", CONSENTS, {"institutions": None, "valid_until": 20270101}, 400),
    # an end of consent the database cannot store in UTC, or in the past
    post("xavier", CONSENTS, {"institutions": None, "valid_until": "9999-12-31T23:00-05:00"}, 400),
    post("xavier", CONSENTS, {"institutions": None, "valid_until": "0001-01-01T00:00+05:00"}, 400),
    # ids and UIDs in paths
    post("xavier", CONSENTS + "9999999999999999999999/revoke/", None, 404, "NOT_FOUND"),
    post("xavier", "/api/v1/me/studies/1.2%003/hide/", None, 404, "NOT_FOUND"),
    post("xavier", "/api/v1/me/exclusions/", {"practitioner": "a\x00b"}, 400),
    post("xavier", "/api/v1/me/care-relationships/", {"practitioner": ["alice"]}, 400),
    get("alice", NUL_PATIENT + "studies/", 404, "NOT_FOUND"),
    post("alice", NUL_PATIENT + "emergency-access/", {"reason": "x" * 30}, 404, ""),
    post("alice", PATIENT + "/emergency-access/", {"reason": "x" * 3000}, 400),
    post("system", "/api/v1/patients/%00/identifiers/", {"institution": "CHL"}, 400),
    post("system", NUL_PATIENT + "identifiers/", {"institution": "CHL", "value": "V"}, 404, ""),
    # paging and filters of the audit API and the access log
    get("xavier", "/api/v1/me/access-log/?cursor=0", 400, "INVALID"),
    get("xavier", "/api/v1/me/access-log/?cursor=99999999999999999999", 200),
    get("xavier", "/api/v1/me/access-log/?nope=1", 400, "INVALID"),
    get("dora", EVENTS + "?cursor=99999999999999999999&page_size=99999999999999999999", 200),
    get("dora", EVENTS + "?since=0001-01-01T00:00:00", 400, "INVALID"),
    get("dora", EVENTS + "?since=0001-01-01T00:00:00%2B05:00", 400, "INVALID"),
    get("dora", EVENTS + "?since=9999-12-31T23:00:00-05:00", 400, "INVALID"),
    get("dora", EVENTS + "?until=9999-12-31T23:59:59", 200),
    get("dora", EVENTS + "?actor=%00", 400, "INVALID"),
    get("dora", "/api/v1/audit/export/?format=csv&since=0001-01-01", 400, "INVALID"),
    get("dora", "/api/v1/emergency-accesses/?review=x", 400, "INVALID"),
    # provisioning and care assertions
    post("system", "/api/v1/patients/", {"national_id": 12, "identifiers": "x"}, 400),
    post("system", "/api/v1/care-relationships/99999999999999999/end/", None, 404, ""),
    post(
        "system",
        "/api/v1/care-relationships/",
        {"patient": XAVIER_ID, "practitioner": "alice", "kind": "admission", "start": "0001-01-01"},
        400,
    ),
]


@pytest.mark.parametrize("case", REST, ids=_id)
def test_the_rest_api_answers_malformed_input_without_a_500(world, case):
    _assert_answer(_send(case, world), case)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/schema/"])
def test_the_api_documentation_answers_options_and_unknown_formats_without_a_500(path):
    client = APIClient()
    client.raise_request_exception = False
    assert client.options(path).status_code == 405
    assert client.get(path + "?format=x").status_code == 404


@pytest.mark.parametrize("until", ["9999-12-31T23:00:00-05:00", "9999-12-31T23:30:00+00:00"])
def test_a_consent_ending_past_the_calendar_is_refused_before_anything_is_stored(world, until):
    from consent.models import Consent

    xavier, before = _client("xavier"), Consent.objects.count()
    late = {"institutions": None, "valid_until": until}
    assert xavier.post(CONSENTS, late, format="json").status_code == 400
    # Past the calendar in UTC or in Luxembourg time: it was stored behind a 400 (DRF could
    # not show it), then the patient's list failed for good (a 500 where psycopg could not
    # read it back).
    assert Consent.objects.count() == before
    assert xavier.get(CONSENTS).status_code == 200


# --- portal forms --------------------------------------------------------------------------

PORTAL = [
    ("xavier", "post", "/me/consents/", {"scope": "all", "valid_until": "9999-12-31"}, 200),
    ("xavier", "post", "/me/consents/99999999999999999999999/revoke/", {}, 302),
    # The form comes back with the error on its field (abe340f), no longer a redirect.
    ("xavier", "post", "/me/doctors/block/", {"practitioner": "nobody"}, 400),
    ("xavier", "post", "/me/doctors/declare/", {}, 400),
    ("xavier", "post", "/me/studies/1.2%003/hide/", {}, 404),
    ("xavier", "get", "/me/access-log/?before=99999999999999999999999", None, 200),
    # "²" is a digit to str.isdigit(), not to int().
    ("xavier", "get", "/me/access-log/?before=%C2%B2", None, 200),
    ("alice", "get", "/patients/?national_id=%00", None, 200),
    ("alice", "get", "/patients/%00/", None, 404),
    ("alice", "get", "/patients/{xavier}/studies/1.2%003/", None, 404),
    ("dora", "get", "/dpo/audit/?before=99999999999999999999999", None, 200),
    ("dora", "get", "/dpo/audit/?since=0001-01-01", None, 200),
    ("dora", "get", "/dpo/audit/?until=9999-12-31", None, 200),
]


@pytest.mark.parametrize(("who", "method", "path", "data", "status"), PORTAL)
def test_the_portal_answers_malformed_input_without_a_500(world, who, method, path, data, status):
    client = portal_client(*_USERS[who])
    client.raise_request_exception = False
    response = getattr(client, method)(path.format(**world), data)
    assert response.status_code == status, (response.status_code, response.content[:300])
