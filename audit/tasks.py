"""Celery tasks of the audit log: periodic signed checkpoints and ATNA forwarding."""

from celery import shared_task

from audit.checkpoints import checkpoint_take
from audit.forwarding import ForwardingFailed, forward_pending


@shared_task(name="audit.tasks.take_checkpoint")
def take_checkpoint() -> int:
    """Sign the current head (beat schedule); returns the checkpoint's seq."""
    return checkpoint_take().seq


@shared_task(name="audit.tasks.forward_to_syslog")
def forward_to_syslog() -> int:
    """Forward new events to the ATNA repository (beat schedule; a no-op when not configured).

    No retry of its own: an outage leaves the remembered position unchanged and the next
    scheduled run catches up."""
    try:
        return forward_pending()
    except ForwardingFailed:
        return 0
