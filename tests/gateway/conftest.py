"""Fixtures of the gateway-wide tests."""

import os

import pytest


@pytest.fixture
def process_env(tmp_path) -> dict[str, str]:
    """The environment of a gateway process a test starts: development settings, and a
    database and a data folder of its own."""
    return dict(
        os.environ,
        DEBUG="True",
        DJANGO_SETTINGS_MODULE="anim_gateway.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VAR_DIR=str(tmp_path),
    )
