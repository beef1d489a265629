"""What a person does in the portal, as reusable browser steps."""

import time
from base64 import b32decode

from django_otp.oath import TOTP

from anim_gateway.enrolment import enrolment_code_issue
from tests.portal.helpers import PASSWORD, fresh_code, set_password


def code_from_secret(secret: str) -> str:
    """What the person's authenticator app computes from the key shown on the page."""
    totp = TOTP(b32decode(secret.replace(" ", "")))
    totp.time = time.time()
    return f"{totp.token():06d}"


def log_in(page, base_url: str, username: str, institution: str | None = None) -> None:
    """Password, then the TOTP code (enrolling first, with an administrator's enrolment code,
    if needed), then the hospital if asked."""
    set_password(username)
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    if "/login/enrol/" in page.url:
        secret = page.get_by_test_id("totp-secret").inner_text()
        page.get_by_label("Enrolment code").fill(enrolment_code_issue(username=username))
        page.get_by_label("6-digit code").fill(code_from_secret(secret))
        page.get_by_role("button", name="Confirm and continue").click()
        page.wait_for_load_state()
    elif "/login/verify/" in page.url:
        page.get_by_label("6-digit code").fill(fresh_code(username))
        page.get_by_role("button", name="Verify").click()
        page.wait_for_load_state()
    if "/login/institution/" in page.url:
        page.get_by_label(f"({institution})").check()
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
