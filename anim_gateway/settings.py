"""Settings, read from the environment with embedded defaults that run (docs/configuration.md)."""

import base64
import binascii
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from anim_gateway.dicom_ae import ae_title_problem

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value not in ("True", "False"):
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}")
    return value == "True"


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number from minimum (none of these settings means anything below 0) up to
    maximum."""
    value = os.environ.get(name, "")
    try:
        number = int(value) if value else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from exc
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"of {minimum} or more" if maximum is None else f"from {minimum} to {maximum}"
        raise ImproperlyConfigured(f"{name} must be a whole number {bounds}, not {value!r}")
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file that NAME_FILE points to (Docker/K8s secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:  # the file's name only: never its content
            why = exc.strerror if isinstance(exc, OSError) else "not text"
            raise ImproperlyConfigured(
                f"{name}_FILE names {path}, which cannot be read ({why})"
            ) from None
    return os.environ.get(name, default)


_DATABASE_ENGINES = ("django.db.backends.postgresql", "django.db.backends.sqlite3")


def env_database(url: str, *, name: str = "DATABASE_URL") -> dict:
    """Django's DATABASES entry for the URL read from NAME: PostgreSQL or SQLite, nothing else
    (the engine is replaced by the gateway's own PostgreSQL one below)."""
    expected = "postgres://USER:PASSWORD@HOST:5432/NAME or sqlite:///PATH"
    try:
        database = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    except ValueError as exc:  # the URL holds the password: never repeated in the message
        why = (
            "unknown scheme" if isinstance(exc, dj_database_url.UnknownSchemeError) else "malformed"
        )
        raise ImproperlyConfigured(
            f"{name} is not a database URL ({why}); expected {expected}"
        ) from None
    if database["ENGINE"] not in _DATABASE_ENGINES:
        raise ImproperlyConfigured(
            f"{name}: the gateway runs on PostgreSQL or SQLite; expected {expected}"
        )
    return database


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_ae_title(name: str, default: str) -> str:
    """A DICOM AE title (PS3.5); empty is the default."""
    value = env_str(name) or default
    problem = ae_title_problem(value)
    if problem is not None:
        raise ImproperlyConfigured(f"{name} is not a DICOM AE title ({problem}): {value!r}")
    return value


def env_public_keys(name: str) -> list[str]:
    """Ed25519 public keys, each the base64 of its raw 32 bytes, as audit checkpoints name
    them (public: a bad one is named in the message)."""
    keys = env_list(name)
    if not keys:
        return keys
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    for key in keys:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(key, validate=True))
        except (ValueError, binascii.Error):
            raise ImproperlyConfigured(
                f"{name}: {key!r} is not a base64-encoded raw 32-byte Ed25519 public key"
            ) from None
    return keys


# The messages never repeat a URL: it may hold a password.
_REDIS_EXPECTED = "expected redis://HOST:6379/N, rediss://HOST:6379/N or unix:///PATH?db=N"
_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
_BROKER_EXPECTED = "expected redis://HOST:6379/N or amqp://USER:PASSWORD@HOST:5672/VHOST"


def env_cache_url(name: str) -> str:
    """Redis servers for Django's cache, as its RedisCache reads them (separated by , or ;)."""
    value = env_str(name)
    if not value:
        return value
    from redis.connection import parse_url  # only then: its import takes a while

    for url in filter(None, re.split("[;,]", value)):
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ImproperlyConfigured(
                f"{name} is not a Redis URL (unsupported scheme); {_REDIS_EXPECTED}"
            )
        try:
            parse_url(url)
            _redis_database(url)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} is not a Redis URL (malformed); {_REDIS_EXPECTED}"
            ) from None
    return value


def _redis_database(url: str) -> None:
    """redis-py takes a database path that is no number for database 0: refused instead."""
    parts = urlsplit(url)
    number = parts.path.strip("/")
    if parts.scheme != "unix" and number and not (number.isascii() and number.isdigit()):
        raise ValueError("the database is not a number")


