"""Celery tasks of the audit log: periodic signed checkpoints and ATNA forwarding."""

from celery import shared_task

from audit.checkpoints import checkpoint_take


@shared_task(name="audit.tasks.take_checkpoint")
def take_checkpoint() -> int:
    """Sign the current head (beat schedule); returns the checkpoint's seq."""
    return checkpoint_take().seq
