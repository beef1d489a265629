"""Significant, hard-to-undo actions ask first in the browser; answering no changes nothing."""

import pytest

from consent.models import Consent, EmergencyAccess
from tests.browser.steps import log_in
from tests.conftest import XAVIER_ID

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def answer(page, accept: bool) -> list[str]:
    """Answer the next confirmation dialog; the list receives its question."""
    asked: list[str] = []

    def on_dialog(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", on_dialog)
    return asked


def test_revoking_a_consent_asks_first(cast, live_server, page):
    consent = Consent.objects.create(patient=cast.xavier, all_members=True, granted_by="test")
    log_in(page, live_server.url, "xavier")
    page.goto(f"{live_server.url}/me/consents/")

    asked = answer(page, accept=False)
    page.get_by_role("button", name="Revoke this consent").click()
    assert asked
    assert asked[0].startswith("Revoke this consent?")
    consent.refresh_from_db()
    assert consent.revoked_at is None

    answer(page, accept=True)
    page.get_by_role("button", name="Revoke this consent").click()
    assert "Consent revoked" in page.get_by_role("status").inner_text()
    consent.refresh_from_db()
    assert consent.revoked_at is not None


def test_breaking_the_glass_asks_first_and_keeps_the_reason(cast, live_server, page):
    log_in(page, live_server.url, "bob", institution="CHEM")
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/emergency/")
    reason = page.get_by_label("Reason")
    reason.fill("Unconscious after a road accident, brought to our ER.")

    asked = answer(page, accept=False)
    page.get_by_role("button", name="Declare emergency access").click()
    assert asked
    assert "4 hours" in asked[0]
    assert not EmergencyAccess.objects.exists()
    assert reason.input_value() == "Unconscious after a road accident, brought to our ER."
