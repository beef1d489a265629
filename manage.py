#!/usr/bin/env python
"""Django's command-line utility for the Anim Gateway."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anim_gateway.settings")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        # An operator's fault or an outage gets one line naming it, as a CommandError does;
        # a bug keeps its traceback, and so does everything under --traceback.
        message = _operator_message(exc)
        if message is None or "--traceback" in sys.argv:
            raise
        sys.exit(message)


def _operator_message(exc: Exception) -> str | None:
    """The line an operator needs for a configuration fault or an unreachable database;
    None for anything else."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    if isinstance(exc, ImproperlyConfigured):
        return f"Configuration error: {exc}"
    if not settings.configured:
        return None
    from anim_gateway.errors import database_unreachable
    from audit.errors import AuditUnavailable

    # The audit append says AuditUnavailable, caused by the database's own error.
    database_error = exc.__cause__ if isinstance(exc, AuditUnavailable) else exc
    if not database_unreachable(database_error):
        return None
    return f"The database is unavailable (DATABASE_URL): {_first_line(database_error)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    main()
