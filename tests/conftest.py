"""The named cast of the suite (STYLE.md 14) and helpers for services the suite may need."""

import datetime
import os

import pydicom.data.data_manager
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from consent import national_id
from consent.actors import Actor
from consent.models import Account, Role
from consent.services import provisioning
from consent.services.tokens import token_issue

REQUIRE_SERVICES = os.environ.get("ANIM_REQUIRE_SERVICES") == "1"


def _no_files_to_download() -> dict[str, str]:
    return {}


# get_testdata_files also lists the pydicom-data files that do not ship with pydicom, and
# tries to download each: a network access at every call (offline, a 15 s time-out). The
# suite uses only the files that ship with pydicom.
pydicom.data.data_manager.online_test_file_dummy_paths = _no_files_to_download


def require_postgres() -> None:
    """Skip on SQLite, but fail when CI says PostgreSQL must be there."""
    if connection.vendor == "postgresql":
        return
    if REQUIRE_SERVICES:
        pytest.fail("ANIM_REQUIRE_SERVICES=1 but the database is not PostgreSQL")
    pytest.skip("needs PostgreSQL (set DATABASE_URL)")


def require_redis() -> str:
    """The broker URL, skipping (or failing in CI) when no Redis answers."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    if url:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return url
        except redis.RedisError:
            pass
    if REQUIRE_SERVICES:
        pytest.fail("ANIM_REQUIRE_SERVICES=1 but Redis is not reachable at CELERY_BROKER_URL")
    pytest.skip("needs Redis (set CELERY_BROKER_URL)")
    return ""


ADMIN = Actor(role=Role.ADMIN, username="admin", display_name="Administrator")

XAVIER_ID = national_id.make(datetime.date(1980, 5, 17), 1)
YVONNE_ID = national_id.make(datetime.date(1992, 11, 3), 2)


class Cast:
    """Dr Alice (CHL physician), Dr Bob (CHEM physician), Dr Charlie (HRS radiologist),
    patients Xavier and Yvonne, DPO Dora, and the CHL hospital system."""

    def __init__(self) -> None:
        for code, name in [
            ("CHL", "Centre Hospitalier de Luxembourg"),
            ("CHDN", "Centre Hospitalier du Nord"),
            ("CHEM", "Centre Hospitalier Emile Mayrisch"),
            ("HRS", "Hôpitaux Robert Schuman"),
        ]:
            provisioning.institution_create(code=code, name=name, ae_titles=[f"{code}_PACS"])
        self.alice = self._practitioner("alice", "Dr Alice Arend", "physician", ["CHL"])
        self.bob = self._practitioner("bob", "Dr Bob Becker", "physician", ["CHEM"])
        self.charlie = self._practitioner("charlie", "Dr Charlie Clement", "radiologist", ["HRS"])
        self.xavier = self._patient(XAVIER_ID, "Xavier", "xavier", [("CHEM", "CHEM-X1")])
        self.yvonne = self._patient(YVONNE_ID, "Yvonne", "yvonne", [("CHL", "CHL-Y1")])
        self.dora = self._account("dora", Role.DPO, None)
        self.chl_system = self._account("chl-pacs", Role.SYSTEM, "CHL")

    def _practitioner(self, username: str, name: str, profession: str, codes: list[str]):
        return provisioning.practitioner_create(
            actor=ADMIN,
            username=username,
            display_name=name,
            profession=profession,
            license_number=f"LIC-{username}",
            institution_codes=codes,
        )

    def _patient(self, number: str, given: str, username: str, identifiers: list[tuple]):
        return provisioning.patient_create(
            actor=ADMIN,
            national_id_value=number,
            family_name="Demo",
            given_name=given,
            birth_date=national_id.birth_date(number),
            sex="O",
            identifiers=[{"institution": i, "value": v} for i, v in identifiers],
            username=username,
        )

    def _account(self, username: str, role: str, code: str | None) -> Account:
        return provisioning.account_create(
            actor=ADMIN, username=username, role=role, institution_code=code
        )


@pytest.fixture
def cast(db) -> Cast:
    return Cast()


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("root", password="not-used-here-123")


def client_for(username: str, institution: str | None = None, days: int = 1) -> APIClient:
    """An API client holding a fresh bearer token of the user."""
    client = APIClient()
    token = token_issue(username=username, institution_code=institution, days=days)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api_as():
    return client_for


@pytest.fixture
def debug_settings(settings):
    """DEBUG on, as `make run` has it (seed_demo refuses to run without it)."""
    settings.DEBUG = True
    return settings


@pytest.fixture
def admin_client_verified(client, admin_user):
    """The administrator, logged in with a verified second factor (the admin requires it)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=admin_user, name="test", confirmed=True)
    client.force_login(admin_user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture(scope="session", autouse=True)
def _test_database_droppable(django_db_setup, django_db_blocker):
    """At the end of the run, end the sessions that processes started by the tests (DICOM
    listener children, say) may still hold on the PostgreSQL test database, which PostgreSQL
    would otherwise refuse to drop (it would be left behind on the machine)."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
