"""revoke_tokens locks a user out of the portal too: their sessions end on the server."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import AuditEvent
from consent.models import ApiToken
from tests.conftest import client_for
from tests.portal.helpers import PASSWORD, confirmed_device, fresh_code, set_password

pytestmark = pytest.mark.django_db

RECORD = "/api/v1/me/record/"


def _logged_in(client: Client) -> bool:
    """Whether the portal page and the API (through the session) both still serve the client."""
    page, api = client.get("/me/").status_code, client.get(RECORD).status_code
    assert (page == 200) == (api == 200), (page, api)
    return page == 200


def _second_browser(username: str) -> Client:
    """Another log-in with the same password (portal_as would set it anew, which alone ends
    the first session: Django ties a session to the password's hash)."""
    client = Client()
    assert client.post("/login/", {"username": username, "password": PASSWORD}).status_code == 302
    return client


def test_it_ends_the_users_portal_sessions_and_no_one_elses(portal_as, capsys):
    at_home = portal_as("xavier")
    on_the_ward = _second_browser("xavier")
    yvonne = portal_as("yvonne")
    api = client_for("xavier")
    assert _logged_in(at_home)
    assert _logged_in(on_the_ward)
    assert _logged_in(yvonne)
    call_command("revoke_tokens", "xavier")
    out = capsys.readouterr().out
    assert "Revoked 1 token(s) of xavier." in out
    assert "Ended 2 portal session(s) of xavier." in out
    assert at_home.cookies["sessionid"].value not in out  # counts, never a session key
    assert not _logged_in(at_home)
    assert not _logged_in(on_the_ward)
    assert at_home.get(RECORD).status_code == 401
    assert api.get(RECORD).status_code == 401
    assert _logged_in(yvonne)


def test_a_log_in_waiting_for_its_second_factor_cannot_be_completed(cast):
    set_password("alice")
    confirmed_device("alice")
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response["Location"] == "/login/verify/"
    call_command("revoke_tokens", "alice")
    response = client.post("/login/verify/", {"token": fresh_code("alice")})
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session


def test_it_logs_an_administrator_out_of_the_admin(cast, admin_user, admin_client_verified):
    assert admin_client_verified.get("/admin/consent/institution/").status_code == 200
    call_command("revoke_tokens", admin_user.username)
    response = admin_client_verified.get("/admin/consent/institution/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_audit_event_counts_the_sessions_ended(portal_as):
    portal_as("xavier")
    call_command("revoke_tokens", "xavier")
    event = AuditEvent.objects.filter(action="auth.token_revoke").get()
    assert event.detail == {"username": "xavier", "count": 0, "sessions": 1}


def test_it_says_so_when_the_session_engine_keeps_sessions_it_cannot_end(cast, settings):
    client_for("xavier")
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    with pytest.raises(CommandError, match=r"No portal session was ended.*Deactivate"):
        call_command("revoke_tokens", "xavier")
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()


def test_a_deactivated_account_is_logged_out_and_its_tokens_refused(portal_as):
    # What the admin's "Active" box does (no gap there): Django's ModelBackend refuses the
    # session of an inactive user at the next request, and the bearer check refuses its token.
    xavier, api = portal_as("xavier"), client_for("xavier")
    assert _logged_in(xavier)
    get_user_model().objects.filter(username="xavier").update(is_active=False)
    assert not _logged_in(xavier)
    assert api.get(RECORD).status_code == 401
