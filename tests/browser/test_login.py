"""A practitioner's first log-in in a real browser: password, TOTP enrolment with the
administrator's enrolment code, hospital choice, the change of a password an administrator
set; a deep link followed through them."""

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.enrolment import enrolment_code_issue
from consent.models import Affiliation, Institution
from consent.services.passwords import password_set_for_user
from tests.browser.conftest import screenshot
from tests.browser.steps import code_from_secret
from tests.conftest import ADMIN, XAVIER_ID
from tests.portal.conftest import admit
from tests.portal.helpers import PASSWORD, confirmed_device, fresh_code, set_password

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_practitioner_enrols_totp_and_chooses_a_hospital(cast, live_server, page):
    Affiliation.objects.create(
        practitioner=cast.charlie, institution=Institution.objects.get(code="CHL")
    )
    set_password("charlie")
    enrolment_code = enrolment_code_issue(username="charlie")  # given to him in person
    page.goto(f"{live_server.url}/")
    screenshot(page, "01-login")
    page.get_by_label("Username").fill("charlie")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    page.get_by_role("heading", name="Set up your authenticator").wait_for()
    assert page.locator(".qr svg").is_visible()
    secret = page.get_by_test_id("totp-secret").inner_text()
    screenshot(page, "02-totp-enrol")
    page.get_by_label("Enrolment code").fill(enrolment_code.lower().replace("-", " "))
    page.get_by_label("6-digit code").fill(code_from_secret(secret))
    page.get_by_role("button", name="Confirm and continue").click()

    page.get_by_role("heading", name="Which hospital are you working for?").wait_for()
    screenshot(page, "03-choose-institution")
    page.get_by_label("Centre Hospitalier de Luxembourg (CHL)").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{live_server.url}/patients/")
    assert page.get_by_text("Acting at CHL").is_visible()


def test_a_colleagues_link_opens_after_the_code_and_the_hospital_choice(cast, live_server, page):
    Affiliation.objects.create(
        practitioner=cast.alice, institution=Institution.objects.get(code="HRS")
    )
    admit(cast.alice, cast.xavier)
    set_password("alice")
    confirmed_device("alice")
    link = f"{live_server.url}/patients/{XAVIER_ID}/"  # sent by a colleague
    page.goto(link)
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("6-digit code").fill(fresh_code("alice"))
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("heading", name="Which hospital are you working for?").wait_for()
    page.get_by_label("Centre Hospitalier de Luxembourg (CHL)").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(link)
    page.get_by_role("heading", name="Xavier Demo").wait_for()
    assert page.get_by_text("Acting at CHL").is_visible()


def test_a_wrong_password_is_refused_politely(cast, live_server, page):
    set_password("xavier")
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("xavier")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Continue").click()
    assert page.get_by_role("alert").inner_text() == "Wrong username or password."


def test_an_enrolment_without_the_administrators_code_is_refused(cast, live_server, page):
    # Whoever learnt the initial password cannot set up their own phone as the second factor.
    set_password("alice")
    enrolment_code_issue(username="alice")  # given to Alice, not to whoever holds the password
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    secret = page.get_by_test_id("totp-secret").inner_text()
    page.get_by_label("Enrolment code").fill("AAAA-BBBB-CCCC-DDDD")
    page.get_by_label("6-digit code").fill(code_from_secret(secret))
    page.get_by_role("button", name="Confirm and continue").click()
    page.get_by_role("heading", name="Set up your authenticator").wait_for()
    code_field = page.get_by_label("Enrolment code")
    assert code_field.get_attribute("aria-invalid") == "true"
    assert (
        "This enrolment code is not valid" in page.locator("#id_enrolment_code_error").inner_text()
    )
    assert not TOTPDevice.objects.filter(user__username="alice", confirmed=True).exists()
    page.goto(f"{live_server.url}/patients/")
    assert "/login/" in page.url


def test_a_password_set_by_an_administrator_is_changed_before_the_link_opens(
    cast, live_server, page
):
    Affiliation.objects.create(
        practitioner=cast.alice, institution=Institution.objects.get(code="HRS")
    )
    admit(cast.alice, cast.xavier)
    set_password("alice")
    password_set_for_user(user=cast.alice.user, acting=ADMIN, via="admin_password")
    confirmed_device("alice")
    link = f"{live_server.url}/patients/{XAVIER_ID}/"  # sent by a colleague
    page.goto(link)
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("6-digit code").fill(fresh_code("alice"))
    page.get_by_role("button", name="Verify").click()

    page.get_by_role("heading", name="Change your password").wait_for()
    assert page.get_by_role("alert").inner_text() == (
        "Your password was set by an administrator: choose your own before going on."
    )
    screenshot(page, "04-forced-password-change")
    page.goto(link)  # nothing else opens first
    page.get_by_role("heading", name="Change your password").wait_for()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("alices-own-password-7")
    page.get_by_label("New password again").fill("alices-own-password-7")
    page.get_by_role("button", name="Change password").click()

    page.get_by_role("heading", name="Which hospital are you working for?").wait_for()
    page.get_by_label("Centre Hospitalier de Luxembourg (CHL)").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(link)
    page.get_by_role("heading", name="Xavier Demo").wait_for()
