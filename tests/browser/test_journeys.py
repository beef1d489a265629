"""The three main journeys in a real browser: practitioner, patient, DPO (with screenshots)."""

import pytest

from consent.models import Affiliation, Consent, Institution
from tests.browser.conftest import screenshot
from tests.browser.steps import log_in
from tests.conftest import XAVIER_ID
from tests.portal.conftest import admit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def nav(page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def test_a_practitioner_finds_a_patient_and_sees_why_studies_are_withheld(
    cast, xavier_studies, live_server, page
):
    Affiliation.objects.create(
        practitioner=cast.charlie, institution=Institution.objects.get(code="CHL")
    )
    consent = Consent.objects.create(patient=cast.xavier, granted_by="xavier")
    consent.institutions.set([Institution.objects.get(code="HRS")])
    admit(cast.charlie, cast.xavier)

    log_in(page, live_server.url, "charlie", institution="CHL")
    page.get_by_role("heading", name="Find a patient").wait_for()
    screenshot(page, "10-practitioner-search")
    page.get_by_label("National identifier").fill(XAVIER_ID)
    page.get_by_role("button", name="Show studies").click()

    withheld = page.get_by_role("region", name="Studies withheld")
    assert (
        "CHEM: The patient has not consented to sharing with your hospital."
        in withheld.inner_text()
    )
    assert page.get_by_role("link", name="declare an emergency access").is_visible()
    screenshot(page, "11-practitioner-withheld")

    # Acting for HRS instead, where Xavier consented: the CHEM study is shared.
    page.get_by_role("link", name="Acting at CHL").click()
    page.get_by_label("Hôpitaux Robert Schuman (HRS)").check()
    page.get_by_role("button", name="Continue").click()
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/")
    assert page.get_by_role("region", name="Studies withheld").count() == 0
    row = page.get_by_role("row").filter(has_text="CT thorax")
    assert "CHEM" in row.inner_text()
    assert page.get_by_text("MR knee").count() == 0  # hidden by the patient
    screenshot(page, "12-practitioner-studies")

    row.get_by_role("link", name="Open").click()
    preview = page.locator(".preview img").first
    preview.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=preview.element_handle()
    )
    screenshot(page, "13-practitioner-study")


def test_a_patient_grants_and_revokes_consent_and_sees_who_can_see(
    cast, xavier_studies, live_server, page
):
    admit(cast.alice, cast.xavier)
    page.on("dialog", lambda dialog: dialog.accept())  # revoking and hiding ask first
    log_in(page, live_server.url, "xavier")
    page.get_by_role("heading", name="My shared record").wait_for()
    screenshot(page, "20-patient-record")

    nav(page, "Consents")
    page.get_by_label("All member hospitals").check()
    page.get_by_role("button", name="Grant consent").click()
    assert "Consent granted" in page.get_by_role("status").inner_text()
    assert (
        page.get_by_role("row")
        .filter(has_text="All member hospitals")
        .get_by_text("Active")
        .is_visible()
    )
    screenshot(page, "21-patient-consents")

    nav(page, "Who can see")
    chl = page.get_by_role("region", name="Centre Hospitalier de Luxembourg CHL")
    assert chl.get_by_text("Can see", exact=True).is_visible()
    assert "Dr Alice Arend" in chl.inner_text()
    screenshot(page, "22-patient-who-can-see")

    nav(page, "Consents")
    page.get_by_role("button", name="Revoke").click()
    assert "Consent revoked" in page.get_by_role("status").inner_text()
    assert (
        page.get_by_role("row")
        .filter(has_text="All member hospitals")
        .get_by_text("Revoked")
        .is_visible()
    )

    nav(page, "Who can see")
    chl = page.get_by_role("region", name="Centre Hospitalier de Luxembourg CHL")
    assert chl.get_by_text("Cannot see", exact=True).is_visible()
    assert "You have not consented to sharing with CHL." in chl.inner_text()

    nav(page, "My studies")
    page.get_by_role("row").filter(has_text="CT thorax").get_by_role("button", name="Hide").click()
    assert page.get_by_role("row").filter(has_text="CT thorax").get_by_text("Hidden").is_visible()
    screenshot(page, "23-patient-studies")
    nav(page, "My doctors")
    screenshot(page, "24-patient-doctors")
    nav(page, "Access log")
    screenshot(page, "25-patient-access-log")


def test_the_dpo_searches_the_audit_log_verifies_it_and_reviews_an_emergency(
    cast, xavier_studies, live_server, page
):
    admit(cast.alice, cast.xavier)
    page.on("dialog", lambda dialog: dialog.accept())  # breaking the glass asks first
    log_in(page, live_server.url, "bob", institution="CHEM")
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/")  # refused: no care relationship
    assert page.get_by_role("heading", name="Access refused").is_visible()
    screenshot(page, "14-practitioner-refused")
    page.get_by_role("link", name="Declare an emergency").click()
    page.get_by_label("Reason").fill("Unconscious after a road accident, brought to our ER.")
    screenshot(page, "15-practitioner-emergency")
    page.get_by_role("button", name="Declare emergency access").click()
    assert "Emergency access declared" in page.get_by_role("status").inner_text()
    assert page.get_by_role("row").filter(has_text="CT thorax").is_visible()
    page.get_by_role("button", name="Log out").click()

    log_in(page, live_server.url, "dora")
    page.get_by_role("heading", name="Audit log").wait_for()
    page.get_by_label("Patient", exact=True).fill(XAVIER_ID)
    page.get_by_label("Outcome").select_option("deny")
    page.get_by_role("button", name="Search").click()
    rows = page.get_by_role("row").filter(has_text="NO_CARE_RELATIONSHIP")
    assert rows.count() == 1
    assert "Dr Bob Becker" in rows.inner_text()
    screenshot(page, "30-dpo-audit-search")

    nav(page, "Integrity")
    page.get_by_role("button", name="Verify now").click()
    assert "The audit log verifies." in page.get_by_role("status").inner_text()
    screenshot(page, "31-dpo-verify")

    nav(page, "Emergency reviews")
    assert page.get_by_text("Unconscious after a road accident").is_visible()
    screenshot(page, "32-dpo-emergencies")
    page.get_by_label("Justified", exact=True).check()
    page.get_by_label("Note").fill("ER admission confirmed with CHEM.")
    page.get_by_role("button", name="Record review").click()
    assert "Review recorded." in page.get_by_role("status").inner_text()
    assert (
        page.get_by_role("row")
        .filter(has_text="Dr Bob Becker")
        .get_by_text("Justified")
        .is_visible()
    )


def test_a_patient_grants_consent_to_chosen_hospitals(cast, live_server, page):
    log_in(page, live_server.url, "yvonne")
    nav(page, "Consents")
    chem = page.get_by_label("Centre Hospitalier Emile Mayrisch (CHEM)")
    assert chem.is_disabled()  # "All member hospitals" is the default
    page.get_by_label("Only the hospitals I choose").check()
    chem.check()
    page.get_by_role("button", name="Grant consent").click()
    row = page.get_by_role("row").filter(has_text="CHEM")
    assert row.get_by_text("Active").is_visible()
    assert sorted(i.code for i in Consent.objects.get(patient=cast.yvonne).institutions.all()) == [
        "CHEM"
    ]
