"""Settings from the environment: defaults that run, clear errors for dangerous gaps."""

import subprocess

import pytest

from tests.processes import fresh_python

# A real Ed25519 public key (base64 of its raw 32 bytes), as AUDIT_TRUSTED_PUBLIC_KEYS holds.
PUBLIC_KEY = "FkXBSThNQBAb/VLdPxnhPB0cS1U1iEhgWc/FnZ1iMmE="
SUMMARY = "s.DATABASES['default']['ENGINE'], s.CELERY_TASK_ALWAYS_EAGER, s.DEBUG"


def load_settings(
    printing: str = SUMMARY, module: str = "anim_gateway.settings", **env: str
) -> subprocess.CompletedProcess:
    """Import the production settings (or ``module``, under them) in a fresh interpreter
    with exactly these variables, and print ``printing`` (an expression of the settings
    module ``s``)."""
    script = f"import anim_gateway.settings as s, {module}; print({printing})"
    env = {"DJANGO_SETTINGS_MODULE": "anim_gateway.settings"} | env
    return fresh_python("-c", script, timeout=60, **env)


def test_it_refuses_to_start_without_a_secret_key_in_production(tmp_path) -> None:
    result = load_settings(VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_it_runs_on_embedded_defaults_in_debug(tmp_path) -> None:
    result = load_settings(DEBUG="True", VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True", "True"]


def test_it_reads_the_secret_from_a_file(tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    result = load_settings(SECRET_KEY_FILE=str(secret), VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_database_url_and_broker_switch_to_postgresql_and_redis(tmp_path) -> None:
    result = load_settings(
        DEBUG="True",
        VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://u@127.0.0.1:5432/anim",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    assert result.stdout.split() == ["anim_gateway.postgresql", "False", "True"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "-c jit=off -c plan_cache_mode=force_generic_plan"),
        (
            "?options=-c%20search_path%3Danim",
            "-c search_path=anim -c jit=off -c plan_cache_mode=force_generic_plan",
        ),
        ("?options=-c%20jit%3Don", "-c jit=on -c plan_cache_mode=force_generic_plan"),
    ],
)
def test_postgresql_connections_get_their_settings_beside_the_urls_own(tmp_path, query, expected):
    """The URL's own options are kept, and win over ours for the same setting."""
    result = load_settings(
        "s.DATABASES['default']['OPTIONS']['options']",
        DEBUG="True",
        VAR_DIR=str(tmp_path),
        DATABASE_URL=f"postgres://u@127.0.0.1:5432/anim{query}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("value", ["yes", "1", "true"])
def test_a_boolean_must_be_true_or_false(tmp_path, value: str) -> None:
    result = load_settings(DEBUG=value, VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DEBUG must be True or False" in result.stderr


def test_sqlite_waits_its_turn_instead_of_failing(settings) -> None:
    options = settings.SQLITE_OPTIONS
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]
    assert options["timeout"] >= 5


def test_the_portal_stylesheet_is_served_without_debug(client, settings) -> None:
    settings.DEBUG = False
    response = client.get("/static/portal.css")
    assert response.status_code == 200
    assert b"{" in b"".join(response.streaming_content)


def test_s3_storage_is_the_streaming_one(tmp_path) -> None:
    """tests/studies/test_s3_storage.py runs this backend against an S3-compatible server."""
    result = load_settings(
        "s.STORAGES['default']['BACKEND']",
        DEBUG="True",
        VAR_DIR=str(tmp_path),
        STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="anim",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["studies.s3.S3Storage"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DATABASE_URL": "mysqlx://anim:s3cr3t@db/anim"},
            "DATABASE_URL is not a database URL (unknown scheme); expected postgres://",
        ),
        (
            {"DATABASE_URL": "postgres://anim:s3cr3t@db:port/anim"},
            "DATABASE_URL is not a database URL (malformed)",
        ),
        (
            {"DATABASE_URL": "mysql://anim:s3cr3t@db/anim"},
            "DATABASE_URL: the gateway runs on PostgreSQL or SQLite",
        ),
        ({"SECRET_KEY_FILE": "/nonexistent/secret"}, "SECRET_KEY_FILE names /nonexistent/secret"),
        (
            {"AUDIT_SIGNING_KEY_FILE": "/nonexistent/key"},
            "AUDIT_SIGNING_KEY_FILE names /nonexistent/key, which cannot be read",
        ),
        ({"STORAGE_BACKEND": "s4"}, "STORAGE_BACKEND must be one of local, s3, not 's4'"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING"),
        (
            {"FIXITY_CHECKS_PER_HOUR": "-5"},
            "FIXITY_CHECKS_PER_HOUR must be a whole number of 0 or more, not '-5'",
        ),
        ({"FIXITY_CHECKS_PER_HOUR": "lots"}, "FIXITY_CHECKS_PER_HOUR must be an integer"),
        (
            {"DICOM_LISTENER_PORT": "70000"},
            "DICOM_LISTENER_PORT must be a whole number from 1 to 65535",
        ),
        (
            {"DICOM_LISTENER_AE_TITLE": "ANIM\\GATEWAY"},
            "DICOM_LISTENER_AE_TITLE is not a DICOM AE title (a backslash): 'ANIM\\\\GATEWAY'",
        ),
        (
            {"DICOM_LISTENER_AE_TITLE": "ANIM_GATEWAY_LUXEMBOURG"},
            "DICOM_LISTENER_AE_TITLE is not a DICOM AE title (23 characters, 16 at most)",
        ),
        (
            {"DICOM_LISTENER_AE_TITLE": "    "},
            "DICOM_LISTENER_AE_TITLE is not a DICOM AE title (only spaces)",
        ),
        (
            {"DICOM_LISTENER_AE_TITLE": "ANIM\tGW"},
            "DICOM_LISTENER_AE_TITLE is not a DICOM AE title (a control or non-ASCII character)",
        ),
        (
            {"DICOM_LISTENER_AE_TITLE": "ANIM_GATEWAŸ"},
            "DICOM_LISTENER_AE_TITLE is not a DICOM AE title (a control or non-ASCII character)",
        ),
        (
            {"AUDIT_TRUSTED_PUBLIC_KEYS": f"{PUBLIC_KEY},not-a-key"},
            "AUDIT_TRUSTED_PUBLIC_KEYS: 'not-a-key' is not a base64-encoded raw 32-byte Ed25519"
            " public key",
        ),
        (
            {"AUDIT_TRUSTED_PUBLIC_KEYS": "AAAAAAAAAAAAAAAAAAAAAA=="},  # 16 bytes
            "AUDIT_TRUSTED_PUBLIC_KEYS: 'AAAAAAAAAAAAAAAAAAAAAA==' is not a base64-encoded raw"
            " 32-byte Ed25519 public key",
        ),
        (
            {"CACHE_URL": "memcached://anim:s3cr3t@cache:11211"},
            "CACHE_URL is not a Redis URL (unsupported scheme); expected redis://HOST:6379/N",
        ),
        (
            {"CACHE_URL": "redis://anim:s3cr3t@cache:port/1"},
            "CACHE_URL is not a Redis URL (malformed); expected redis://HOST:6379/N",
        ),
        (
            {"CACHE_URL": "redis://anim:s3cr3t@cache:6379/first"},
            "CACHE_URL is not a Redis URL (malformed); expected redis://HOST:6379/N",
        ),
        (
            {"CELERY_BROKER_URL": "sqs://anim:s3cr3t@queue"},
            "CELERY_BROKER_URL is not a broker URL (unsupported scheme); expected"
            " redis://HOST:6379/N or amqp://USER:PASSWORD@HOST:5672/VHOST",
        ),
        (
            {"CELERY_BROKER_URL": "redis://anim:s3cr3t@broker:99999/0"},
            "CELERY_BROKER_URL is not a broker URL (malformed)",
        ),
        (
            {"CELERY_BROKER_URL": "redis://broker:6379/0;amqp://anim:s3cr3t@rabbit:port//"},
            "CELERY_BROKER_URL is not a broker URL (malformed)",
        ),
    ],
)
def test_a_malformed_variable_stops_start_up_naming_it(tmp_path, env: dict, message: str) -> None:
    result = load_settings(DEBUG="True", VAR_DIR=str(tmp_path), **env)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert message in last_line
    assert "s3cr3t" not in result.stderr  # the URL's password is never repeated


def test_an_empty_database_url_is_the_default(tmp_path) -> None:
    result = load_settings(DEBUG="True", VAR_DIR=str(tmp_path), DATABASE_URL="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "django.db.backends.sqlite3"


def test_the_web_process_refuses_to_start_without_allowed_hosts(tmp_path) -> None:
    result = load_settings(
        "'loaded'", "anim_gateway.wsgi", SECRET_KEY="k" * 50, VAR_DIR=str(tmp_path)
    )
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is not set" in result.stderr.strip().splitlines()[-1]
    result = load_settings(
        "'loaded'",
        "anim_gateway.wsgi",
        SECRET_KEY="k" * 50,
        VAR_DIR=str(tmp_path),
        ALLOWED_HOSTS="gateway.example.lu",
    )
    assert result.returncode == 0, result.stderr


def test_well_formed_dicom_cache_broker_and_key_values_start(tmp_path) -> None:
    """The DICOM rule admits spaces and small letters; Django's Redis cache several servers;
    Celery a list of brokers to fail over to."""
    result = load_settings(
        "s.DICOM_LISTENER_AE_TITLE, s.AUDIT_TRUSTED_PUBLIC_KEYS",
        DEBUG="True",
        VAR_DIR=str(tmp_path),
        DICOM_LISTENER_AE_TITLE="Anim gateway 1",
        AUDIT_TRUSTED_PUBLIC_KEYS=f" {PUBLIC_KEY} ",
        CACHE_URL="redis://:pw@cache-1:6379/1,rediss://cache-2/1;unix:///run/redis.sock?db=2",
        CELERY_BROKER_URL="redis://:pw@broker:6379/0;amqp://anim:pw@rabbit:5672//",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Anim gateway 1 ['{PUBLIC_KEY}']"
