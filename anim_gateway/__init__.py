"""Anim Gateway: consent-gated sharing of medical imaging between hospitals."""

from .celery import app as celery_app

__all__ = ["celery_app"]
