"""The database itself keeps usernames unique whatever their case: two creations racing past
the check cannot both succeed, and the one refused is told the username is taken."""

import importlib
import io

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from consent import selectors
from tests.conftest import client_for

from .test_provisioning import patient_body
from .test_provisioning_refusals import practitioner_body

pytestmark = pytest.mark.django_db

migration = importlib.import_module("anim_gateway.usernames.migrations.0001_username_lower_unique")


def usernames() -> list[str]:
    """Every username but django-guardian's anonymous user's."""
    users = get_user_model().objects.exclude(username="AnonymousUser")
    return sorted(users.values_list("username", flat=True))


def test_the_database_refuses_a_username_differing_only_in_case(db):
    get_user_model().objects.create(username="alice")
    with pytest.raises(IntegrityError), transaction.atomic():
        get_user_model().objects.create(username="ALICE")
    assert usernames() == ["alice"]


def test_the_database_still_takes_distinct_usernames(db):
    get_user_model().objects.create(username="alice")
    get_user_model().objects.create(username="alice2")
    assert usernames() == ["alice", "alice2"]


@pytest.mark.parametrize(
    ("url", "body", "action"),
    [
        ("/api/v1/accounts/", {"username": "ALICE", "role": "dpo"}, "account.create"),
        ("/api/v1/practitioners/", practitioner_body(username="Alice"), "practitioner.create"),
        ("/api/v1/patients/", patient_body(username="aLiCe"), "patient.create"),
    ],
)
def test_a_creation_that_passed_the_check_in_a_race_is_told_the_username_is_taken(
    cast, admin_user, monkeypatch, url, body, action
):
    # "alice" committed by a concurrent request just after this one's check found nothing.
    monkeypatch.setattr(selectors, "username_taken", lambda **kwargs: False)
    before = usernames()
    response = client_for("root").post(url, body, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "USERNAME_TAKEN")
    assert usernames() == before
    event = AuditEvent.objects.filter(action=action, outcome="deny").get()
    assert event.reason_code == "USERNAME_TAKEN"


@pytest.fixture
def index_dropped(db) -> None:
    """Accounts from before the index (rolled back with the test)."""
    with connection.cursor() as cursor:
        cursor.execute(migration.DROP_INDEX)


def test_the_migration_refuses_clashing_usernames_naming_them(index_dropped):
    for username in ["alice", "Alice", "bob", "BOB", "carol"]:
        get_user_model().objects.create(username=username)
    with pytest.raises(migration.ClashingUsernames) as refused:
        migration.refuse_clashing_usernames(apps, None)
    message = str(refused.value)
    assert "'Alice', 'alice'" in message
    assert "'BOB', 'bob'" in message
    assert "carol" not in message
    assert usernames() == ["Alice", "BOB", "alice", "bob", "carol"]  # nothing altered


def test_the_migration_passes_usernames_that_do_not_clash(index_dropped):
    for username in ["alice", "bob"]:
        get_user_model().objects.create(username=username)
    migration.refuse_clashing_usernames(apps, None)
    with connection.cursor() as cursor:
        cursor.execute(migration.CREATE_INDEX)


# Outside a test transaction: the refused INSERT stands alone, as from the command line.
@pytest.mark.django_db(transaction=True)
def test_createsuperuser_in_a_race_is_told_the_username_is_taken(cast, monkeypatch):
    from anim_gateway.usernames.management.commands import createsuperuser

    monkeypatch.setattr(createsuperuser, "username_taken", lambda **kwargs: False)
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long and unguessable one 123")
    with pytest.raises(CommandError, match="already taken"):
        call_command(
            "createsuperuser", username="Alice", email="", interactive=False, stdout=io.StringIO()
        )
    assert "Alice" not in usernames()
