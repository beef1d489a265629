"""A username is unique whatever its case, wherever a user is created: "Alice" cannot be
registered next to "alice". Log-ins keep their exact username."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from tests.conftest import client_for

from .test_provisioning import patient_body
from .test_provisioning_refusals import practitioner_body

pytestmark = pytest.mark.django_db


def usernames() -> list[str]:
    return sorted(get_user_model().objects.values_list("username", flat=True))


@pytest.mark.parametrize(
    ("url", "body", "action"),
    [
        ("/api/v1/accounts/", {"username": "ALICE", "role": "dpo"}, "account.create"),
        ("/api/v1/practitioners/", practitioner_body(username="Alice"), "practitioner.create"),
        ("/api/v1/patients/", patient_body(username="aLiCe"), "patient.create"),
    ],
)
def test_a_username_differing_only_in_case_is_taken(cast, admin_user, url, body, action):
    before = usernames()
    response = client_for("root").post(url, body, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "USERNAME_TAKEN")
    assert usernames() == before
    event = AuditEvent.objects.filter(action=action, outcome="deny").get()
    assert (event.outcome, event.reason_code) == ("deny", "USERNAME_TAKEN")


def test_a_new_username_is_created_as_written(cast, admin_user):
    response = client_for("root").post(
        "/api/v1/practitioners/", practitioner_body(username="Dave"), format="json"
    )
    assert response.status_code == 201
    assert "Dave" in usernames()


def test_existing_log_ins_keep_their_exact_username(cast):
    assert client_for("alice", "CHL").get("/api/v1/patients/").status_code != 401
    with pytest.raises(Exception, match="No user named"):
        client_for("ALICE", "CHL")


def test_createsuperuser_refuses_a_username_differing_only_in_case(cast, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long and unguessable one 123")
    with pytest.raises(CommandError, match="already taken"):
        call_command(
            "createsuperuser",
            username="Alice",
            email="",
            interactive=False,
            stdout=io.StringIO(),
        )
    assert "Alice" not in usernames()


def test_createsuperuser_still_creates_a_new_one(cast, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long and unguessable one 123")
    call_command(
        "createsuperuser", username="root2", email="", interactive=False, stdout=io.StringIO()
    )
    assert get_user_model().objects.get(username="root2").is_superuser


def test_the_admin_refuses_a_username_differing_only_in_case(cast, admin_client_verified):
    response = admin_client_verified.post(
        "/admin/auth/user/add/",
        {"username": "BOB", "password1": "x-Long-pass-123", "password2": "x-Long-pass-123"},
    )
    assert response.status_code == 200  # the form again, with its error
    assert "already exists" in response.content.decode()
    assert "BOB" not in usernames()
