"""A form sent back with an error: the focus starts on the field, which its error describes."""

import pytest
from playwright.sync_api import expect

from tests.browser.steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_error_describes_the_field_and_the_focus_starts_there(cast, live_server, page):
    log_in(page, live_server.url, "yvonne")
    page.goto(f"{live_server.url}/me/doctors/")
    page.get_by_role("button", name="Declare as my doctor").click()
    page.wait_for_load_state()
    declare = page.get_by_label("Practitioner to declare as my doctor")
    expect(declare).to_be_focused()
    expect(declare).to_have_accessible_description("Choose a practitioner from the list.")
    expect(page.get_by_label("Practitioner to block")).to_have_accessible_description("")

    page.goto(f"{live_server.url}/me/consents/")
    page.get_by_label("Only the hospitals I choose").check()
    page.get_by_role("button", name="Grant consent").click()
    page.wait_for_load_state()
    hospitals = page.get_by_role("group", name="Hospitals")
    expect(hospitals).to_be_enabled()
    expect(hospitals).to_have_accessible_description("Choose at least one hospital.")
    expect(hospitals.get_by_role("checkbox").first).to_be_focused()
