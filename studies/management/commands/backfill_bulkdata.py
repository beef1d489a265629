"""manage.py backfill_bulkdata: bulk data references for instances stored before them."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from studies import storage
from studies.bulkdata_backfill import BackfillSummary, bulkdata_backfill


class Command(BaseCommand):
    help = (
        "Add BulkDataURI references to the metadata of instances stored before they existed, "
        "reading each stored header again (never its pixel data). Idempotent and resumable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=200, help="instances a batch (default 200)"
        )

    def handle(self, *args, batch_size: int, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size: a whole number of 1 or more.")
        try:
            summary = bulkdata_backfill(batch_size=batch_size, on_batch=self._progress)
        except storage.ObjectUnavailable as exc:
            # The storage is down: what is done stays done, a rerun goes on from there.
            raise CommandError(f"Stopped: {exc.message} Run it again to go on.") from exc
        self.stdout.write(_line("done", summary))
        for instance, reason in summary.failed:
            self.stdout.write(
                f"  failed: instance {instance.pk} ({instance.sop_instance_uid}): {reason}"
            )
        if summary.failed:
            raise CommandError(
                f"{len(summary.failed)} instances were left as they were (listed above);"
                " a rerun tries them again."
            )

    def _progress(self, summary: BackfillSummary) -> None:
        self.stdout.write(_line("read", summary))


def _line(what: str, summary: BackfillSummary) -> str:
    return (
        f"{what}: {summary.read} instances: {summary.updated} updated,"
        f" {summary.current} already current, {len(summary.failed)} failed"
    )
