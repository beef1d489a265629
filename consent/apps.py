"""App configuration for consent."""

from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Parties and consent"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