def env_broker_url(name: str) -> str:
    """Celery's broker: Redis or RabbitMQ, several separated by ; to fail over."""
    value = env_str(name)
    if not value:
        return value
    from kombu.utils.url import url_to_parts

    for url in filter(None, value.split(";")):
        if urlsplit(url).scheme not in _BROKER_SCHEMES:
            raise ImproperlyConfigured(
                f"{name} is not a broker URL (unsupported scheme); {_BROKER_EXPECTED}"
            )
        try:
            url_to_parts(url)
            if urlsplit(url).scheme.startswith("redis"):
                _redis_database(url)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} is not a broker URL (malformed); {_BROKER_EXPECTED}"
            ) from None
    return value


DEBUG = env_bool("DEBUG", False)
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE) in production, "
            "or DEBUG=True for a local development server."
        )
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    # Before django.contrib.auth: its createsuperuser replaces Django's.
    "anim_gateway.usernames",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as static files (no CDN)
    "guardian",
    "django_otp",
    "django_otp.plugins.otp_totp",
    # Its static device holds the one-time enrolment codes an administrator issues.
    "django_otp.plugins.otp_static",
    "audit",
    "consent",
    "studies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "anim_gateway.middleware.RequestIdMiddleware",
    "anim_gateway.middleware.NoStoreMiddleware",
    "anim_gateway.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # After the second factor is known: a password an administrator set is changed first.
    "anim_gateway.forced_password_change.PasswordChangeRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it sees a view's exception first, with the session and the user known.
    "anim_gateway.errors.AuditUnavailableMiddleware",
]

ROOT_URLCONF = "anim_gateway.urls"
WSGI_APPLICATION = "anim_gateway.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "anim_gateway" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# SQLite by default; WAL, IMMEDIATE transactions and a busy timeout let concurrent requests
# wait their turn instead of failing with "database is locked".
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
}
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'anim.sqlite3'}"
# PostgreSQL settings of every connection (see below for why).
_SERVER_SETTINGS = [("jit", "off"), ("plan_cache_mode", "force_generic_plan")]
DATABASES = {"default": env_database(DATABASE_URL)}
# No ATOMIC_REQUESTS: a denied request must still commit its audit row. Every service that
# writes is @transaction.atomic instead, so nothing is half-written.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
else:
    # Django turns psycopg's prepared statements off (for transaction-mode poolers), which
    # also ignores prepare=True: the audit append and the gate's fact query would then be
    # parsed and planned on every call. Off again with DB_PREPARED_STATEMENTS=False.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        5 if env_bool("DB_PREPARED_STATEMENTS", True) else None
    )
    # The statements the code prepares (the token look-up, the gate's fact query with its
    # DICOMweb look-ups, the audit append, ingest's statements) are written as index
    # look-ups whatever their values. PostgreSQL planned them afresh for their first five
    # runs on each connection, and for ever when it judged its generic plan dearer, which
    # took longer than running them: their generic plan, from the first run (bench/README.md,
    # twelfth session). The ORM binds its parameters client-side (Django's default), so
    # its queries are never prepared and are still planned for their values.
    # JIT off: short indexed queries only, and compiling a plan near its cost threshold took
    # ~26 ms for a query that runs in a few (QIDO on 100,000 studies).
    # Added to any options the URL gives (?options=...), unless it sets the same ones.
    _given = DATABASES["default"]["OPTIONS"].get("options", "")
    DATABASES["default"]["OPTIONS"]["options"] = " ".join(
        [_given]
        + [f"-c {name}={value}" for name, value in _SERVER_SETTINGS if f"{name}=" not in _given]
    ).strip()
    # A reused connection is checked before each request's first query; this engine checks
    # its socket rather than sending SELECT 1 (anim_gateway/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "anim_gateway.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"

LANGUAGE_CODE = "en"
TIME_ZONE = "Europe/Luxembourg"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise scans it at start-up, before any collectstatic
# WhiteNoise serves the portal's CSS in production too; finders spare a collectstatic step.
WHITENOISE_USE_FINDERS = True

