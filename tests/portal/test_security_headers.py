"""Response headers of every kind of response: no browser cache, a Content-Security-Policy."""

import re
from pathlib import Path

import pytest
from django.conf import settings

from anim_gateway.middleware import PORTAL_POLICY
from tests.conftest import XAVIER_ID
from tests.portal.conftest import admit, consent_to_all

pytestmark = pytest.mark.django_db

KINDS = {
    "portal page": "/patients/{patient}/",
    "REST JSON": "/api/v1/patients/{patient}/studies/",
    "REST browsable HTML": "/api/v1/patients/{patient}/studies/?format=api",
    "QIDO-RS": "/dicomweb/studies?PatientID=CHEM-X1",
    "WADO-RS metadata": "/dicomweb/studies/{study}/metadata",
    "WADO-RS instances": "/dicomweb/studies/{study}",
    "WADO-RS frames": "{instance}/frames/1",
    "rendered JPEG": "{instance}/rendered",
    "rendered PNG": "{instance}/rendered?accept=image/png",
    "DICOMweb error": "/dicomweb/studies/1.2.3/metadata",
    "REST error": "/api/v1/patients/0000000000000/studies/",
    "unknown URL": "/no/such/page/",
}


@pytest.fixture
def alice(cast, xavier_studies, portal_as):
    """Dr Alice, logged in to the portal, allowed to see Xavier's shared CT."""
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    return portal_as("alice")


def _get(client, studies: dict, kind: str):
    ct = studies["ct"]
    study = f"/dicomweb/studies/{ct.study_uid}"
    instance = f"{study}/series/{ct.series_uid}/instances/{ct.sop_instance_uid}"
    url = KINDS[kind].format(patient=XAVIER_ID, study=ct.study_uid, instance=instance)
    response = client.get(url)
    assert response.status_code < 500, kind
    return response


@pytest.mark.parametrize("kind", KINDS)
def test_it_keeps_no_response_in_the_browsers_cache(alice, xavier_studies, kind):
    # A shared hospital workstation: the next user must not find a patient's images or pages
    # in the browser's cache (Back button, disk cache).
    response = _get(alice, xavier_studies, kind)
    assert "no-store" in response.get("Cache-Control", ""), response.get("Cache-Control")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_stylesheet_stays_cacheable(client, db):
    response = client.get("/static/portal.css")
    assert "no-store" not in response.get("Cache-Control", "")


def _policy(response) -> dict[str, str]:
    header = response.get("Content-Security-Policy", "")
    return {d.split()[0]: d.strip() for d in header.split(";") if d.strip()}


@pytest.mark.parametrize("kind", ["portal page", "REST browsable HTML"])
def test_html_pages_run_only_their_own_scripts(alice, xavier_studies, kind):
    policy = _policy(_get(alice, xavier_studies, kind))
    assert policy["script-src"] == "script-src 'self'"
    assert policy["style-src"] == "style-src 'self'"
    assert policy["object-src"] == "object-src 'none'"
    assert policy["base-uri"] == "base-uri 'none'"
    assert policy["form-action"] == "form-action 'self'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert not any("unsafe" in directive for directive in policy.values())


def test_the_log_in_page_has_the_policy_too(client, db):
    assert _policy(client.get("/login/"))["script-src"] == "script-src 'self'"


def test_https_responses_tell_the_browser_to_keep_to_https(client, db):
    assert client.get("/login/", secure=True)["Strict-Transport-Security"] == "max-age=31536000"
    # Sent over plain HTTP it would mean nothing (and could be an attacker's): not sent.
    assert "Strict-Transport-Security" not in client.get("/login/")


@pytest.mark.parametrize(
    "kind",
    [k for k in KINDS if k not in ("portal page", "REST browsable HTML")],
)
def test_data_opened_as_a_document_runs_nothing(alice, xavier_studies, kind):
    # A DICOM header or JSON string holding markup, opened by a browser, is sandboxed.
    policy = _policy(_get(alice, xavier_studies, kind))
    assert policy["default-src"] == "default-src 'none'"
    assert "sandbox" in policy


def test_the_api_docs_run_under_the_portal_policy(client, db):
    page = client.get("/api/docs/")  # open to anyone, as the schema is: no patient data
    assert page.status_code == 200
    assert page["Content-Security-Policy"] == PORTAL_POLICY
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert b"<script" not in script.content  # served as a file, not inline in the page


ASSET = re.compile(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"', re.IGNORECASE)


def test_the_api_docs_load_only_the_gateways_own_files(client, db):
    # Hospital networks may have no Internet, and the policy allows no other origin.
    html = client.get("/api/docs/").content.decode()
    assert not re.search(r"https?:|//cdn", html)
    assets = ASSET.findall(html)
    assert len(assets) == 6  # favicon, two stylesheets, Swagger UI's two scripts, set-up
    for url in assets:
        assert re.match(r"/[^/]", url), url  # this origin, no other
        response = client.get(url.replace("&amp;", "&"))
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body, url
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in assets


TEMPLATE_DIRS = [
    path
    for app in ("anim_gateway", "consent", "studies", "audit")
    for path in (Path(settings.BASE_DIR) / app / "templates").rglob("*.html")
]
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|\son[a-z]+\s*=|\sstyle\s*=", re.IGNORECASE)


@pytest.mark.parametrize("template", TEMPLATE_DIRS, ids=lambda p: p.name)
def test_no_template_holds_what_the_policy_refuses(template):
    # Inline scripts, event handlers and style attributes would be refused by the browser.
    assert not INLINE.findall(template.read_text()), template
