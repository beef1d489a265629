"""App configuration for consent."""

from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Parties and consent"

    def ready(self) -> None:
        from . import checks, schema  # noqa: F401  (register system checks and OpenAPI schemes)
