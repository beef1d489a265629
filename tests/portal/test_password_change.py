"""Every portal user changes their own password: audited, throttled, other sessions ended."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client

from audit.errors import AuditUnavailable
from audit.models import AuditEvent
from consent.models import ApiToken
from tests.conftest import client_for
from tests.portal.helpers import PASSWORD, confirmed_device, fresh_code, set_password

pytestmark = pytest.mark.django_db

PAGE = "/account/password/"
NEW = "a-new-portal-password-2"
WRONG = "not-my-password-at-all"


def change(client: Client, old: str = PASSWORD, new: str = NEW, again: str | None = None):
    fields = {"old_password": old, "new_password1": new, "new_password2": again or new}
    return client.post(PAGE, fields)


def password_is(username: str, password: str) -> bool:
    return get_user_model().objects.get(username=username).check_password(password)


def logs_in(username: str, password: str) -> bool:
    response = Client().post("/login/", {"username": username, "password": password})
    return response.status_code == 302


def password_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="account.password_change").order_by("seq"))


def test_it_changes_the_password_so_the_new_one_logs_in_and_the_old_one_not(portal_as):
    client = portal_as("xavier")
    assert client.get(PAGE).status_code == 200
    response = change(client)
    assert response.url == "/"
    page = client.get("/", follow=True)
    assert b"Your password has been changed." in page.content
    assert logs_in("xavier", NEW)
    assert not logs_in("xavier", PASSWORD)
    [event] = password_events()
    assert (event.actor_username, event.outcome, event.reason_code) == ("xavier", "permit", "")
    assert event.detail == {"other_sessions_ended": 0, "tokens_revoked": 0}


@pytest.mark.parametrize(
    ("username", "institution"), [("alice", "CHL"), ("dora", None), ("root", None)]
)
def test_practitioners_the_dpo_and_administrators_change_theirs_too(
    portal_as, admin_user, username, institution
):
    client = portal_as(username, institution)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert b"Current password" in page.content
    assert change(client).url == "/"
    assert password_is(username, NEW)
    assert client.get(PAGE).status_code == 200  # still logged in, second factor included


def test_the_header_links_to_the_page(portal_as):
    page = portal_as("xavier").get("/me/")
    assert f'<a href="{PAGE}">Change password</a>'.encode() in page.content


def test_it_keeps_this_session_and_ends_the_users_other_sessions(portal_as):
    here = portal_as("xavier")
    elsewhere = Client()  # a session left open on a ward's computer, or stolen
    elsewhere.post("/login/", {"username": "xavier", "password": PASSWORD})
    yvonne = portal_as("yvonne")
    stolen_key = elsewhere.cookies["sessionid"].value
    assert elsewhere.get("/me/").status_code == 200
    change(here)
    assert not Session.objects.filter(session_key=stolen_key).exists()  # gone on the server
    assert elsewhere.get("/me/").status_code == 302
    assert elsewhere.get("/api/v1/me/record/").status_code == 401
    assert here.get("/me/").status_code == 200
    assert yvonne.get("/me/").status_code == 200
    [event] = password_events()
    assert event.detail == {"other_sessions_ended": 1, "tokens_revoked": 0}


def test_a_log_in_waiting_for_its_code_cannot_be_completed_after_the_change(portal_as):
    # Whoever learnt the old password and stands at the code step must not get in.
    alice = portal_as("alice", "CHL")
    intruder = Client()
    response = intruder.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.url == "/login/verify/"
    change(alice)
    response = intruder.post("/login/verify/", {"token": fresh_code("alice")})
    assert response.url == "/login/"
    assert "_auth_user_id" not in intruder.session


def test_a_wrong_current_password_is_refused_and_audited_without_the_password(portal_as):
    client = portal_as("xavier")
    response = change(client, old=WRONG)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'aria-describedby="id_old_password_error"' in html
    assert "This is not your current password." in html
    assert password_is("xavier", PASSWORD)
    [event] = password_events()
    assert (event.outcome, event.reason_code, event.detail) == ("deny", "WRONG_PASSWORD", {})
    row = str(AuditEvent.objects.filter(pk=event.pk).values().get())
    assert WRONG not in row
    assert NEW not in row


def test_wrong_current_passwords_count_in_the_log_in_throttle(portal_as):
    client = portal_as("xavier")  # a session left open: its finder tries to learn the password
    for _ in range(5):
        assert change(client, old=WRONG).status_code == 400
    response = change(client)  # the right one, too late
    assert b"Too many failed attempts" in response.content
    assert password_is("xavier", PASSWORD)
    throttled = password_events()[-1]
    assert (throttled.reason_code, throttled.detail) == ("THROTTLED", {"counter": "username"})
    assert not logs_in("xavier", PASSWORD)  # the log-in counts the same failures


def test_a_right_current_password_is_not_counted_as_a_failure(portal_as, settings):
    settings.PORTAL_LOGIN_MAX_FAILURES = 1
    client = portal_as("xavier")
    assert change(client, new="short", again="short").status_code == 400
    assert change(client).url == "/"  # neither attempt was a failure


def test_a_password_the_validators_refuse_is_said_next_to_its_field(portal_as):
    client = portal_as("xavier")
    response = change(client, new="short")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'aria-invalid="true"' in html
    assert "This password is too short. It must contain at least 8 characters." in html
    assert html.index('id="id_new_password2_error"') > html.index('id="id_new_password2"')
    assert password_is("xavier", PASSWORD)
    assert not password_events()  # the user's own typing, not a guess
    mismatch = change(client, again="something-else-entirely")
    assert "The two password fields" in mismatch.content.decode()
    assert password_is("xavier", PASSWORD)


def test_an_anonymous_visitor_is_sent_to_the_log_in(cast):
    response = Client().get(PAGE)
    assert response.url == f"/login/?next={PAGE}"
    assert Client().post(PAGE, {"old_password": PASSWORD}).url.startswith("/login/")


def test_a_log_in_waiting_for_its_code_cannot_open_the_page(cast):
    set_password("alice")
    confirmed_device("alice")
    client = Client()
    client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert client.get(PAGE).url == f"/login/?next={PAGE}"
    assert change(client).url.startswith("/login/")
    assert password_is("alice", PASSWORD)


def test_a_change_without_the_csrf_token_is_refused(cast):
    set_password("xavier")
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    fields = {"username": "xavier", "password": PASSWORD, "csrfmiddlewaretoken": token}
    assert client.post("/login/", fields).status_code == 302
    assert change(client).status_code == 403
    assert password_is("xavier", PASSWORD)


def test_the_administrations_own_password_page_leads_to_this_one(cast, admin_client_verified):
    # Django's admin page would change the password unthrottled, unaudited, sessions kept.
    response = admin_client_verified.get("/admin/password_change/")
    assert (response.status_code, response.url) == (302, PAGE)
    forged = admin_client_verified.post(
        "/admin/password_change/",
        {"old_password": "not-used-here-123", "new_password1": NEW, "new_password2": NEW},
    )
    assert forged.status_code == 302
    assert password_is("root", "not-used-here-123")


def test_no_change_and_no_session_ended_when_the_audit_log_cannot_be_written(
    portal_as, monkeypatch
):
    from anim_gateway import account

    here = portal_as("xavier")
    elsewhere = Client()
    elsewhere.post("/login/", {"username": "xavier", "password": PASSWORD})

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AuditUnavailable("down")

    monkeypatch.setattr(account, "audit_event", unavailable)
    assert change(here).status_code == 503
    assert change(here, old=WRONG).status_code == 503  # a refusal unaudited is no answer
    assert password_is("xavier", PASSWORD)
    assert elsewhere.get("/me/").status_code == 200


def test_no_token_is_revoked_when_the_audit_log_cannot_be_written(portal_as, monkeypatch):
    from anim_gateway import account

    here = portal_as("xavier")
    api = client_for("xavier")

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AuditUnavailable("down")

    monkeypatch.setattr(account, "audit_event", unavailable)
    assert change(here).status_code == 503
    assert api.get("/api/v1/me/record/").status_code == 200
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


@pytest.mark.parametrize(("username", "institution"), [("xavier", None), ("alice", "CHL")])
def test_it_revokes_the_users_api_tokens_and_says_so(portal_as, username, institution):
    # A token made while the old password was known to someone else must not outlive it.
    here = portal_as(username, institution)
    tokens = [client_for(username, institution) for _ in range(2)]
    yvonne = client_for("yvonne")
    response = change(here)
    assert response.url == "/"
    page = here.get("/", follow=True).content.decode()
    assert "Your password has been changed." in page
    assert "Your 2 API tokens were revoked: ask your administrator for new ones." in page
    for api in tokens:
        assert api.get("/api/v1/me/record/").status_code == 401
    assert yvonne.get("/api/v1/me/record/").status_code == 200  # another user's stays
    [event] = password_events()
    assert event.detail == {"other_sessions_ended": 0, "tokens_revoked": 2}


def test_a_user_without_tokens_is_told_nothing_of_them(portal_as):
    here = portal_as("xavier")
    change(here)
    assert "API token" not in here.get("/", follow=True).content.decode()
