"""Test settings: the production settings with a throwaway secret and fast password hashing."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="anim-test-"))

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
# Tasks run inline in tests, even when CI configures Redis: the tests that need a real worker
# start one on the broker themselves (tests/studies/test_tasks.py).
CELERY_TASK_ALWAYS_EAGER = True

# Several test runs may share one PostgreSQL server (engineers working side by side, CI):
# each gets its own test database rather than dropping the one another run is using.
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":  # noqa: F405
    _name = DATABASES["default"]["NAME"]  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": f"test_{_name}_{os.getpid()}"}  # noqa: F405
