"""In a real browser: markup from DICOM headers and people's text runs no script, and the
portal's own pages work under its Content-Security-Policy."""

import pytest

from consent.models import Practitioner
from studies import storage
from studies.models import Instance
from tests.browser.conftest import screenshot
from tests.browser.steps import log_in
from tests.conftest import XAVIER_ID
from tests.portal.conftest import admit, consent_to_all, ingest_copy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Each sets window.xss if a browser ever runs it. 64 characters at most (a LO value).
IMG = '<img src=x onerror="window.xss=1">'
SCRIPT = "<script>window.xss=2</script>"
QUOTE = '"><svg onload="window.xss=3">'


class Watch:
    """Dialogs opened and policy violations reported while the journey runs."""

    def __init__(self, page) -> None:
        self.dialogs: list[str] = []
        self.violations: list[str] = []
        self.confirm = ""  # the start of the portal's own question to accept, once
        page.on("dialog", self._dialog)
        page.on("console", self._console)

    def _dialog(self, dialog) -> None:
        if self.confirm and dialog.message.startswith(self.confirm):
            self.confirm = ""
            dialog.accept()
            return
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)


def assert_clean(page, watch: Watch) -> None:
    page.wait_for_load_state("load")
    assert page.evaluate("() => window.xss") is None, page.url
    assert watch.dialogs == []
    assert watch.violations == [], page.url


def test_header_values_and_free_text_are_shown_as_text(
    cast, storage_dir, tmp_path, live_server, page
):
    ingest_copy(
        tmp_path,
        "CT_small.dcm",
        "CHEM",
        PatientID="CHEM-X1",
        StudyDescription=IMG,
        SeriesDescription=SCRIPT,
        AccessionNumber="<b>A1</b>",
        InstitutionName=QUOTE,
        ReferringPhysicianName="<i>Ref</i>",
    )
    Practitioner.objects.filter(pk=cast.alice.pk).update(display_name=f"Dr {QUOTE} {IMG}")
    watch = Watch(page)

    # Alice (no consent, no care relationship) breaks the glass with a reason holding markup.
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/emergency/")
    page.get_by_label("Reason").fill(f"Unconscious in our ER {SCRIPT} {IMG}")
    watch.confirm = "Declare an emergency access to this patient's images"
    page.get_by_role("button", name="Declare emergency access").click()
    assert_clean(page, watch)
    row = page.get_by_role("row").filter(has_text=IMG)
    assert row.is_visible()  # the description, as text
    row.get_by_role("link", name="Open").click()
    assert page.get_by_role("heading", name=IMG).is_visible()
    assert page.get_by_text(SCRIPT).first.is_visible()
    assert_clean(page, watch)
    page.get_by_role("button", name="Log out").click()

    # Xavier reads who opened his record; the doctors page lists Alice's name.
    log_in(page, live_server.url, "xavier")
    for path in ("/me/access-log/", "/me/doctors/", "/me/who-can-see/", "/me/studies/"):
        page.goto(f"{live_server.url}{path}")
        assert_clean(page, watch)
    page.get_by_role("button", name="Log out").click()

    # The DPO reviews the emergency: the reason and the name, as text.
    log_in(page, live_server.url, "dora")
    page.goto(f"{live_server.url}/dpo/emergencies/")
    assert page.get_by_text(f"Unconscious in our ER {SCRIPT} {IMG}").is_visible()
    assert_clean(page, watch)
    page.goto(f"{live_server.url}/dpo/audit/?patient={XAVIER_ID}")
    assert_clean(page, watch)


def test_markup_injected_into_a_page_cannot_run(cast, live_server, page):
    # Defence in depth: should an escaping mistake ever let markup through, the policy
    # refuses inline handlers and scripts.
    watch = Watch(page)
    response = page.goto(f"{live_server.url}/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.evaluate(
        """() => {
            document.body.insertAdjacentHTML('beforeend', '<img src="x" onerror="window.xss=1">');
            const script = document.createElement('script');
            script.textContent = 'window.xss = 2';
            document.body.append(script);
        }"""
    )
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.xss") is None
    assert watch.violations  # the browser refused them


def test_the_portal_scripts_work_under_the_policy(cast, live_server, page):
    watch = Watch(page)
    log_in(page, live_server.url, "xavier")
    page.goto(f"{live_server.url}/me/access-log/")
    page.get_by_label("Include my own actions").check()
    page.wait_for_url("**/me/access-log/?mine=1")  # the box submits its form by itself
    page.goto(f"{live_server.url}/me/")
    page.get_by_role("button", name="Close my shared record").click()
    assert len(watch.dialogs) == 1
    assert watch.dialogs[0].startswith("Close your shared record?")
    assert page.get_by_role("button", name="Close my shared record").is_visible()  # dismissed
    assert watch.violations == []


def test_a_series_without_a_preview_says_so_under_the_policy(
    cast, xavier_studies, live_server, page
):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    ct = xavier_studies["ct"]
    lost = Instance.objects.get(sop_instance_uid=ct.sop_instance_uid)
    storage.object_delete(key=lost.storage_key)  # the rendered image now fails
    watch = Watch(page)
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/studies/{ct.study_uid}/")
    page.get_by_text("No preview for this series.").wait_for()  # portal.js replaced the image
    assert page.locator(".preview img").count() == 0
    assert watch.violations == []


def test_the_api_docs_render_from_the_gateway_alone_under_the_policy(live_server, page):
    # Hospital networks may have no Internet: Swagger UI comes from the gateway's static
    # files, and runs under the portal's policy (no inline script or style allowed).
    watch = Watch(page)
    errors: list[str] = []
    requested: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto(f"{live_server.url}/api/docs/")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    page.get_by_text("Anim Gateway API").first.wait_for()
    operations = page.locator(".opblock")
    operations.first.wait_for()
    assert operations.count() > 10
    assert (
        page.locator(".opblock-summary-path").get_by_text("/api/v1/me/record/", exact=True).count()
        >= 1
    )
    screenshot(page, "api-docs")
    operations.filter(has_text="/api/v1/me/record/").first.locator(".opblock-summary").click()
    page.get_by_role("button", name="Try it out").first.wait_for()  # expanded, with examples
    page.locator(".opblock-body .highlight-code").first.wait_for()
    assert_clean(page, watch)
    assert errors == []
    elsewhere = [url for url in requested if not url.startswith((live_server.url, "data:"))]
    assert elsewhere == []
