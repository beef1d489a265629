"""The database itself keeps usernames unique whatever their case: two creations racing past
the check cannot both succeed, and the one refused is told the username is taken."""

import importlib
import io
import threading
import time

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction

from anim_gateway.errors import Conflict
from audit.models import AuditEvent
from consent import selectors
from consent.services import provisioning
from tests.conftest import ADMIN, client_for, require_postgres

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


@pytest.mark.django_db(transaction=True)
def test_of_two_creations_at_once_the_second_is_told_the_username_is_taken():
    """A real race on PostgreSQL: the rival's "racer" is inserted but not yet committed when
    "RACER" is checked (not seen) and inserted (which waits on the index until it commits)."""
    require_postgres()
    outcome: list[object] = []

    def create_racer() -> None:
        try:
            provisioning.account_create(
                actor=ADMIN, username="RACER", role="dpo", institution_code=None
            )
            outcome.append("created")
        except Conflict as refused:
            outcome.append(refused.code)
        finally:
            connections.close_all()

    with transaction.atomic():
        get_user_model().objects.create(username="racer")
        creation = threading.Thread(target=create_racer)
        creation.start()
        waits_for_the_index(unless_done=creation)
    creation.join()
    assert outcome == ["USERNAME_TAKEN"]
    assert usernames() == ["racer"]


def waits_for_the_index(*, unless_done: threading.Thread) -> None:
    """Until another session of the test database waits for a lock (the index's row), or
    the thread has ended (without the index, nothing makes it wait)."""
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
    )
    with connection.cursor() as cursor:
        for _ in range(3000):  # a bound, not a timing: the creation blocks or fails first
            # Inside a transaction, the activity view is a snapshot unless cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(waiting)
            if cursor.fetchone()[0] or not unless_done.is_alive():
                return
            time.sleep(0.01)
    pytest.fail("the concurrent creation never waited on the username index")