# Object storage: a local folder by default, any S3-compatible store through django-storages.
STORAGE_BACKEND = env_choice("STORAGE_BACKEND", "local", ("local", "s3"))
STORAGE_ROOT = Path(env_str("STORAGE_ROOT", str(VAR_DIR / "storage")))
SPOOL_DIR = Path(env_str("SPOOL_DIR", str(VAR_DIR / "spool")))
# The daily sweep deletes spool files older than this (left by a killed process); it must
# exceed the longest upload, whose first parts wait spooled while the rest arrives.
SPOOL_MAX_AGE_HOURS = env_int("SPOOL_MAX_AGE_HOURS", 24)
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL") or None
AWS_ACCESS_KEY_ID = env_secret("AWS_ACCESS_KEY_ID")
AWS_SECRET_ACCESS_KEY = env_secret("AWS_SECRET_ACCESS_KEY")
STORAGES = {
    "default": (
        {"BACKEND": "studies.s3.S3Storage"}  # django-storages', streaming (studies/s3.py)
        if STORAGE_BACKEND == "s3"
        else {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(STORAGE_ROOT)},
        }
    ),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "consent.authentication.BearerTokenAuthentication",
        "consent.authentication.PortalSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["anim_gateway.parsers.JSONParser"],
    # OPTIONS answers 405 (with Allow): DRF's description of a view is not part of the API,
    # and on a patient-data view it would be a success that never consulted the gate.
    "DEFAULT_METADATA_CLASS": None,
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "anim_gateway.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "anim_gateway.openapi.AutoSchema",  # adds the error responses
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Anim Gateway API",
    "DESCRIPTION": "Consent-gated sharing of medical imaging between Luxembourg's hospitals.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs' scripts are served by the gateway: no CDN is reached at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: without a broker, tasks run inline in the calling process.
