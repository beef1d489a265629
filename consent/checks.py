"""System checks for dangerous production combinations."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


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
    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        problems.append(
            Warning(
                "No shared cache: each web process counts failed log-ins on its own.",
                hint="Set CACHE_URL to a Redis database (redis://host:6379/1).",
                id="anim.W003",
            )
        )
    return problems
