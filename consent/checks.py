"""System checks for dangerous production combinations."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_production_settings(app_configs, **kwargs) -> list:
    problems = []
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append(
            Warning(
                "SQLite is meant for development and small sites.",
                hint="Set DATABASE_URL to a PostgreSQL database.",
                id="anim.W001",
            )
        )
    if settings.CELERY_TASK_ALWAYS_EAGER:
        problems.append(
            Warning(
                "No Celery broker: expiries and checkpoints run only when triggered inline.",
                hint="Set CELERY_BROKER_URL to Redis or RabbitMQ and run a worker and beat.",
                id="anim.W002",
            )
        )
    if not settings.AUDIT_SIGNING_KEY:
        problems.append(
            Error(
                "No AUDIT_SIGNING_KEY: audit checkpoints would be signed with a development key.",
                hint="Set AUDIT_SIGNING_KEY (or AUDIT_SIGNING_KEY_FILE) to a base64 Ed25519 key.",
                id="anim.E001",
            )
        )
    return problems