CELERY_BROKER_URL = env_broker_url("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = TIME_ZONE
# A worker keeps LOGGING's handlers: by default it replaces the root's with its own, which
# do not redact national identifiers (a task's traceback may hold one).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Instances re-hashed each hour: set it so that a cycle covers the archive (docs/configuration.md).
FIXITY_CHECKS_PER_HOUR = env_int("FIXITY_CHECKS_PER_HOUR", 500)
CELERY_BEAT_SCHEDULE = {
    "expire-consent-facts": {"task": "consent.tasks.expire_due", "schedule": timedelta(minutes=1)},
    "notify-patients": {"task": "consent.tasks.notify_due", "schedule": timedelta(minutes=1)},
    "audit-checkpoint": {"task": "audit.tasks.take_checkpoint", "schedule": timedelta(minutes=15)},
    "fixity-check": {"task": "studies.tasks.fixity_check_due", "schedule": timedelta(hours=1)},
    "previews": {"task": "studies.tasks.previews_due", "schedule": timedelta(minutes=10)},
    "orphans-sweep": {"task": "studies.tasks.orphans_sweep_due", "schedule": timedelta(days=1)},
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "anim-gateway@localhost")
# Each step of a patient notice's SMTP exchange (sent outside any transaction): never for ever.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
# How long an emergency notice is left to the task queued at declaration before the sweep
# sends it (a broker outage or a dead worker only delays it).
PATIENT_NOTICE_GRACE_SECONDS = env_int("PATIENT_NOTICE_GRACE_SECONDS", 60)

# Tokens
TOKEN_DEFAULT_DAYS = env_int("TOKEN_DEFAULT_DAYS", 30)

# The rule (DESIGN.md): durations of care relationships and emergency accesses.
CARE_ADMISSION_DAYS = env_int("CARE_ADMISSION_DAYS", 91)
CARE_REFERRAL_DAYS = env_int("CARE_REFERRAL_DAYS", 91)
CARE_DECLARED_DAYS = env_int("CARE_DECLARED_DAYS", 456)
CARE_MAX_DAYS = env_int("CARE_MAX_DAYS", 456)  # the longest period a hospital may assert
CARE_MAX_BACKDATE_DAYS = env_int("CARE_MAX_BACKDATE_DAYS", 30)  # how late it may record one
EMERGENCY_ACCESS_HOURS = env_int("EMERGENCY_ACCESS_HOURS", 4)
EMERGENCY_REASON_MIN_LENGTH = env_int("EMERGENCY_REASON_MIN_LENGTH", 20)
# Which professions may perform which actions (rule 2).
PROFESSION_ACTIONS = {
    "physician": ["list_studies", "view_images", "emergency"],
    "radiologist": ["list_studies", "view_images", "emergency"],
    "dentist": ["list_studies", "view_images"],
    "nurse": ["list_studies"],
    "technologist": ["list_studies"],
}

# DICOM
DICOM_LISTENER_PORT = env_int("DICOM_LISTENER_PORT", 11112, minimum=1, maximum=65535)
DICOM_LISTENER_AE_TITLE = env_ae_title("DICOM_LISTENER_AE_TITLE", "ANIM_GATEWAY")
STOW_MAX_BYTES = env_int("STOW_MAX_BYTES", 2 * 1024**3)
# The most data elements (at any depth, sequence items and file meta included) an object's
# header may hold: a larger one is refused (STOW-RS FailureReason C000, C-STORE C000,
# import_dicom "rejected") as soon as the walk of the file has counted that many, before any
# is parsed. Ingest costs about 7 us and 0.7 KiB an element (11 us and 1.1 KiB for bare
# private elements): the fuzzing review's 600,000 private elements took 6.8 s and 639 MiB
# (bench/bench_header_cap.py; 14.8 s and 670 MB on its machine), and are refused in 0.97 s
# and 94 MiB. 250,000 admits an enhanced MR of some 2,300 frames (108 elements a frame with
# the standard MR functional groups) or an enhanced CT of some 6,700 (37 a frame), and
# bounds any header at about 3 s and 270 MiB of one worker. docs/configuration.md.
DICOM_MAX_HEADER_ELEMENTS = env_int("DICOM_MAX_HEADER_ELEMENTS", 250_000)
# The most fragments an encapsulated Pixel Data may hold (its Basic Offset Table aside): a
# larger one is refused as a header over DICOM_MAX_HEADER_ELEMENTS is, by the same walk. Real
# objects hold about one a frame (pydicom's test files at most 3 for a frame, 30 in all); a file
# of millions of tiny fragments cost ingest 4.3 s for 20 million, and each read of its frame
# 29 s and 2.4 GiB (bench/bench_fragments.py). docs/configuration.md.
DICOM_MAX_PIXEL_FRAGMENTS = env_int("DICOM_MAX_PIXEL_FRAGMENTS", 1_000_000)
# The most pixels a rendering (/rendered, previews) is computed on: a larger frame is reduced
# first, which bounds the memory of its lookup tables and window (8 bytes a pixel, twice).
RENDER_MAX_PIXELS = env_int("RENDER_MAX_PIXELS", 4096 * 4096)

# Audit
AUDIT_SIGNING_KEY = env_secret("AUDIT_SIGNING_KEY")
# Only development and benchmark databases may have their audit log erased (flush).
AUDIT_ERASABLE = env_bool("AUDIT_ERASABLE", DEBUG)
AUDIT_SYSLOG_HOST = env_str("AUDIT_SYSLOG_HOST")
AUDIT_SYSLOG_PORT = env_int("AUDIT_SYSLOG_PORT", 6514, minimum=1, maximum=65535)
AUDIT_SYSLOG_CA_FILE = env_str("AUDIT_SYSLOG_CA_FILE")

# Production hardening, on whenever DEBUG is off.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Sessions are database rows, so that revoke_tokens can end a user's sessions on the server
# (signed cookies could not be ended before they expire).
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
# Shared hospital workstations: closing the browser ends the portal session (the next person
# to open it is not logged in as the last); SESSION_COOKIE_AGE still caps its length.
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", True)
# Browsers that reached the gateway over HTTPS never use plain HTTP for it again (sent only
# on HTTPS requests: behind the proxy, gunicorn takes the scheme from X-Forwarded-Proto).
# Subdomains and the browsers' preload list are left out (check --deploy's W005 and W021): a
# hospital's other hosts are not the gateway's to decide.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
# The reverse proxy terminates TLS and redirects plain HTTP (docs/configuration.md); a
# redirect here would also catch the proxy's own health checks over loopback (W008).
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W008", "security.W021"]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # Django's own for the development server's request lines ("GET /patients/...").
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "filters": {"redact": {"()": "anim_gateway.logfilters.RedactNationalIds"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        },
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", _LOG_LEVELS)},
    "loggers": {
        # Django's defaults give these two handlers of their own, without the redaction: its
        # console handler when DEBUG, and mail_admins (a no-op: ADMINS is never set). Listed
        # here, they lose those: "django" goes to the root's handler, the development server's
        # request log to a redacting one.
        "django": {"handlers": [], "level": "INFO"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        # Configured here, Celery leaves it alone: otherwise a worker gives it a console
        # handler of its own that does not redact, and does not propagate.
        "celery.task": {"handlers": ["console"], "propagate": False},
        "pynetdicom": {"level": "WARNING"},
        # Its decode_bytes logs a traceback for each association request holding bytes that
        # are not ASCII, before the peer is known: anyone could fill the log. The listener
        # logs the refusal in one line (studies.dimse).
        "pynetdicom.utils": {"level": "CRITICAL"},
    },
}

# --- portal ---
STATICFILES_DIRS = [BASE_DIR / "anim_gateway" / "static"]
PORTAL_LOGIN_MAX_FAILURES = env_int("PORTAL_LOGIN_MAX_FAILURES", 5)
PORTAL_LOGIN_LOCK_SECONDS = env_int("PORTAL_LOGIN_LOCK_SECONDS", 900)
# Failures from one client address (an IPv6 /64), whatever the usernames: password spraying.
PORTAL_LOGIN_ADDRESS_MAX_FAILURES = env_int("PORTAL_LOGIN_ADDRESS_MAX_FAILURES", 100)
PORTAL_LOGIN_ADDRESS_WINDOW_SECONDS = env_int("PORTAL_LOGIN_ADDRESS_WINDOW_SECONDS", 3600)
# The portal's log-in failure counters must be shared by every web process, or each counts
# on its own and an attacker gets the limit once per process: Redis in production.
CACHE_URL = env_cache_url("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# The reverse proxy's addresses, as gunicorn trusts them (gunicorn.conf.py): the log-in
# counter per client address leaves them out, since every client behind one shares it.
PROXY_ADDRESSES = env_list("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Anim Gateway")
# django-otp's admin pages show no secret of a saved device: no authenticator key, QR code or
# static token (its config and QR pages answer 403). Whoever reads them could sign in as
# the device's user; an administrator resets a lost authenticator with issue_enrolment_code.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# An enrolment code (issue_enrolment_code) is accepted for this long after it is issued. Three
# days: one issued on a Friday afternoon still serves on Monday morning, while one lost in an
# internal-mail tray or on a desk stops setting up a stranger's phone within days.
ENROLMENT_CODE_HOURS = env_int("ENROLMENT_CODE_HOURS", 72)

# --- audit ---
# Public keys (base64, raw 32 bytes) of retired checkpoint signing keys, still trusted.
AUDIT_TRUSTED_PUBLIC_KEYS = env_public_keys("AUDIT_TRUSTED_PUBLIC_KEYS")
# Our certificate and key for ATNA node authentication, when the repository asks for one.
AUDIT_SYSLOG_CERT_FILE = env_str("AUDIT_SYSLOG_CERT_FILE")
AUDIT_SYSLOG_KEY_FILE = env_str("AUDIT_SYSLOG_KEY_FILE")
if AUDIT_SYSLOG_HOST:
    CELERY_BEAT_SCHEDULE["audit-forward-syslog"] = {
        "task": "audit.tasks.forward_to_syslog",
        "schedule": timedelta(seconds=30),
    }
# --- end audit ---
