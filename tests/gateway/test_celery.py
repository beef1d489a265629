"""The Celery beat schedule names tasks that exist."""

from django.conf import settings

from anim_gateway.celery import app


def test_every_scheduled_task_is_registered() -> None:
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled <= set(app.tasks), scheduled - set(app.tasks)


def test_expiries_checkpoints_and_fixity_are_scheduled() -> None:
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {
        "consent.tasks.expire_due",
        "audit.tasks.take_checkpoint",
        "studies.tasks.fixity_check_due",
    } <= scheduled
