"""Entry points of verification worker processes; importable before Django is set up."""


def setup(db_name: str) -> None:
    """Process initializer: set Django up on the parent's database (a test database too)."""
    import django

    django.setup()
    from django.db import connection

    connection.settings_dict["NAME"] = db_name


def verify_range(job: dict) -> dict:
    from audit.verification import verify_range as run

    return run(job)
