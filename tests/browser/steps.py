"""What a person does in the portal, as reusable browser steps."""

from tests.portal.helpers import PASSWORD, fresh_code, set_password


def log_in(page, base_url: str, username: str, institution: str | None = None) -> None:
    """Password, then the TOTP code when asked, then the hospital when asked."""
    set_password(username)
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    if "/login/verify/" in page.url:
        page.get_by_label("6-digit code").fill(fresh_code(username))
        page.get_by_role("button", name="Verify").click()
        page.wait_for_load_state()
    if "/login/institution/" in page.url:
        page.get_by_label(f"({institution})").check()
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
