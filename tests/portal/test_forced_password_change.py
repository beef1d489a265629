"""A password set by someone else (an administrator) is changed at the next portal log-in,
before anything else; the user's own change settles it."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.enrolment import enrolment_code_issue
from audit.models import AuditEvent
from consent.models import Affiliation, Institution, PasswordChangeRequired
from consent.services.passwords import password_set_for_user
from tests.conftest import ADMIN, client_for
from tests.portal.helpers import (
    PASSWORD,
    fresh_code,
    portal_client,
    set_password,
    totp_code,
)

pytestmark = pytest.mark.django_db

PAGE = "/account/password/"
NEW = "a-new-portal-password-2"
ADMIN_SET = "set-by-the-administrator-9"
MESSAGE = "Your password was set by an administrator: choose your own before going on."


def owes_change(username: str) -> bool:
    return PasswordChangeRequired.objects.filter(user__username=username).exists()


def require_change(username: str) -> None:
    user = get_user_model().objects.get(username=username)
    password_set_for_user(user=user, acting=ADMIN, via="admin_password")


def set_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="account.password_set").order_by("seq"))


def change(client: Client, next_url: str = ""):
    fields = {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}
    return client.post(PAGE, {**fields, **({"next": next_url} if next_url else {})})


def held(response, next_url: str | None = None) -> bool:
    """Redirected to the password change page (with the page asked for as ``next``)."""
    if response.status_code != 302:
        return False
    expected = f"{PAGE}?next={next_url}" if next_url else PAGE
    return response["Location"] == expected


# --- each way an administrator sets a password ----------------------------------------------


def test_the_admins_add_user_with_a_password_owes_a_change(cast, admin_client_verified):
    fields = {"username": "erin", "password1": ADMIN_SET, "password2": ADMIN_SET}
    fields["usable_password"] = "true"
    response = admin_client_verified.post("/admin/auth/user/add/", fields)
    assert response.status_code == 302, response.content[:500]
    erin = get_user_model().objects.get(username="erin")
    assert owes_change("erin")
    [event] = set_events()
    assert (event.actor_username, event.actor_role, event.outcome) == ("root", "admin", "permit")
    assert event.detail == {
        "user_id": erin.pk,
        "via": "admin_add",
        "password_change_required": True,
    }
    assert ADMIN_SET not in str(event.detail)
    assert ADMIN_SET not in event.message


def test_the_admins_add_user_without_a_password_owes_nothing(cast, admin_client_verified):
    fields = {"username": "erin", "usable_password": "false"}
    response = admin_client_verified.post("/admin/auth/user/add/", fields)
    assert response.status_code == 302, response.content[:500]
    assert not owes_change("erin")
    assert set_events() == []


def test_the_admins_password_form_for_another_user_owes_a_change(cast, admin_client_verified):
    xavier = cast.xavier.user
    url = f"/admin/auth/user/{xavier.pk}/password/"
    fields = {"password1": ADMIN_SET, "password2": ADMIN_SET, "usable_password": "true"}
    response = admin_client_verified.post(url, fields)
    assert response.status_code == 302, response.content[:500]
    assert get_user_model().objects.get(pk=xavier.pk).check_password(ADMIN_SET)
    assert owes_change("xavier")
    [event] = set_events()
    assert event.detail == {
        "user_id": xavier.pk,
        "via": "admin_password",
        "password_change_required": True,
    }


def test_a_refused_password_form_owes_nothing(cast, admin_client_verified):
    url = f"/admin/auth/user/{cast.xavier.user.pk}/password/"
    fields = {"password1": ADMIN_SET, "password2": "not the same", "usable_password": "true"}
    assert admin_client_verified.post(url, fields).status_code == 200
    assert not owes_change("xavier")
    assert set_events() == []


def test_an_administrators_own_password_set_in_the_admin_owes_nothing(
    cast, admin_client_verified, admin_user
):
    url = f"/admin/auth/user/{admin_user.pk}/password/"
    fields = {"password1": ADMIN_SET, "password2": ADMIN_SET, "usable_password": "true"}
    assert admin_client_verified.post(url, fields).status_code == 302
    assert get_user_model().objects.get(pk=admin_user.pk).check_password(ADMIN_SET)
    assert not owes_change("root")


def test_the_changepassword_command_owes_a_change(cast, monkeypatch):
    from django.contrib.auth.management.commands import changepassword

    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt="": ADMIN_SET)
    out = io.StringIO()
    call_command("changepassword", "alice", stdout=out)
    assert "must change it at their next portal log-in" in out.getvalue()
    assert owes_change("alice")
    [event] = set_events()
    assert (event.actor_username, event.detail["via"]) == ("cli:changepassword", "changepassword")
    assert event.detail["password_change_required"] is True


PATIENT = {
    "national_id": "1983010100159",
    "family_name": "Weber",
    "given_name": "Anna",
    "birth_date": "1983-01-01",
    "sex": "F",
}


@pytest.mark.parametrize(
    ("url", "body", "action"),
    [
        ("/api/v1/accounts/", {"username": "erin", "role": "dpo"}, "account.create"),
        (
            "/api/v1/practitioners/",
            {
                "username": "erin",
                "display_name": "Dr Erin Eischen",
                "profession": "physician",
                "license_number": "LIC-erin",
                "institutions": ["CHL"],
            },
            "practitioner.create",
        ),
        ("/api/v1/patients/", {**PATIENT, "username": "erin"}, "patient.create"),
    ],
)
def test_the_provisioning_apis_password_owes_a_change(cast, admin_user, url, body, action):
    response = client_for("root").post(url, {**body, "password": ADMIN_SET}, format="json")
    assert response.status_code == 201, response.json()
    assert "password" not in response.json()
    assert ADMIN_SET not in response.content.decode()
    assert get_user_model().objects.get(username="erin").check_password(ADMIN_SET)
    assert owes_change("erin")
    event = AuditEvent.objects.filter(action=action).latest("seq")
    assert event.detail["password_change_required"] is True
    assert ADMIN_SET not in str(event.detail)


def test_the_provisioning_api_without_a_password_owes_nothing(cast, admin_user):
    body = {"username": "erin", "role": "dpo"}
    assert client_for("root").post("/api/v1/accounts/", body, format="json").status_code == 201
    assert not get_user_model().objects.get(username="erin").has_usable_password()
    assert not owes_change("erin")
    event = AuditEvent.objects.filter(action="account.create").latest("seq")
    assert "password_change_required" not in event.detail


@pytest.mark.parametrize(
    ("url", "body", "words"),
    [
        ("/api/v1/accounts/", {"username": "erin", "role": "dpo", "password": "short"}, "short"),
        (
            "/api/v1/accounts/",
            {"username": "erin", "role": "system", "institution": "CHL", "password": ADMIN_SET},
            "token only",
        ),
        ("/api/v1/patients/", {**PATIENT, "password": ADMIN_SET}, "without a username"),
    ],
)
def test_the_provisioning_api_refuses_a_password_it_cannot_take(cast, admin_user, url, body, words):
    response = client_for("root").post(url, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID"
    assert error["message"].startswith("password: ")
    assert words in error["message"]
    assert not get_user_model().objects.filter(username="erin").exists()


def test_a_practitioner_provisioned_with_a_password_is_held_after_the_second_factor(
    cast, admin_user
):
    body = {
        "username": "erin",
        "display_name": "Dr Erin Eischen",
        "profession": "physician",
        "license_number": "LIC-erin",
        "institutions": ["CHL"],
        "password": PASSWORD,
    }
    assert client_for("root").post("/api/v1/practitioners/", body, format="json").status_code == 201
    client = Client()
    response = client.post("/login/", {"username": "erin", "password": PASSWORD})
    assert response["Location"] == "/login/enrol/"
    code = enrolment_code_issue(username="erin")
    client.get("/login/enrol/")
    device = TOTPDevice.objects.get(user__username="erin", confirmed=False)
    response = client.post("/login/enrol/", {"enrolment_code": code, "token": totp_code(device)})
    assert response["Location"] == "/"
    assert held(client.get("/"), next_url="/")
    assert held(client.get("/patients/"), next_url="/patients/")


def test_createsuperuser_owes_nothing(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long and unguessable one 123")
    call_command(
        "createsuperuser", username="root2", email="", interactive=False, stdout=io.StringIO()
    )
    assert not owes_change("root2")


# --- the portal holds the user at the password change page ---------------------------------


@pytest.mark.parametrize("page", ["/", "/me/", "/me/consents/", "/me/access-log/", "/admin/"])
def test_every_page_of_a_patient_leads_to_the_change_keeping_where_they_went(cast, page):
    client = portal_client("xavier")
    require_change("xavier")
    assert held(client.get(page), next_url=page)


@pytest.mark.parametrize("page", ["/patients/", "/dpo/audit/"])
def test_a_practitioners_pages_lead_there_after_the_second_factor(cast, page):
    client = portal_client("alice", "CHL")
    require_change("alice")
    assert held(client.get(page), next_url=page)


def test_a_practitioner_of_several_hospitals_changes_it_before_choosing_one(cast):
    Affiliation.objects.create(
        practitioner=cast.alice, institution=Institution.objects.get(code="HRS")
    )
    set_password("alice")
    require_change("alice")
    client = Client()
    client.post("/login/", {"username": "alice", "password": PASSWORD})
    response = client.post("/login/verify/", {"token": fresh_code("alice")})
    choice = "/login/institution/"
    assert response["Location"] == choice
    assert held(client.get(choice), next_url=choice)
    assert client.get(f"{PAGE}?next={choice}").status_code == 200  # no loop back to the choice
    assert change(client, next_url=choice)["Location"] == choice
    assert client.get(choice).status_code == 200


def test_a_post_leads_there_without_next(cast):
    client = portal_client("xavier")
    require_change("xavier")
    assert held(client.post("/me/record/close/"))
    assert cast.xavier.record.status == "active"


def test_the_page_says_why_and_keeps_next(cast):
    client = portal_client("xavier")
    require_change("xavier")
    page = client.get(f"{PAGE}?next=/me/consents/")
    assert page.status_code == 200
    assert MESSAGE in page.content.decode()
    assert '<input type="hidden" name="next" value="/me/consents/">' in page.content.decode()


def test_the_log_in_leads_there_with_the_deep_link(cast):
    require_change("xavier")
    set_password("xavier")
    client = Client()
    credentials = {"username": "xavier", "password": PASSWORD}
    response = client.post("/login/?next=/me/consents/", credentials)
    assert response["Location"] == "/me/consents/"
    assert held(client.get("/me/consents/"), next_url="/me/consents/")


def test_the_second_factor_steps_are_not_held(cast):
    set_password("alice")
    require_change("alice")
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response["Location"].startswith("/login/")
    assert client.get(response["Location"]).status_code == 200  # the set-up or code page


def test_log_out_and_static_files_are_not_held(cast):
    client = portal_client("xavier")
    require_change("xavier")
    assert not held(client.get("/static/portal.css"))
    response = client.post("/logout/")
    assert response["Location"] == "/login/"
    assert client.get("/me/").status_code == 302  # logged out: to the log-in, as before
    assert client.get("/me/")["Location"].startswith("/login/")


def test_the_change_settles_it_and_goes_on_to_next(cast):
    client = portal_client("xavier")
    require_change("xavier")
    response = change(client, next_url="/me/consents/")
    assert response.status_code == 302
    assert response["Location"] == "/me/consents/"
    assert not owes_change("xavier")
    assert client.get("/me/consents/").status_code == 200
    assert MESSAGE not in client.get(PAGE).content.decode()


def test_a_next_elsewhere_is_dropped(cast):
    client = portal_client("xavier")
    require_change("xavier")
    assert change(client, next_url="https://elsewhere.example/")["Location"] == "/"


def test_a_wrong_current_password_settles_nothing(cast):
    client = portal_client("xavier")
    require_change("xavier")
    fields = {"old_password": "wrong-one-here", "new_password1": NEW, "new_password2": NEW}
    assert client.post(PAGE, fields).status_code == 400
    assert owes_change("xavier")


def test_the_users_own_change_owes_nothing(cast):
    client = portal_client("xavier")
    change(client)
    assert not owes_change("xavier")
    assert client.get("/me/").status_code == 200
    assert set_events() == []


# --- the API -----------------------------------------------------------------------------------


def test_api_token_requests_are_not_held(cast):
    require_change("xavier")
    response = client_for("xavier").get("/api/v1/me/record/")
    assert response.status_code == 200


def test_api_requests_with_the_session_are_refused_naming_the_change(cast):
    client = portal_client("xavier")
    require_change("xavier")
    response = client.get("/api/v1/me/record/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PASSWORD_CHANGE_REQUIRED"


@pytest.fixture
def audit_down(monkeypatch):
    from audit.errors import AuditUnavailable
    from consent.services import passwords

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AuditUnavailable("down")

    monkeypatch.setattr(passwords, "audit_event", unavailable)


def test_no_audit_event_no_password_set_in_the_admin(cast, admin_client_verified, audit_down):
    xavier = cast.xavier.user
    url = f"/admin/auth/user/{xavier.pk}/password/"
    fields = {"password1": ADMIN_SET, "password2": ADMIN_SET, "usable_password": "true"}
    response = admin_client_verified.post(url, fields)
    assert response.status_code == 503
    assert not get_user_model().objects.get(pk=xavier.pk).check_password(ADMIN_SET)
    assert not owes_change("xavier")


def test_no_audit_event_no_user_added_in_the_admin(cast, admin_client_verified, audit_down):
    fields = {"username": "erin", "password1": ADMIN_SET, "password2": ADMIN_SET}
    response = admin_client_verified.post(
        "/admin/auth/user/add/", fields | {"usable_password": "true"}
    )
    assert response.status_code == 503
    assert not get_user_model().objects.filter(username="erin").exists()


def test_an_administrator_is_held_before_the_administration_too(cast, admin_user):
    client = portal_client("root")
    require_change("root")
    assert held(client.get("/admin/"), next_url="/admin/")
    assert held(client.get("/admin/auth/user/"), next_url="/admin/auth/user/")
